//! The engine as `doctor` reports it: reachable or not (and why, for the endpoint that
//! was chosen), version, store, platform, data root and its free space.

use super::{Engine, EngineError};
use crate::doctor::{EngineStatus, Store};
use crate::endpoint::EnvView;

/// Never fails: an engine that cannot be chosen or reached is itself the finding.
pub async fn engine_status() -> EngineStatus {
    let endpoint = match crate::endpoint::resolve(&EnvView::from_process()) {
        Ok(e) => e,
        Err(e) => {
            return EngineStatus::unreachable(crate::error_chain::text(&EngineError::from(e)))
        }
    };
    let mut status = EngineStatus {
        chosen_by: Some(endpoint.source.to_string()),
        endpoint: Some(endpoint.clone()),
        ..Default::default()
    };
    let engine = match Engine::connect_to(endpoint).await {
        Ok(e) => e,
        Err(e) => {
            if let EngineError::Unreachable { cause, advice, .. } = &e {
                status.error = Some(crate::error_chain::text(cause));
                status.fix = Some(advice.clone());
            } else {
                status.error = Some(crate::error_chain::text(&e));
            }
            return status;
        }
    };
    let info = match engine.info().await {
        Ok(i) => i,
        Err(e) => {
            status.error = Some(crate::error_chain::text(&e));
            return status;
        }
    };
    let api: Option<f64> = info.api_version.as_deref().and_then(|v| v.parse().ok());
    EngineStatus {
        reachable: true,
        // BuildKit builds through the API arrived with API 1.39 (Docker 18.09).
        buildkit: api.map(|v| v >= 1.39),
        rootless: Some(
            info.security_options
                .iter()
                .any(|o| o.contains("name=rootless") || o.contains("name=userns")),
        ),
        // A remote engine's data root is not on this machine's disks.
        free_disk_bytes: info
            .root_dir
            .as_deref()
            .filter(|_| engine.endpoint.is_local())
            .and_then(|d| crate::doctor::free_disk(std::path::Path::new(d))),
        store: info
            .storage_driver
            .as_deref()
            .map(|d| Store::from_info(d, info.driver_type.as_deref())),
        version: info.version,
        api_version: info.api_version,
        root_dir: info.root_dir,
        os_type: info.os_type,
        architecture: info.architecture,
        ..status
    }
}
