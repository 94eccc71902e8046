//! The commands: validated arguments in, an exit code out. One file per command family;
//! this file holds what they share: the `Failure` -> exit code mapping and the output
//! helpers. It imports none of its children, so the families sit side by side.

use std::io::Write as _;

use serde::Serialize;

use crate::cli::{Cli, SmokeChoice};
use crate::engine::EngineError;
use crate::pipeline::distribute::DistError;
use crate::pipeline::{self, Progress as _};
use crate::recipe::{Catalog, LookupError, RecipeError};
use crate::smoke::Level;

pub mod app;
pub mod apps;
pub mod clean;
pub mod compat;
pub mod lock;
pub mod registry;
mod render_all;

/// An error with the exit code the CLI contract gives it.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn input(e: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: 2,
            error: e.into(),
        }
    }
    pub fn job(e: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: 1,
            error: e.into(),
        }
    }

    /// What a person reads: the error's whole chain once (`{:#}`), then what to do where the
    /// error keeps that apart from its message (the engine's advice, after its causes).
    pub fn message(&self) -> String {
        let mut text = format!("{:#}", self.error);
        let engine = self.error.downcast_ref::<EngineError>().or_else(|| {
            match self.error.downcast_ref::<DistError>() {
                Some(DistError::Engine(e)) => Some(e),
                _ => None,
            }
        });
        if let Some(advice) = engine.and_then(EngineError::advice) {
            text.push_str("\n  ");
            text.push_str(advice);
        }
        text
    }
}

impl From<LookupError> for Failure {
    fn from(e: LookupError) -> Self {
        Failure::input(e)
    }
}
impl From<RecipeError> for Failure {
    fn from(e: RecipeError) -> Self {
        Failure::input(e)
    }
}
impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure {
            code: e.exit_code(),
            error: e.into(),
        }
    }
}

/// The machine is not as the command needs it: exit 3, the CLI contract's environment.
#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    #[error("--smoke gpu needs an AMD GPU: {} does not exist (is the amdgpu driver loaded? `rdna1-images doctor` checks the host); use --smoke cpu on machines without one", kfd.display())]
    NoGpu { kfd: std::path::PathBuf },
    #[error("cannot take the run lock of {recipe} in {} (the state folder must be writable: set XDG_STATE_HOME to move it)", dir.display())]
    RunLock {
        recipe: String,
        dir: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the run lock of {recipe}")]
    ReadRunLock {
        recipe: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch for SIGINT/SIGTERM")]
    Signals(#[source] std::io::Error),
    #[error("cannot read this host's identity")]
    HostIdentity(#[source] std::io::Error),
    /// No way to run the recipe on this host's GPUs (with the recipes that would fit).
    #[error(transparent)]
    Plan(#[from] crate::run_plan::PlanError),
}

impl From<EnvironmentError> for Failure {
    fn from(e: EnvironmentError) -> Self {
        Failure {
            code: 3,
            error: e.into(),
        }
    }
}

pub type Outcome = Result<i32, Failure>;

pub use crate::ui::Console;

pub(crate) fn catalog(cli: &Cli) -> Catalog {
    match &cli.recipes {
        Some(d) => Catalog::dir(d),
        None => Catalog::embedded(),
    }
}

impl From<crate::lock::LockError> for Failure {
    fn from(e: crate::lock::LockError) -> Self {
        Failure {
            code: e.exit_code(),
            error: e.into(),
        }
    }
}

/// A recipe with its lock applied: what build, render, list, push and pull all see, so the
/// input digest is the same in each.
pub(crate) fn load_locked(cat: &Catalog, name: &str) -> Result<crate::recipe::Loaded, Failure> {
    let mut l = cat.load(name)?;
    crate::lock::attach(&mut l)?;
    Ok(l)
}

/// Every recipe with its lock applied, each on its own so one bad file hides no other.
pub(crate) fn load_all_locked(
    cat: &Catalog,
) -> Result<Vec<Result<crate::recipe::Loaded, Failure>>, Failure> {
    Ok(cat.names()?.iter().map(|n| load_locked(cat, n)).collect())
}

/// Writes generated text to stdout; a reader that stopped early (`| head`) is no failure.
pub(crate) fn write_stdout(text: &[u8]) -> Outcome {
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|_| out.flush()) {
        Ok(()) => Ok(0),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(Failure::job(e)),
    }
}

/// Keeps the command's result for its one JSON document (printed by [`app::run`]).
pub(crate) fn print_json<T: Serialize>(v: &T) -> Result<(), Failure> {
    crate::ui::json::set_result(v).map_err(Failure::job)
}

impl From<DistError> for Failure {
    fn from(e: DistError) -> Self {
        Failure {
            code: e.exit_code(),
            error: e.into(),
        }
    }
}

/// Resolves `--smoke auto` on this host, saying so when it falls back to cpu.
pub(crate) fn resolve_level(choice: SmokeChoice, console: &mut Console) -> Result<Level, Failure> {
    let kfd = pipeline::host_root().join("dev/kfd");
    // The GPU plan (devices, their GIDs) is read from this host: it says nothing about
    // an engine on another machine.
    let remote = crate::endpoint::resolve(&crate::endpoint::EnvView::from_process())
        .ok()
        .filter(|e| !e.is_local());
    if let Some(e) = &remote {
        match choice {
            SmokeChoice::Gpu => {
                return Err(Failure::input(anyhow::anyhow!(
                    "--smoke gpu: the engine at {} ({}) is not on this machine, and the GPU devices are read from this one; build there with --smoke cpu --push, then run `rdna1-images promote <recipe>` on the GPU machine",
                    e.host,
                    e.source
                )))
            }
            SmokeChoice::Auto => {
                console.note(&format!(
                    "WARNING: the engine at {} ({}) is not on this machine, so the smoke test runs there on the CPU only: \
                     it proves the image's Python, PyTorch and Conv2d work, NOT that a GPU does \
                     (push it, then `rdna1-images promote <recipe>` on the GPU machine)",
                    e.host, e.source
                ));
                return Ok(Level::Cpu);
            }
            _ => {}
        }
    }
    Ok(match choice {
        SmokeChoice::Gpu => {
            if !kfd.exists() {
                return Err(EnvironmentError::NoGpu { kfd }.into());
            }
            Level::Gpu
        }
        SmokeChoice::Cpu => Level::Cpu,
        SmokeChoice::Skip => Level::Skip,
        SmokeChoice::Auto => {
            if kfd.exists() {
                Level::Gpu
            } else {
                console.note(
                    "WARNING: no /dev/kfd on this host, so the smoke test runs on the CPU only: \
                     it proves the image's Python, PyTorch and Conv2d work, NOT that the GPU does \
                     (use a machine with the card, or `--smoke gpu` there)",
                );
                Level::Cpu
            }
        }
    })
}

/// Holds the run lock of `recipe` on `engine` (see [`crate::owner::RunLock`]): a second run
/// of the same recipe on the same engine waits here, saying for whom, so no run's guard,
/// sweep or temporary name undoes another's. Dropped when the command is done with the
/// recipe (or exits, however it ends).
pub(crate) async fn hold_recipe(
    engine: &crate::engine::Engine,
    recipe: &str,
    command: &str,
    progress: &mut dyn crate::pipeline::Progress,
) -> Result<crate::owner::RunLock, Failure> {
    let what = format!("rdna1-images {command} {recipe}");
    crate::owner::RunLock::acquire(&engine.host, recipe, &what, &mut |m| progress.note(m))
        .await
        .map_err(|source| {
            EnvironmentError::RunLock {
                recipe: recipe.to_string(),
                dir: crate::owner::lock_dir(),
                source,
            }
            .into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exit_code_comes_from_the_error_s_type() {
        let f = Failure::from(EnvironmentError::Signals(std::io::Error::other(
            "no signalfd",
        )));
        assert_eq!(f.code, 3);
        assert_eq!(
            f.message(),
            "cannot watch for SIGINT/SIGTERM: no signalfd",
            "the cause once, after its error"
        );
        let f = Failure::from(EngineError::api(
            "inspecting image x",
            bollard::errors::Error::DockerResponseServerError {
                status_code: 500,
                message: "boom".into(),
            },
        ));
        assert_eq!(f.code, 1);
        assert_eq!(f.message(), "inspecting image x: boom (HTTP 500)");
    }

    #[test]
    fn the_engine_s_advice_follows_the_whole_chain() {
        let e = EngineError::Unreachable {
            host: "unix:///x.sock".into(),
            chosen_by: crate::endpoint::Source::DockerHost,
            cause: crate::engine::Unanswered::Timeout(std::time::Duration::from_secs(15)),
            advice: "start it".into(),
        };
        let f = Failure::from(DistError::Engine(e));
        assert_eq!(f.code, 3);
        assert_eq!(
            f.message(),
            "cannot reach the Docker engine at unix:///x.sock (DOCKER_HOST): no answer within 15 s\n  start it"
        );
    }
}
