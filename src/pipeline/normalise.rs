//! The step between build and smoke test that makes the image reproducible on this engine,
//! and `build --verify-reproducible`.
//!
//! Docker 20.10's BuildKit ignores SOURCE_DATE_EPOCH (no `rewrite-timestamp` exporter option
//! before BuildKit 0.13 / Docker 25), so the built image's new layers and config are taken
//! out of the engine (`by_push`, or `by_save` where the engine cannot reach our
//! loopback), rewritten deterministically ([`crate::reproduce`]), and loaded back. The smoke
//! test then tests the image that gets tagged and pushed. The base's layers are kept as they
//! are: they are already fixed, and rewriting them would break sharing with the base image.

use std::time::Instant;

use crate::context::Prepared;
use std::collections::{BTreeMap, HashMap, HashSet};

use sha2::{Digest, Sha256};

use crate::endpoint::Scheme;
use crate::engine::sink::{Policy, Sink};
use crate::engine::{export, guard, Engine, EngineError, ImageGuard, ScratchGuard, TagGuard};
use crate::image_archive::{self, Plan, SavedImage, Store, Timings};
use crate::pipeline::build_stage::build_image;
use crate::pipeline::types::{self as pipeline, BuildOptions, Progress};
use crate::recipe::{PyTorch, Recipe};
use crate::reproduce::{self, Comparison, Lower, Normalised};

/// One normalisation: the engine's image, the rewritten one, and what it cost.
#[derive(Debug, Clone)]
pub struct Normalisation {
    pub built: String,
    pub normalised: Normalised,
    /// Bytes of the layers the build added, as the engine had them (uncompressed).
    pub added_bytes: u64,
    pub seconds: f64,
}

/// The image the final stage starts from.
pub fn final_base(r: &Recipe) -> String {
    match &r.pytorch {
        PyTorch::Source(s) => s.runtime_base.as_ref().unwrap_or(&r.base).reference(),
        _ => r.base.reference(),
    }
}

/// What went wrong stays the source: an engine error, an archive error, or our words.
fn failed(
    image: &str,
    cause: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
) -> EngineError {
    EngineError::failed(format!("normalising image {image}"), cause)
}

/// Rewrites the layers the build added and the config, loads the result, and removes the
/// engine's original. Returns the reproducible image, guarded until the caller keeps it. On
/// any failure or cancellation the built candidate goes with its guard (unless something
/// tagged it meanwhile), and the scratch folder with its own, however this returns.
pub async fn normalise(
    engine: &Engine,
    r: &Recipe,
    built: ImageGuard,
    progress: &mut dyn Progress,
) -> Result<(Normalisation, ImageGuard), EngineError> {
    let (n, normalised) = normalise_inner(engine, r, built.id(), progress)
        .await
        .inspect_err(|_| {
            progress.note(&format!(
                "normalise failed: the built candidate {} is removed",
                pipeline::short_id(built.id())
            ))
        })?;
    if built.id() == normalised.id() {
        let _ = built.keep();
    } else {
        built.release().await?;
    }
    Ok((n, normalised))
}

/// The analysis of an image that is already normalised (an earlier build of the same
/// inputs), for the drift report: its layers come out as they are, so the result is the
/// same image. Anything new it loaded (it should not) is removed.
pub async fn read_normalised(
    engine: &Engine,
    r: &Recipe,
    image: &str,
    progress: &mut dyn Progress,
) -> Result<crate::reproduce::Normalised, EngineError> {
    let (n, guard) = normalise_inner(engine, r, image, progress).await?;
    if guard.id() == image {
        let _ = guard.keep();
    } else {
        guard.release().await?;
    }
    Ok(n.normalised)
}

/// A blocking reader that stops when the run is cancelled, so a cancelled `docker save`
/// does not go on spooling into the scratch folder on its blocking thread.
///
/// It ends the read with an error of kind `Other` carrying [`Cancelled`]: never
/// `Interrupted`, which `io::copy`, `read_exact` and `read_to_end` retry by contract, so
/// the reading thread would spin until the process exits.
struct StopOnCancel<R> {
    inner: R,
    cancel: tokio_util::sync::CancellationToken,
}

impl<R> StopOnCancel<R> {
    fn new(inner: R, cancel: tokio_util::sync::CancellationToken) -> Self {
        StopOnCancel { inner, cancel }
    }
}

/// The cause of the error a cancelled [`StopOnCancel`] ends its read with.
#[derive(Debug, thiserror::Error)]
#[error("the run was cancelled")]
pub struct Cancelled;

impl<R: std::io::Read> std::io::Read for StopOnCancel<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(std::io::Error::other(Cancelled));
        }
        self.inner.read(buf)
    }
}

async fn normalise_inner(
    engine: &Engine,
    r: &Recipe,
    built: &str,
    progress: &mut dyn Progress,
) -> Result<(Normalisation, ImageGuard), EngineError> {
    let started = Instant::now();
    let layers = engine
        .image_layers(built)
        .await?
        .ok_or_else(|| failed(built, "the built image is gone"))?;
    let base = final_base(r);
    let keep = match engine.image_layers(&base).await? {
        Some(b) => b.iter().zip(&layers).take_while(|(a, b)| a == b).count(),
        None => {
            progress.note(&format!(
                "base {base} is not in the engine's image list: every layer is rewritten"
            ));
            0
        }
    };
    let store = engine.store().await?;
    let scratch = std::sync::Arc::new(
        ScratchGuard::new("normalise")
            .map_err(|e| failed(built, format!("scratch folder: {e}")))?,
    );
    let epoch = r.source_date_epoch;
    let plan = Plan {
        diff_ids: layers,
        keep,
        epoch,
    };
    let mut timings = Timings::default();
    let way = match way(engine).map_err(|e| failed(built, e))? {
        // No base in the engine to push first, nor to move the push's name to.
        Way::Auto if keep == 0 => Way::Save,
        w => w,
    };
    let saved = match way {
        Way::Save => by_save(engine, built, &plan, &scratch, &mut timings).await?,
        way => match by_push(engine, &base, built, &plan, store, &scratch, &mut timings).await {
            Ok(s) => s,
            Err(e) if way == Way::Auto => {
                progress.note(&format!(
                    "the engine could not hand over the new layers by a push to 127.0.0.1 ({e}); reading the whole image from a save instead",
                    e = crate::error_chain::Chain(&e)
                ));
                timings = Timings::default();
                by_save(engine, built, &plan, &scratch, &mut timings).await?
            }
            Err(e) => return Err(e),
        },
    };
    reproduce::same_but_for_time(&saved.engine_config, &saved.normalised.config)
        .map_err(|e| failed(built, e))?;

    // The test hook: the save is spooled in the scratch folder, the load not started.
    crate::signals::pause_at("normalise").await;
    let load_started = Instant::now();
    // Once the engine has the body it loads the image even if we hang up, and that image
    // must reach a guard: the load runs to its end on a task of its own, which the final
    // cleanup waits for, and which holds the scratch folder its layers stream from.
    let held = scratch.clone();
    let loader = engine.clone();
    let loading = guard::finish_anyway(async move {
        let (writer, body) = export::body_pipe();
        let writing = tokio::task::spawn_blocking(move || {
            let id = image_archive::write_load(writer, store, &saved, epoch);
            (id, saved)
        });
        let (loaded, written) = tokio::join!(loader.load_stream(body), async {
            let written = writing.await;
            // The test hook: the whole body is on its way to the engine, which loads the
            // image whatever we do now; its answer, with the id, may not be read yet.
            crate::signals::pause_at("load").await;
            written
        });
        let guard = loaded
            .as_ref()
            .ok()
            .map(|id| ImageGuard::new(&loader, id.clone()));
        drop(held);
        (loaded, guard, written)
    });
    let (loaded, guard, written) = loading
        .await
        .ok_or_else(|| failed(built, "the load task panicked"))?;
    let (expected, saved) = written.map_err(|e| failed(built, e))?;
    let expected = expected.map_err(|e| failed(built, e))?;
    let loaded = loaded?;
    let guard = guard.expect("a loaded image has its guard");
    if loaded != expected {
        return Err(failed(
            built,
            format!("the engine loaded {loaded}, but the rewritten image is {expected}"),
        ));
    }
    let load = load_started.elapsed();
    drop(scratch);
    let mut normalised = saved.normalised;
    normalised.image_id = loaded;
    let seconds = started.elapsed().as_secs_f64();
    let rewritten = normalised.layers.iter().filter(|l| l.rewritten).count();
    let how = if timings.passes > 0 {
        format!(
            "push of the base {:.2} s, {} push(es) of the built image {:.2} s",
            timings.push_base.as_secs_f64(),
            timings.passes,
            timings.save.as_secs_f64()
        )
    } else {
        format!("save stream {:.2} s", timings.save.as_secs_f64())
    };
    tracing::debug!(
        "normalise timing: {how} ({} MB of base layers read), spool {:.2} s ({} MB added), rewrite {:.2} s, load {:.2} s, total {seconds:.2} s",
        timings.bytes_skipped / 1_000_000,
        timings.spool.as_secs_f64(),
        timings.bytes_added / 1_000_000,
        timings.rewrite.as_secs_f64(),
        load.as_secs_f64(),
    );
    timings.save += load;
    progress.note(&format!(
        "reproducible image {}: {rewritten} layer(s) rewritten with SOURCE_DATE_EPOCH={epoch}, {keep} base layer(s) kept, in {seconds:.1} s ({} MB added)",
        pipeline::short_id(&normalised.image_id),
        timings.bytes_added / 1_000_000
    ));
    Ok((
        Normalisation {
            built: built.to_string(),
            normalised,
            added_bytes: timings.bytes_added,
            seconds,
        },
        guard,
    ))
}

/// How the new layers come out of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    /// A push to our own registry on 127.0.0.1, the save if the engine cannot reach it.
    Auto,
    /// Only the push (tests; an error if it fails).
    Push,
    /// Only the save: the whole image, base included.
    Save,
}

/// `RDNA1_IMAGES_NORMALISE` (auto, push, save); auto on an engine that shares our loopback
/// (a unix socket, or tcp to a loopback address), the save on any other.
fn way(engine: &Engine) -> Result<Way, String> {
    let local = match engine.endpoint.scheme() {
        Scheme::Unix => true,
        Scheme::Tcp => url::Url::parse(&engine.endpoint.host)
            .ok()
            .and_then(|u| u.host_str().map(String::from))
            .is_some_and(|h| {
                h == "localhost"
                    || h.trim_matches(['[', ']'])
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            }),
        _ => false,
    };
    match std::env::var("RDNA1_IMAGES_NORMALISE").as_deref() {
        Err(_) | Ok("") | Ok("auto") => Ok(if local { Way::Auto } else { Way::Save }),
        Ok("push") => Ok(Way::Push),
        Ok("save") => Ok(Way::Save),
        Ok(other) => Err(format!(
            "RDNA1_IMAGES_NORMALISE is {other:?}: it must be auto, push or save"
        )),
    }
}

/// The whole image from `docker save`, base layers skipped as they pass; the base's folders
/// read in passing go to the per-base cache, for the next push.
async fn by_save(
    engine: &Engine,
    built: &str,
    plan: &Plan,
    scratch: &std::sync::Arc<ScratchGuard>,
    timings: &mut Timings,
) -> Result<SavedImage, EngineError> {
    let reader = StopOnCancel::new(engine.save_reader(built), crate::signals::token());
    // The blocking task holds the folder too: it goes when the last of the two lets go.
    let held = scratch.clone();
    let task_plan = plan.clone();
    let (saved, base_lower, t) = tokio::task::spawn_blocking(move || {
        let mut t = Timings::default();
        image_archive::read_save(reader, &task_plan, held.path(), &mut t).map(|(s, l)| (s, l, t))
    })
    .await
    .map_err(|e| failed(built, e))?
    .map_err(|e| failed(built, e))?;
    *timings = t;
    lower_cache::store(plan, &base_lower);
    Ok(saved)
}

/// Pushes `<sink>:<tag>`; the engine's messages are not shown.
async fn push_to_sink(engine: &Engine, sink: &Sink, tag: &str) -> Result<(), EngineError> {
    engine
        .push(&sink.repository(), tag, None, &mut |_| {})
        .await
        .map(|_| ())
}

/// Only the layers the build added, by a push to a registry of our own on 127.0.0.1 that
/// says it has every other blob (src/engine/sink.rs).
///
/// 1. The base is pushed first. The registry says it has all of it when the base's folders
///    are cached, and asks for all of it (once per base) when they are not. Either way the
///    classic store then knows the registry has the base layers, and does not send them
///    with the built image: it asks about a layer only when it has pushed or pulled it
///    before, and sends any other.
/// 2. The built image: the registry asks for the config (classic: its digest is the image
///    id) and takes whatever else comes, spooled; the containerd store asks about every
///    blob, so a second push asks for the config and the new layers by the digests the
///    first push's manifest named.
async fn by_push(
    engine: &Engine,
    base: &str,
    built: &str,
    plan: &Plan,
    store: Store,
    scratch: &ScratchGuard,
    timings: &mut Timings,
) -> Result<SavedImage, EngineError> {
    if plan.keep == 0 {
        return Err(failed(
            built,
            format!("the push way needs the base {base} in the engine, and it is not"),
        ));
    }
    let sink = Sink::start(scratch.path().to_path_buf())
        .await
        .map_err(|e| failed(built, format!("starting a registry on 127.0.0.1: {e}")))?;
    let repo = sink.repository();
    let started = Instant::now();
    let cached = lower_cache::load(plan);
    let lower = {
        sink.set_policy(Policy {
            skip_unknown: cached.is_some(),
            ..Policy::default()
        });
        // The base keeps names of its own: this one just goes (guarded before the tag
        // request, which a Ctrl-C may drop after the engine has made the name).
        let name = TagGuard::new(engine, format!("{repo}:base"));
        engine.tag(base, &repo, "base").await?;
        let pushed = push_to_sink(engine, &sink, "base").await;
        name.release().await?;
        pushed.map_err(|e| failed(built, e))?;
        let blobs = sink.take_blobs();
        match cached {
            Some(l) => l,
            None => {
                let mut lower = Lower::default();
                for (i, id) in plan.diff_ids[..plan.keep].iter().enumerate() {
                    let b = blobs.values().find(|b| b.diff_id == *id).ok_or_else(|| {
                        failed(
                            built,
                            format!("the push did not hand over base layer {i} ({id})"),
                        )
                    })?;
                    timings.bytes_skipped += b.bytes;
                    match &b.entries {
                        Some(e) => lower.apply(e),
                        None => lower.unknown = true,
                    }
                }
                lower_cache::store(plan, &lower);
                lower
            }
        }
    };
    timings.push_base = started.elapsed();

    let started = Instant::now();
    let mut policy = Policy {
        skip_unknown: true,
        spool: true,
        ..Policy::default()
    };
    if store == Store::Classic {
        policy.ask.insert(built.to_string());
    }
    // The one name of the built image (when it has no other) while it is pushed: removing
    // an image's last name removes the image on both stores, so the name is moved to the
    // base before it goes, which leaves the built image as it was (dangling). A run that
    // ends in between leaves the name to the end-of-run cleanup.
    engine.tag(built, &repo, "built").await?;
    let name = TagGuard::new(engine, format!("{repo}:built"));
    let mut added: image_archive::Added = BTreeMap::new();
    let mut small: HashMap<String, Vec<u8>> = HashMap::new();
    let (config, descriptors) = loop {
        timings.passes += 1;
        sink.set_policy(policy.clone());
        push_to_sink(engine, &sink, "built")
            .await
            .map_err(|e| failed(built, e))?;
        for (digest, mut b) in sink.take_blobs() {
            let added_at =
                (plan.keep..plan.diff_ids.len()).find(|&i| plan.diff_ids[i] == b.diff_id);
            if let (Some(i), Some(spool)) = (added_at, b.spool.take_if(|_| added_at.is_some())) {
                timings.bytes_added += b.bytes;
                added.insert(i, (spool, format!("blob {digest}")));
            } else if plan.diff_ids.contains(&b.diff_id) {
                // A base layer the engine sent anyway.
            } else if let Some(bytes) = image_archive::small_blob(&b) {
                small.insert(digest, bytes);
            }
        }
        let (top, mut by_digest) = sink
            .manifests("built")
            .ok_or_else(|| failed(built, "the push sent no manifest"))?;
        let (config_digest, layers) =
            image_archive::pushed_manifest(&top, &by_digest).map_err(|e| failed(built, e))?;
        // What the registry got under the tag must be the built image itself: the image id
        // is the config digest (classic) or the manifest's (containerd). Layers are checked
        // against the engine's diff ids in `finish`.
        let pushed = match store {
            Store::Classic => config_digest.clone(),
            Store::Containerd => format!("sha256:{}", crate::hex::encode(Sha256::digest(&top))),
        };
        if pushed != built {
            return Err(failed(
                built,
                format!("the registry got {pushed} under the built image's name, not {built}"),
            ));
        }
        let mut missing: HashSet<String> = (plan.keep..plan.diff_ids.len())
            .filter(|i| !added.contains_key(i))
            .filter_map(|i| Some(layers.get(i)?.digest().to_string()))
            .collect();
        if !small.contains_key(&config_digest) {
            missing.insert(config_digest);
        }
        if missing.is_empty() {
            by_digest.extend(small.drain());
            break image_archive::pushed_config(&top, &by_digest).map_err(|e| failed(built, e))?;
        }
        if timings.passes >= 2 {
            return Err(failed(
                built,
                format!(
                    "the push did not hand over {} blob(s) the registry asked for: {missing:?}",
                    missing.len()
                ),
            ));
        }
        // The second push: only the base layers, by the digests this manifest gave them,
        // are had. The classic store may try a layer under more than one digest it has
        // pushed it as before: each of those is asked for too, until it sends the layer.
        policy = Policy {
            ask: missing,
            have: layers[..plan.keep.min(layers.len())]
                .iter()
                .map(|d| d.digest().to_string())
                .collect(),
            skip_unknown: false,
            spool: true,
        };
    };
    engine.tag(base, &repo, "built").await?;
    name.release().await?;
    timings.save = started.elapsed();
    drop(sink);
    image_archive::finish(plan, config, descriptors, added, lower, timings)
        .map_err(|e| failed(built, e))
}

/// The base's folders ([`Lower`]), cached per base under `$XDG_CACHE_HOME/rdna1-images/lower`
/// (else `~/.cache/...`) by the chain id of its top layer: a chain id names the layers'
/// bytes, so an entry never goes stale. A missing, unreadable or damaged entry is read
/// again from the engine; a failed write only costs that.
mod lower_cache {
    use std::path::PathBuf;

    use crate::image_archive::{chain_ids, Plan};
    use crate::reproduce::Lower;

    fn path(plan: &Plan) -> Option<PathBuf> {
        let top = chain_ids(&plan.diff_ids[..plan.keep]).pop()?;
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        let dir = match var("XDG_CACHE_HOME") {
            Some(d) => d,
            None => var("HOME")?.join(".cache"),
        };
        Some(
            dir.join("rdna1-images/lower")
                .join(top.trim_start_matches("sha256:")),
        )
    }

    pub fn load(plan: &Plan) -> Option<Lower> {
        Lower::from_bytes(&std::fs::read(path(plan)?).ok()?)
    }

    pub fn store(plan: &Plan, lower: &Lower) {
        let Some(p) = path(plan) else { return };
        let write = || -> std::io::Result<()> {
            let dir = p.parent().expect("a file in a folder");
            std::fs::create_dir_all(dir)?;
            let mut f = tempfile::NamedTempFile::new_in(dir)?;
            std::io::Write::write_all(&mut f, &lower.to_bytes())?;
            f.persist(&p).map_err(|e| e.error)?;
            Ok(())
        };
        if let Err(e) = write() {
            tracing::debug!("caching the base's folders in {}: {e}", p.display());
        }
    }
}

/// Builds the recipe a second time without cache, normalises it, and compares with `first`.
/// The second image is removed unless it is the same as the first.
pub async fn verify(
    engine: &Engine,
    r: &Recipe,
    prepared: &Prepared,
    opts: &BuildOptions,
    first: &Normalised,
    progress: &mut dyn Progress,
) -> Result<Comparison, EngineError> {
    progress.note(&format!(
        "--verify-reproducible: building {} a second time without cache",
        r.name
    ));
    let again = BuildOptions {
        level: opts.level,
        no_cache: true,
        force: true,
        network: opts.network,
        registry: None,
        verify_reproducible: false,
    };
    let built = build_image(engine, r, prepared, &again, progress).await?;
    let (second, guard) = normalise(engine, r, built, progress).await?;
    let second = second.normalised;
    let c = reproduce::compare(first, &second);
    if second.image_id == first.image_id {
        let _ = guard.keep();
    } else {
        guard.release().await?;
    }
    progress.note(&c.to_string());
    Ok(c)
}

#[cfg(test)]
mod stop_tests {
    use super::*;
    use std::io::Read;
    use std::sync::mpsc;
    use std::time::Duration;

    /// An endless save stream.
    struct Endless;

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            buf.fill(0);
            Ok(buf.len())
        }
    }

    /// utime + stime of thread `tid` of this process, in clock ticks; None once it is gone.
    fn cpu_ticks(tid: &str) -> Option<u64> {
        let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
        // Fields after the `(comm)`, which may hold spaces: state is the 3rd field overall.
        let rest = &s[s.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    }

    #[test]
    fn a_cancelled_save_ends_the_copy_and_its_thread_uses_no_cpu() {
        let (tx, rx) = mpsc::channel();
        let token = tokio_util::sync::CancellationToken::new();
        let cancel = token.clone();
        std::thread::spawn(move || {
            let me = std::fs::read_link("/proc/thread-self").unwrap();
            let tid = me.file_name().unwrap().to_string_lossy().into_owned();
            tx.send(Err(tid)).unwrap();
            let mut r = StopOnCancel::new(Endless, cancel);
            // A first read goes through; then the run is cancelled.
            let mut buf = [1u8; 8];
            assert_eq!(r.read(&mut buf).unwrap(), 8);
            tx.send(Err("read".into())).unwrap();
            let copied = std::io::copy(&mut r, &mut std::io::sink());
            let _ = tx.send(Ok(copied));
        });
        let Ok(Err(tid)) = rx.recv() else { panic!() };
        assert_eq!(rx.recv().unwrap().unwrap_err(), "read");
        token.cancel();
        let ended = rx.recv_timeout(Duration::from_secs(3));
        // Measured either way: what the reading thread burns after the cancellation.
        let before = cpu_ticks(&tid);
        std::thread::sleep(Duration::from_millis(1000));
        let after = cpu_ticks(&tid);
        let burnt = match (before, after) {
            (Some(b), Some(a)) => a - b,
            _ => 0,
        };
        let copied = ended.unwrap_or_else(|_| {
            panic!("io::copy still running 3 s after the cancellation; its thread used {burnt} clock ticks of CPU in the next second")
        });
        let e = copied
            .unwrap()
            .expect_err("a cancelled save must end in an error");
        assert_ne!(e.kind(), std::io::ErrorKind::Interrupted);
        assert!(
            e.get_ref().is_some_and(|c| c.is::<Cancelled>()),
            "the error says why: {e:?}"
        );
        assert_eq!(burnt, 0, "the reading thread still uses CPU");
    }
}
