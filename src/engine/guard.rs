//! Guards for what a run makes on the way: candidate images, containers, scratch folders.
//!
//! Removal is async and Drop is not, so a guard that is dropped armed (an error returned
//! with `?`, a cancelled future, a panic) queues its removal here, and [`drain`] does it.
//! `pipeline::build` drains when it returns, and `main` drains once more after the command,
//! however it ended, so a leftover is removed before the process exits. A scratch folder
//! is removed in Drop itself (that is synchronous), and queued again only when that failed.
//! [`ImageGuard`] is the one rule "remove the candidate unless it was kept".

use std::path::PathBuf;
use std::sync::Mutex;

use super::{Engine, EngineError};

/// What a guard dropped armed leaves for [`drain`] to remove.
enum PendingRemoval {
    Container(Engine, String),
    /// A temporary name (a registry reference the push or a pull made).
    TemporaryTag(Engine, String),
    /// A candidate image (by id) that was not kept.
    CandidateImage(Engine, String),
    ScratchFolder(PathBuf),
    /// The untagged images of one input digest (see [`SweepGuard`]).
    UntaggedOfInput(Engine, String),
}

/// Set while BuildKit exports an image whose id has not reached us yet (see
/// [`export_started`]): a run cancelled then may find that image only after it returned.
static EXPORTING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The build stream says BuildKit has begun exporting the image (`exporting to image`).
pub fn export_started() {
    EXPORTING.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// The exported image's id has arrived (or the build ended): it is in a guard now.
pub fn export_finished() {
    EXPORTING.store(false, std::sync::atomic::Ordering::SeqCst);
}

/// How long a sweep waits for an export that was under way when the run was cancelled.
const EXPORT_SETTLE: std::time::Duration = std::time::Duration::from_secs(15);

/// How long [`drain`] waits for work [`finish_anyway`] runs.
const IN_FLIGHT_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The number of [`finish_anyway`] tasks still running.
static IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn in_flight_done() -> &'static tokio::sync::Notify {
    static DONE: tokio::sync::Notify = tokio::sync::Notify::const_new();
    &DONE
}

/// Decrements [`IN_FLIGHT`] when dropped: declared first in the task, it goes last.
struct InFlight;

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        in_flight_done().notify_waiters();
    }
}

/// Runs `work` on a task of its own that a cancelled run does not stop: for a request the
/// engine carries out even when we hang up (an image load whose body it has), whose result
/// must reach a guard. `work` puts what it made in its own guards; if the caller is gone
/// when it ends (the run was cancelled), those guards are dropped in the task and queue
/// their leftovers, and [`drain`] waits for such tasks before it removes anything. None when
/// the task panicked.
pub fn finish_anyway<T: Send + 'static>(
    work: impl std::future::Future<Output = T> + Send + 'static,
) -> impl std::future::Future<Output = Option<T>> {
    IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _done = InFlight;
        let out = work.await;
        // The caller is gone: its share goes here, before `_done`.
        if let Err(out) = tx.send(out) {
            drop(out);
        }
    });
    async move { rx.await.ok() }
}

/// Waits (up to [`IN_FLIGHT_LIMIT`]) until every [`finish_anyway`] task has ended.
async fn wait_in_flight() {
    let until = tokio::time::Instant::now() + IN_FLIGHT_LIMIT;
    let mut said = false;
    loop {
        let notified = in_flight_done().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if IN_FLIGHT.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            return;
        }
        if !said {
            said = true;
            eprintln!(
                "rdna1-images: waiting for an engine request under way (the image load) to end, to remove what it made"
            );
        }
        if tokio::time::timeout_at(until, notified).await.is_err() {
            tracing::warn!(
                "cleanup: an engine request still running after {} s; `rdna1-images clean` removes what it leaves",
                IN_FLIGHT_LIMIT.as_secs()
            );
            return;
        }
    }
}

fn pending() -> std::sync::MutexGuard<'static, Vec<PendingRemoval>> {
    static PENDING: Mutex<Vec<PendingRemoval>> = Mutex::new(Vec::new());
    PENDING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Removes everything dropped guards left, once the [`finish_anyway`] tasks have ended:
/// containers first (they hold images), then temporary names, then images, newest first (a
/// normalised image before the one it came from), then scratch folders. Errors are logged,
/// not returned: this runs on the way out.
pub async fn drain() {
    wait_in_flight().await;
    let mut all = std::mem::take(&mut *pending());
    all.sort_by_key(|l| match l {
        PendingRemoval::Container(..) => 0,
        PendingRemoval::TemporaryTag(..) => 1,
        PendingRemoval::CandidateImage(..) => 2,
        PendingRemoval::UntaggedOfInput(..) => 3,
        PendingRemoval::ScratchFolder(_) => 4,
    });
    let mut images = vec![];
    let mut sweeps = vec![];
    for l in all {
        match l {
            PendingRemoval::Container(e, id) => {
                if let Err(err) = e.remove_container(&id).await {
                    tracing::warn!("cleanup: {}", crate::error_chain::Chain(&err));
                }
            }
            PendingRemoval::TemporaryTag(e, reference) => {
                if let Err(err) = e.untag(&reference).await {
                    tracing::warn!("cleanup: {}", crate::error_chain::Chain(&err));
                }
            }
            PendingRemoval::CandidateImage(e, id) => images.push((e, id)),
            PendingRemoval::UntaggedOfInput(e, digest) => sweeps.push((e, digest)),
            PendingRemoval::ScratchFolder(p) => remove_scratch(&p),
        }
    }
    for (e, id) in images.into_iter().rev() {
        match e.remove_untagged(&id).await {
            Ok(true) => tracing::debug!("cleanup: removed candidate image {id}"),
            Ok(false) => {}
            Err(err) => tracing::warn!("cleanup: {}", crate::error_chain::Chain(&err)),
        }
    }
    for (e, digest) in sweeps {
        sweep(&e, &digest).await;
    }
}

/// Removes the untagged images that carry `digest` as their input digest. An export that
/// was under way when the run ended is waited for (up to [`EXPORT_SETTLE`]): BuildKit
/// finishes writing an image it had begun to export even after the build's connection is
/// gone, and that image's id never reached a guard.
async fn sweep(engine: &Engine, digest: &str) {
    let settle = EXPORTING.swap(false, std::sync::atomic::Ordering::SeqCst);
    if settle {
        eprintln!(
            "rdna1-images: the engine was exporting the candidate image; waiting up to {} s to remove it",
            EXPORT_SETTLE.as_secs()
        );
    }
    let until = std::time::Instant::now()
        + if settle {
            EXPORT_SETTLE
        } else {
            Default::default()
        };
    loop {
        match engine.untagged_images_of(digest).await {
            Ok(ids) if !ids.is_empty() => {
                for id in ids {
                    match engine.remove_untagged(&id).await {
                        Ok(true) => tracing::debug!(
                            "cleanup: removed untagged image {id} of input {digest}"
                        ),
                        Ok(false) => {}
                        Err(err) => tracing::warn!("cleanup: {}", crate::error_chain::Chain(&err)),
                    }
                }
                if settle {
                    return;
                }
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!("cleanup: {}", crate::error_chain::Chain(&err));
                return;
            }
        }
        if std::time::Instant::now() >= until {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Every untagged image of one input digest, removed unless the run finished: a cancelled
/// or failed run may leave an image no other guard knows of (an export that completed after
/// the build's connection was dropped, a load whose answer never arrived). An untagged image
/// of that digest is never a keeper: a good one is tagged `<recipe>-<digest12>`. Released on
/// every finished run, so `--smoke skip`'s untagged image stays.
#[must_use = "a guard sweeps when dropped"]
pub struct SweepGuard {
    engine: Engine,
    digest: Option<String>,
}

impl SweepGuard {
    pub fn new(engine: &Engine, input_digest_hex: impl Into<String>) -> Self {
        SweepGuard {
            engine: engine.clone(),
            digest: Some(input_digest_hex.into()),
        }
    }

    /// The run finished (passed, failed or skipped): its guards said what stays.
    pub fn finished(mut self) {
        self.digest = None;
    }
}

impl Drop for SweepGuard {
    fn drop(&mut self) {
        if let Some(d) = self.digest.take() {
            pending().push(PendingRemoval::UntaggedOfInput(self.engine.clone(), d));
        }
    }
}

/// The scratch folders still queued, removed without an engine (after the runtime is gone,
/// when the blocking tasks that wrote into them have stopped).
/// Also the folders whose guard is still alive: a blocking task that was writing into one
/// when the run was cancelled may hold it past the runtime's end.
pub fn drain_scratch_blocking() {
    let mut q = pending();
    q.retain(|l| match l {
        PendingRemoval::ScratchFolder(p) => {
            remove_scratch(p);
            false
        }
        _ => true,
    });
    drop(q);
    for p in std::mem::take(&mut *live()) {
        remove_scratch(&p);
    }
}

fn live() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

fn remove_scratch(p: &std::path::Path) {
    // A blocking task may still be writing into it: try a few times.
    for _ in 0..10 {
        match std::fs::remove_dir_all(p) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    tracing::warn!(
        "cleanup: could not remove the scratch folder {}",
        p.display()
    );
}

/// A candidate image: removed (unless a tag holds it) when released or dropped, unless kept.
#[must_use = "a guard removes its image when dropped"]
pub struct ImageGuard {
    engine: Engine,
    id: Option<String>,
}

impl ImageGuard {
    pub fn new(engine: &Engine, id: impl Into<String>) -> Self {
        ImageGuard {
            engine: engine.clone(),
            id: Some(id.into()),
        }
    }

    pub fn id(&self) -> &str {
        self.id.as_deref().unwrap_or_default()
    }

    /// The image stays (it was tagged, or someone else owns it now).
    pub fn keep(mut self) -> String {
        self.id.take().unwrap_or_default()
    }

    /// Removes the image now, unless a tag holds it. Returns whether it was removed.
    pub async fn release(mut self) -> Result<bool, EngineError> {
        match self.id.take() {
            Some(id) => self.engine.remove_untagged(&id).await,
            None => Ok(false),
        }
    }
}

impl Drop for ImageGuard {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            pending().push(PendingRemoval::CandidateImage(self.engine.clone(), id));
        }
    }
}

/// A temporary name of an image (`<registry>/<repo>:<tag>` for a push, or what a pull
/// made): untagged when released or dropped, unless kept. Untagging an image's only name
/// deletes the image, which is what a pull interrupted before its local tags wants.
#[must_use = "a guard removes its tag when dropped"]
pub struct TagGuard {
    engine: Engine,
    reference: Option<String>,
}

impl TagGuard {
    pub fn new(engine: &Engine, reference: impl Into<String>) -> Self {
        TagGuard {
            engine: engine.clone(),
            reference: Some(reference.into()),
        }
    }

    /// The name a pull left: guarded only when it was not there before (`existed`); a name
    /// that was is someone's, and stays.
    pub fn pulled(engine: &Engine, reference: impl Into<String>, existed: bool) -> Self {
        TagGuard {
            engine: engine.clone(),
            reference: (!existed).then(|| reference.into()),
        }
    }

    /// The name stays (a pull the user asked for keeps the registry's name, as docker's).
    pub fn keep(mut self) {
        self.reference = None;
    }

    /// Removes the name now.
    pub async fn release(mut self) -> Result<(), EngineError> {
        match self.reference.take() {
            Some(r) => self.engine.untag(&r).await,
            None => Ok(()),
        }
    }
}

impl Drop for TagGuard {
    fn drop(&mut self) {
        if let Some(r) = self.reference.take() {
            pending().push(PendingRemoval::TemporaryTag(self.engine.clone(), r));
        }
    }
}

/// A container the tool created: force-removed when released or dropped.
#[must_use = "a guard removes its container when dropped"]
pub struct ContainerGuard {
    engine: Engine,
    id: Option<String>,
}

impl ContainerGuard {
    pub fn new(engine: &Engine, id: impl Into<String>) -> Self {
        ContainerGuard {
            engine: engine.clone(),
            id: Some(id.into()),
        }
    }

    pub fn id(&self) -> &str {
        self.id.as_deref().unwrap_or_default()
    }

    /// The container stays: one the run gave up on (it would not die), left labelled for
    /// `clean`.
    pub fn keep(mut self) {
        self.id = None;
    }

    /// Force-removes the container now.
    pub async fn release(mut self) -> Result<(), EngineError> {
        match self.id.take() {
            Some(id) => self.engine.remove_container(&id).await,
            None => Ok(()),
        }
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            pending().push(PendingRemoval::Container(self.engine.clone(), id));
        }
    }
}

/// A scratch folder `/tmp/rdna1-images-<what>-<pid>-*`: removed when dropped however the
/// run ends; queued for [`drain_scratch_blocking`] if removing it failed.
pub struct ScratchGuard {
    dir: Option<PathBuf>,
}

impl ScratchGuard {
    pub fn new(what: &str) -> std::io::Result<Self> {
        sweep_dead_scratch(&std::env::temp_dir(), what);
        let dir = tempfile::Builder::new()
            .prefix(&format!("rdna1-images-{what}-{}-", std::process::id()))
            .tempdir()?
            .keep();
        live().push(dir.clone());
        Ok(ScratchGuard { dir: Some(dir) })
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir
            .as_deref()
            .expect("the folder lives as long as its guard")
    }
}

/// Removes the scratch folders of this kind whose run is gone: a run killed with SIGKILL
/// (or by the OOM killer) never reaches its guards, so the next run takes its folder away.
/// Only a folder whose pid runs on no process here is removed: a live run keeps its own.
fn sweep_dead_scratch(tmp: &std::path::Path, what: &str) {
    let prefix = format!("rdna1-images-{what}-");
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !crate::owner::pid_is_running(pid) {
            remove_scratch(&e.path());
        }
    }
}

impl Drop for ScratchGuard {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            live().retain(|p| p != &d);
            if std::fs::remove_dir_all(&d).is_err() && d.exists() {
                pending().push(PendingRemoval::ScratchFolder(d));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_folder_goes_with_its_guard() {
        let g = ScratchGuard::new("guardtest").unwrap();
        let p = g.path().to_path_buf();
        std::fs::write(p.join("x"), b"data").unwrap();
        assert!(p.exists());
        assert!(p
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&format!("rdna1-images-guardtest-{}-", std::process::id())));
        drop(g);
        assert!(!p.exists(), "{} is left", p.display());
    }

    #[test]
    fn a_killed_runs_scratch_folder_goes_with_the_next_run_and_a_live_ones_stays() {
        let tmp = tempfile::tempdir().unwrap();
        // A pid that ran and is gone: a child that has exited and been reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let gone = tmp
            .path()
            .join(format!("rdna1-images-normalise-{dead}-abc"));
        let live = tmp
            .path()
            .join(format!("rdna1-images-normalise-{}-abc", std::process::id()));
        let other = tmp.path().join(format!("rdna1-images-export-{dead}-abc"));
        for d in [&gone, &live, &other] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("x"), b"data").unwrap();
        }
        sweep_dead_scratch(tmp.path(), "normalise");
        assert!(!gone.exists(), "{} is left", gone.display());
        assert!(live.exists(), "a live run's folder was removed");
        assert!(other.exists(), "a folder of another kind was removed");
    }

    #[test]
    fn a_scratch_folder_goes_on_a_panic_too() {
        let mut path = None;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let g = ScratchGuard::new("guardpanic").unwrap();
            path = Some(g.path().to_path_buf());
            panic!("boom");
        }));
        assert!(r.is_err());
        assert!(!path.unwrap().exists());
    }
}
