//! The one cancellation path. A single task, started at the top, turns SIGINT and SIGTERM
//! into a [`CancellationToken`] that every stage watches; `app::run` races the command
//! against it, so a signal at any moment ends the command at its current await point. What
//! the command had made goes with its guards ([`crate::engine::guard`]), drained on every
//! exit path. Interactive `run` borrows the first signal with [`forward`], to pass it to the
//! container as `docker run` does; the next one cancels.
//!
//! A commit (the tags that move together when a build passes or a pull lands) runs under
//! [`uninterrupted`]: a signal that comes meanwhile waits for it to end, so the tags never
//! stop half moved, and the run's message then names what it had finished ([`finished`]).
//!
//! The test hook `RDNA1_IMAGES_PAUSE_AT=<stage>` (build, normalise, load, smoke, tag,
//! commit, push) prints `rdna1-images: paused at <stage>` on stderr and waits there until a
//! signal arrives, so a test can interrupt at a known moment. A stage the signal cancels
//! never goes on past its pause; `load` runs under [`crate::engine::guard::finish_anyway`],
//! which the signal does not stop, and `commit` under [`uninterrupted`]: both go on.

use std::sync::{Mutex, OnceLock};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// The environment variable of the pause hook.
pub const PAUSE_ENV: &str = "RDNA1_IMAGES_PAUSE_AT";

/// The stages the pause hook knows.
pub const STAGES: [&str; 7] = [
    "build",
    "normalise",
    "load",
    "smoke",
    "tag",
    "commit",
    "push",
];

/// The stages whose pause is inside work a signal does not stop.
const FINISHED_ANYWAY: [&str; 2] = ["load", "commit"];

/// How many [`uninterrupted`] sections are under way.
fn sections() -> &'static watch::Sender<usize> {
    static SECTIONS: OnceLock<watch::Sender<usize>> = OnceLock::new();
    SECTIONS.get_or_init(|| watch::channel(0).0)
}

/// What the run finished in its commits, in order (see [`finished`]).
fn finished_list() -> &'static Mutex<Vec<String>> {
    static FINISHED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    &FINISHED
}

/// One section under way, counted until dropped.
struct Section;

impl Section {
    fn enter() -> Section {
        sections().send_modify(|n| *n += 1);
        Section
    }
}

impl Drop for Section {
    fn drop(&mut self) {
        sections().send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Runs `work`, a commit, to its end even when a signal comes meanwhile: `app::run` keeps
/// driving the command until no section is under way, and only then ends it. `work` must
/// not watch the token itself (engine tag, import and remove requests do not).
/// Its start is the pause hook's `commit` stage.
pub async fn uninterrupted<T>(work: impl std::future::Future<Output = T>) -> T {
    let _section = Section::enter();
    pause_at("commit").await;
    work.await
}

/// How long a signal waits for the commits under way: a few engine requests, unless the
/// engine hangs, and a hung engine must not hold a Ctrl-C for ever.
const SECTION_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Resolves once a signal has cancelled the run and no [`uninterrupted`] section is under
/// way (or [`SECTION_WAIT`] has passed): the moment `app::run` ends the command.
pub async fn interrupted() {
    global().cancelled().await;
    let mut rx = sections().subscribe();
    if tokio::time::timeout(SECTION_WAIT, rx.wait_for(|n| *n == 0))
        .await
        .is_err()
    {
        eprintln!(
            "rdna1-images: the engine did not finish the commit under way within {} s of the signal; ending anyway (rerun the command to finish what it left)",
            SECTION_WAIT.as_secs()
        );
    }
}

/// Records what a commit finished (`tagged rdna1-images:x ...`), for the message of a run
/// a signal ends after it.
pub fn finished(what: String) {
    finished_list()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(what);
}

/// What the run's commits finished so far.
pub fn finished_so_far() -> Vec<String> {
    finished_list()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

fn global() -> &'static CancellationToken {
    static TOKEN: OnceLock<CancellationToken> = OnceLock::new();
    TOKEN.get_or_init(CancellationToken::new)
}

type Forwarder = mpsc::UnboundedSender<&'static str>;

fn forwarder() -> &'static Mutex<Option<Forwarder>> {
    static FORWARD: Mutex<Option<Forwarder>> = Mutex::new(None);
    &FORWARD
}

/// The process's cancellation token: cancelled by the first SIGINT or SIGTERM (the second,
/// while [`forward`] holds the first).
pub fn token() -> CancellationToken {
    global().clone()
}

/// Whether a signal has cancelled the run.
pub fn cancelled() -> bool {
    global().is_cancelled()
}

/// Starts the signal task. Call once, inside the runtime, before the command runs.
pub fn install() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                Some(()) = int.recv() => "SIGINT",
                Some(()) = term.recv() => "SIGTERM",
                else => break,
            };
            let borrowed = forwarder().lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(tx) = borrowed {
                if tx.send(name).is_ok() {
                    continue;
                }
            }
            tracing::debug!("{name}: cancelling the run");
            global().cancel();
        }
    });
    Ok(())
}

/// The first signal, borrowed: while this lives, the next SIGINT/SIGTERM is sent here
/// instead of cancelling the run (once; later ones cancel).
pub struct Forward {
    rx: mpsc::UnboundedReceiver<&'static str>,
}

/// Borrows the next signal (for interactive `run`).
pub fn forward() -> Forward {
    let (tx, rx) = mpsc::unbounded_channel();
    *forwarder().lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    Forward { rx }
}

impl Forward {
    /// The borrowed signal's name, when it arrives.
    pub async fn recv(&mut self) -> Option<&'static str> {
        self.rx.recv().await
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        forwarder().lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// The pause hook: when `RDNA1_IMAGES_PAUSE_AT` names `stage`, says so on stderr and waits
/// for the signal. Returns at once otherwise. After the signal, a stage in
/// [`FINISHED_ANYWAY`] goes on; any other never does: `app::run` drops the command then.
/// (Returning there would let the stage run on up to its next await whenever the signal
/// lands while this task is being polled: a load started after a pause at `normalise`.)
pub async fn pause_at(stage: &'static str) {
    debug_assert!(STAGES.contains(&stage), "unknown stage {stage}");
    let asked = std::env::var(PAUSE_ENV).unwrap_or_default();
    if asked.split(',').any(|s| s.trim() == stage) {
        eprintln!("rdna1-images: paused at {stage}");
        global().cancelled().await;
        if !FINISHED_ANYWAY.contains(&stage) {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pause_returns_at_once_for_another_stage() {
        // The variable is not set for the unit tests: no stage pauses.
        tokio::time::timeout(std::time::Duration::from_secs(1), pause_at("tag"))
            .await
            .expect("pause_at must not wait when the hook names no stage");
    }

    #[tokio::test]
    async fn a_borrowed_signal_goes_to_the_forwarder_not_the_token() {
        let f = forward();
        assert!(forwarder().lock().unwrap().is_some());
        drop(f);
        assert!(forwarder().lock().unwrap().is_none());
    }
}
