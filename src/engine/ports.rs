//! Published ports: what the engine bound for a container that asked for some.

use super::{ContainerSpec, Engine, EngineError};

impl Engine {
    /// Every port `spec` publishes is bound by the engine. An engine without a bridge
    /// network (`dockerd --bridge=none`) starts the container and publishes nothing, with no
    /// error: the address `run` prints would answer nothing.
    pub(super) async fn check_published(
        &self,
        id: &str,
        spec: &ContainerSpec,
        what: &str,
    ) -> Result<(), EngineError> {
        if spec.ports.is_empty() {
            return Ok(());
        }
        let info = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| EngineError::api(format!("inspecting the {what}"), e))?;
        let bound = info
            .network_settings
            .and_then(|n| n.ports)
            .unwrap_or_default();
        for (address, host_port, port) in &spec.ports {
            let published = bound
                .get(&format!("{port}/tcp"))
                .and_then(|b| b.as_ref())
                .is_some_and(|b| !b.is_empty());
            if !published {
                return Err(EngineError::PortNotPublished {
                    what: what.to_string(),
                    port: *port,
                    address: if address.contains(':') {
                        format!("[{address}]:{host_port}")
                    } else {
                        format!("{address}:{host_port}")
                    },
                });
            }
        }
        Ok(())
    }
}
