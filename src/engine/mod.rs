//! The Docker Engine, through bollard: the only module that talks to the daemon.
//!
//! Each call maps bollard's errors to an [`EngineError`] that names the image or container
//! and says what to do next, the way testcontainers-rs keeps every engine call in one client.

mod build;
mod container;
mod export;
mod images;
mod registry;
mod resolve;

use std::time::Duration;

use bollard::Docker;

pub use build::{BuildEvent, BuildRequest};
pub use container::{Attach, ContainerOutcome, ContainerSpec, MountSpec};
pub use images::ImageSummary;
pub use registry::TransferEvent;

/// Errors from the engine, each classed for the exit code.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot reach the Docker engine at {host}: {detail}\n  start it (`sudo systemctl start docker`, or `ci/ensure-docker.sh`) or point DOCKER_HOST at a running engine")]
    Unreachable { host: String, detail: String },
    #[error("build of {what} failed: {message}")]
    Build { what: String, message: String },
    #[error("{what}: {detail}")]
    Api { what: String, detail: String },
    #[error("{what}: {detail}\n  {}", class.advice())]
    Registry {
        what: String,
        detail: String,
        class: crate::registry::RegistryFailure,
    },
    #[error("{what} was interrupted")]
    Interrupted { what: String },
}

impl EngineError {
    /// The CLI contract's exit code: 3 for the environment, 130 interrupted, 1 the job.
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::Unreachable { .. } => 3,
            EngineError::Interrupted { .. } => 130,
            EngineError::Build { .. } | EngineError::Api { .. } => 1,
            EngineError::Registry { class, .. } => class.exit_code(),
        }
    }

    fn api(what: impl Into<String>, e: bollard::errors::Error) -> Self {
        EngineError::Api {
            what: what.into(),
            detail: describe(&e),
        }
    }
}

/// bollard's Display for server errors repeats the status code; keep the daemon's message.
pub(crate) fn describe(e: &bollard::errors::Error) -> String {
    use bollard::errors::Error as E;
    match e {
        E::DockerResponseServerError {
            status_code,
            message,
        } => format!("{message} (HTTP {status_code})"),
        E::DockerStreamError { error } => error.clone(),
        other => other.to_string(),
    }
}

/// A connected engine.
#[derive(Clone)]
pub struct Engine {
    pub(crate) docker: Docker,
    pub host: String,
}

/// What `doctor` reports about the engine.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EngineInfo {
    pub version: Option<String>,
    pub api_version: Option<String>,
    pub root_dir: Option<String>,
    pub storage_driver: Option<String>,
    pub security_options: Vec<String>,
}

impl Engine {
    /// Connects through DOCKER_HOST (or the local socket), negotiates the API version down
    /// to the daemon's (1.41 on Debian's docker.io 20.10), and pings it.
    pub async fn connect() -> Result<Engine, EngineError> {
        let host = std::env::var("DOCKER_HOST")
            .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string());
        let unreachable = |detail: String| EngineError::Unreachable {
            host: host.clone(),
            detail,
        };
        let docker = Docker::connect_with_defaults().map_err(|e| unreachable(describe(&e)))?;
        // The default 120 s covers response headers only, and /build sends none until the
        // whole context is uploaded; our own deadlines are enforced with tokio::time::timeout.
        let docker = docker.with_timeout(Duration::from_secs(24 * 3600));
        let docker = tokio::time::timeout(Duration::from_secs(15), docker.negotiate_version())
            .await
            .map_err(|_| unreachable("no answer within 15 s".into()))?
            .map_err(|e| unreachable(describe(&e)))?;
        tokio::time::timeout(Duration::from_secs(15), docker.ping())
            .await
            .map_err(|_| unreachable("no answer within 15 s".into()))?
            .map_err(|e| unreachable(describe(&e)))?;
        Ok(Engine { docker, host })
    }

    pub async fn info(&self) -> Result<EngineInfo, EngineError> {
        let v = self
            .docker
            .version()
            .await
            .map_err(|e| EngineError::api("engine version", e))?;
        let i = self
            .docker
            .info()
            .await
            .map_err(|e| EngineError::api("engine info", e))?;
        Ok(EngineInfo {
            version: v.version,
            api_version: v.api_version,
            root_dir: i.docker_root_dir,
            storage_driver: i.driver,
            security_options: i.security_options.unwrap_or_default(),
        })
    }
}
