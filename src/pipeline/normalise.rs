//! The step between build and smoke test that makes the image reproducible on this engine,
//! and `build --verify-reproducible`.
//!
//! Docker 20.10's BuildKit ignores SOURCE_DATE_EPOCH (no `rewrite-timestamp` exporter option
//! before BuildKit 0.13 / Docker 25), so the built image is exported, its new layers and
//! config rewritten deterministically ([`crate::reproduce`]), and loaded back. The smoke test
//! then tests the image that gets tagged and pushed. The base's layers are kept as they are:
//! they are already fixed, and rewriting them would break sharing with the base image.

use std::time::Instant;

use crate::context::Prepared;
use crate::engine::{export, guard, Engine, EngineError, ImageGuard, ScratchGuard};
use crate::image_archive::{self, Plan, Timings};
use crate::pipeline::build_stage::build_image;
use crate::pipeline::types::{self as pipeline, BuildOptions, Progress};
use crate::recipe::{PyTorch, Recipe};
use crate::reproduce::{self, Comparison, Normalised};

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

fn failed(image: &str, detail: impl ToString) -> EngineError {
    EngineError::Api {
        what: format!("normalising image {image}"),
        detail: detail.to_string(),
    }
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

/// [`normalise`] while a smoke test runs on `built`: the built image stays (its container
/// holds it) and the caller removes it once both are done.
pub async fn normalise_beside_smoke(
    engine: &Engine,
    r: &Recipe,
    built: &str,
    progress: &mut dyn Progress,
) -> Result<(Normalisation, ImageGuard), EngineError> {
    normalise_inner(engine, r, built, progress).await
}

/// A blocking reader that stops when the run is cancelled, so a cancelled `docker save`
/// does not go on spooling into the scratch folder on its blocking thread.
struct StopOnCancel<R>(R);

impl<R: std::io::Read> std::io::Read for StopOnCancel<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if crate::signals::cancelled() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "interrupted",
            ));
        }
        self.0.read(buf)
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
    let reader = StopOnCancel(engine.save_reader(built));
    // The blocking task holds the folder too: it goes when the last of the two lets go.
    let held = scratch.clone();
    let (saved, mut timings) = tokio::task::spawn_blocking(move || {
        let mut t = Timings::default();
        image_archive::read_save(reader, &plan, held.path(), &mut t).map(|s| (s, t))
    })
    .await
    .map_err(|e| failed(built, e))?
    .map_err(|e| failed(built, e))?;
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
    tracing::debug!(
        "normalise timing: save stream {:.2} s ({} MB of base layers skipped), spool {:.2} s ({} MB added), rewrite {:.2} s, load {:.2} s, total {seconds:.2} s",
        timings.save.as_secs_f64(),
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
