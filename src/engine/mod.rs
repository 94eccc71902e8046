//! The Docker Engine, through bollard: the only module that talks to the daemon.
//!
//! Each call maps bollard's errors to an [`EngineError`] that names the image or container
//! and says what to do next, the way testcontainers-rs keeps every engine call in one client.

mod build;
mod container;
mod daemon_error;
pub mod export;
pub mod guard;
mod images;
mod ports;
mod registry;
mod resolve;
pub mod sink;
mod ssh;
mod status;

use std::time::Duration;

use bollard::Docker;

use crate::endpoint::{Endpoint, EnvView, Scheme};

pub use build::{BuildEvent, BuildRequest, StepTail};
pub use container::{Attach, ContainerOutcome, ContainerSpec, ManagedContainer, MountSpec};
pub(crate) use daemon_error::describe;
pub use daemon_error::DaemonError;
pub use guard::{ContainerGuard, ImageGuard, ScratchGuard, SweepGuard, TagGuard};
pub use images::ImageSummary;
pub use registry::TransferEvent;
pub use status::engine_status;

/// Errors from the engine, each classed for the exit code by its variant. Each keeps what
/// went wrong as its source, so `{:#}` at the top says the whole chain once.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine did not answer: the environment (exit 3). What to do is in `advice`
    /// ([`EngineError::advice`]), said after the whole chain.
    #[error("cannot reach the Docker engine at {host} ({chosen_by})")]
    Unreachable {
        host: String,
        chosen_by: crate::endpoint::Source,
        #[source]
        cause: Unanswered,
        advice: String,
    },
    #[error("cannot choose the Docker engine")]
    Endpoint(#[source] crate::endpoint::EndpointError),
    /// The build failed; `message` is the engine's own text (with the step's last lines).
    #[error("build of {what} failed: {message}")]
    Build { what: String, message: String },
    /// The engine answered something we cannot use (no id, no digest): our words, no cause.
    #[error("{what}: {detail}")]
    Api { what: String, detail: String },
    /// An engine call failed; bollard's error is the source.
    #[error("{what}")]
    Daemon {
        what: String,
        #[source]
        source: DaemonError,
    },
    /// A step on the engine's side failed for a reason of ours (the host could not be read,
    /// a scratch folder, an archive): that error is the source.
    #[error("{what}")]
    Failed {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The engine could not reach the base image's registry (DNS, a refused or cut
    /// connection, a proxy): the environment, not the recipe (exit 3).
    #[error("build of {what}: the engine could not fetch the base image{}: {message}\n  {}", base.as_deref().map(|b| format!(" {b}")).unwrap_or_default(), build::base_fetch_advice(base.as_deref()))]
    BaseUnreachable {
        what: String,
        base: Option<String>,
        message: String,
    },
    /// `detail` is the engine's or the registry's text, which the class was read from (the
    /// registry's error code reaches us only inside it).
    #[error("{what}: {detail}\n  {}", class.advice())]
    Registry {
        what: String,
        detail: String,
        class: crate::registry::RegistryFailure,
    },
    /// A container was to publish ports and the engine published none (an engine without a
    /// bridge network, `dockerd --bridge=none`, starts it anyway): nothing would answer at
    /// the address, so the container is stopped. The environment (exit 3).
    #[error("the engine started the {what} but published no port for its {port}/tcp, so nothing would answer at {address}\n  the engine has no network that publishes ports (started with --bridge=none, or its bridge is gone): start it with a bridge network, or run on an engine that has one")]
    PortNotPublished {
        what: String,
        port: u16,
        address: String,
    },
    /// `finished`: what the run's commits had done before the signal ended it (tags that
    /// moved stay moved; see [`crate::signals::uninterrupted`]).
    #[error("{what} was interrupted{}", finished_before(finished))]
    Interrupted { what: String, finished: Vec<String> },
    /// Bad input found on the way (a recipe's file or patch missing): exit 2, not 1.
    #[error(transparent)]
    Input(#[from] crate::recipe::RecipeError),
}

/// Why the engine did not answer.
#[derive(Debug, thiserror::Error)]
pub enum Unanswered {
    #[error("no answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error(transparent)]
    Daemon(#[from] DaemonError),
}

impl EngineError {
    /// `what` was interrupted, naming what the run's commits had finished before the signal.
    pub fn interrupted(what: impl Into<String>) -> Self {
        EngineError::Interrupted {
            what: what.into(),
            finished: crate::signals::finished_so_far(),
        }
    }

    /// The CLI contract's exit code: 3 for the environment, 130 interrupted, 1 the job.
    pub fn exit_code(&self) -> i32 {
        match self {
            EngineError::Unreachable { .. }
            | EngineError::Endpoint(_)
            | EngineError::BaseUnreachable { .. }
            | EngineError::PortNotPublished { .. } => 3,
            EngineError::Interrupted { .. } => 130,
            EngineError::Input(_) => 2,
            EngineError::Build { .. }
            | EngineError::Api { .. }
            | EngineError::Daemon { .. }
            | EngineError::Failed { .. } => 1,
            EngineError::Registry { class, .. } => class.exit_code(),
        }
    }

    /// What to do, where it is said after the whole chain rather than in the message.
    pub fn advice(&self) -> Option<&str> {
        match self {
            EngineError::Unreachable { advice, .. } => Some(advice),
            _ => None,
        }
    }

    pub(crate) fn api(what: impl Into<String>, e: bollard::errors::Error) -> Self {
        EngineError::Daemon {
            what: what.into(),
            source: DaemonError::from(e),
        }
    }

    /// A failure of ours on the way, keeping `e` as the cause.
    pub fn failed(
        what: impl Into<String>,
        e: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        EngineError::Failed {
            what: what.into(),
            source: e.into(),
        }
    }
}

impl From<crate::endpoint::EndpointError> for EngineError {
    fn from(e: crate::endpoint::EndpointError) -> Self {
        EngineError::Endpoint(e)
    }
}

/// A JSON progress stream that ended cleanly but for a stray `\r`: not a failure.
///
/// The engine ends each message with `\r\n`. bollard 0.21's JSON-lines decoder splits on
/// `\n`; when a read ends just after a message's `}` (it parses the message then) and the
/// `\r\n` comes in the next read, it drops the `\n` and keeps the `\r`, and at the end of
/// the stream reports that `\r` as "bytes remaining on stream" (fussybeaver/bollard#560,
/// fixed upstream by #733 in no release we can use yet). Where reads end depends on timing,
/// so it shows under load, beside concurrent builds, and never alone. A stream cut mid-message
/// gives another error (hyper's "connection closed before message completed"), so callers that
/// already have what the stream was for (the image id, the digest) may end it here.
/// Compared by text: tokio-util's `Decoder::decode_eof` makes it `io::Error::other` with only
/// that text (no kind, no type of its own), so there is nothing typed to match.
pub(crate) fn stray_end_of_stream(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::IOError { err } if err.to_string() == "bytes remaining on stream")
}

/// A connected engine.
#[derive(Clone)]
pub struct Engine {
    pub(crate) docker: Docker,
    pub host: String,
    /// Where the engine is and how it was chosen (`doctor` reports both).
    pub endpoint: Endpoint,
}

/// What `doctor` reports about the engine.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EngineInfo {
    pub version: Option<String>,
    pub api_version: Option<String>,
    pub root_dir: Option<String>,
    pub storage_driver: Option<String>,
    /// `io.containerd.snapshotter.v1` when images live in containerd's store (Docker
    /// Desktop, fresh Docker 29 installs), from `DriverStatus` `driver-type`.
    pub driver_type: Option<String>,
    pub os_type: Option<String>,
    pub architecture: Option<String>,
    pub security_options: Vec<String>,
}

/// The client-side deadline for one request; long, because `/build` answers only once the
/// whole context is uploaded. Our own limits are enforced with `tokio::time::timeout`.
const REQUEST_TIMEOUT_S: u64 = 24 * 3600;

fn client_for(endpoint: &Endpoint) -> Result<Docker, bollard::errors::Error> {
    let v = bollard::API_DEFAULT_VERSION;
    let host = endpoint.host.as_str();
    match (endpoint.scheme(), &endpoint.tls) {
        (Scheme::Unix, _) => Docker::connect_with_unix(host, REQUEST_TIMEOUT_S, v),
        (Scheme::Ssh, _) => {
            let target = crate::endpoint::SshTarget::parse(host).map_err(|e| {
                bollard::errors::Error::IOError {
                    err: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
                }
            })?;
            ssh::connect(target, REQUEST_TIMEOUT_S, v)
        }
        (Scheme::Tcp, Some(tls)) => {
            Docker::connect_with_ssl(host, &tls.key, &tls.cert, &tls.ca, REQUEST_TIMEOUT_S, v)
        }
        _ => Docker::connect_with_http(host, REQUEST_TIMEOUT_S, v),
    }
}

impl Engine {
    /// Connects to the engine the docker CLI would use ([`crate::endpoint::resolve`]),
    /// negotiates the API version down to the daemon's (1.41 on Debian's docker.io 20.10),
    /// and pings it.
    pub async fn connect() -> Result<Engine, EngineError> {
        let endpoint = crate::endpoint::resolve(&EnvView::from_process())?;
        Self::connect_to(endpoint).await
    }

    pub async fn connect_to(endpoint: Endpoint) -> Result<Engine, EngineError> {
        let unreachable = |cause: Unanswered| EngineError::Unreachable {
            host: endpoint.host.clone(),
            chosen_by: endpoint.source.clone(),
            advice: endpoint.unreachable_advice(matches!(
                &cause,
                Unanswered::Daemon(d) if d.io_kind_is(std::io::ErrorKind::PermissionDenied)
            )),
            cause,
        };
        tracing::debug!(host = %endpoint.host, chosen_by = %endpoint.source, "connecting");
        let docker = client_for(&endpoint).map_err(|e| unreachable(DaemonError::from(e).into()))?;
        // An ssh endpoint starts an ssh session first: allow for a slow login.
        let deadline = Duration::from_secs(match endpoint.scheme() {
            Scheme::Ssh => 40,
            _ => 15,
        });
        let docker = tokio::time::timeout(deadline, docker.negotiate_version())
            .await
            .map_err(|_| unreachable(Unanswered::Timeout(deadline)))?
            .map_err(|e| unreachable(DaemonError::from(e).into()))?;
        tokio::time::timeout(deadline, docker.ping())
            .await
            .map_err(|_| unreachable(Unanswered::Timeout(deadline)))?
            .map_err(|e| unreachable(DaemonError::from(e).into()))?;
        Ok(Engine {
            docker,
            host: endpoint.host.clone(),
            endpoint,
        })
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
            driver_type: i
                .driver_status
                .unwrap_or_default()
                .into_iter()
                .find_map(|kv| {
                    (kv.first().map(String::as_str) == Some("driver-type"))
                        .then(|| kv.get(1).cloned())
                        .flatten()
                }),
            os_type: i.os_type,
            architecture: i.architecture,
            security_options: i.security_options.unwrap_or_default(),
        })
    }
}

/// The tail of an interruption's message: what the run had finished before the signal.
fn finished_before(finished: &[String]) -> String {
    if finished.is_empty() {
        return String::new();
    }
    format!(
        " after it had finished this, which stays: {}",
        finished.join("; ")
    )
}
