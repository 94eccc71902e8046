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
use crate::engine::{Engine, EngineError};
use crate::pipeline::{self, BuildOptions, Progress};
use crate::recipe::{PyTorch, Recipe};
use crate::reproduce::{self, Comparison, Normalised};

/// One normalisation: the engine's image, the rewritten one, and what it cost.
#[derive(Debug, Clone)]
pub struct Normalisation {
    pub built: String,
    pub normalised: Normalised,
    pub saved_bytes: u64,
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
/// engine's original. Returns the id of the reproducible image.
pub async fn normalise(
    engine: &Engine,
    r: &Recipe,
    built: &str,
    progress: &mut dyn Progress,
) -> Result<Normalisation, EngineError> {
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
    let scratch = tempfile::Builder::new()
        .prefix("rdna1-images-normalise-")
        .tempdir()
        .map_err(|e| failed(built, format!("scratch folder: {e}")))?;
    let save = scratch.path().join("saved.tar");
    let saved_bytes = engine.save_image(built, &save).await?;
    let dir = scratch.path().to_path_buf();
    let epoch = r.source_date_epoch;
    let out = dir.join("normalised.tar");
    let out2 = out.clone();
    let normalised = tokio::task::spawn_blocking(move || {
        reproduce::normalise_save(&dir.join("saved.tar"), keep, epoch, &dir, &out2)
    })
    .await
    .map_err(|e| failed(built, e))?
    .map_err(|e| failed(built, e))?;
    std::fs::remove_file(&save).ok();
    if engine.image(&normalised.image_id).await?.is_none() {
        let loaded = engine.load_image(&out).await?;
        if loaded != normalised.image_id {
            return Err(failed(
                built,
                format!(
                    "the engine loaded {loaded}, but the rewritten config is {}",
                    normalised.image_id
                ),
            ));
        }
    }
    if built != normalised.image_id {
        engine.remove_untagged(built).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let rewritten = normalised.layers.iter().filter(|l| l.rewritten).count();
    progress.note(&format!(
        "reproducible image {}: {rewritten} layer(s) rewritten with SOURCE_DATE_EPOCH={epoch}, {keep} base layer(s) kept, in {seconds:.1} s (exported {} MB)",
        pipeline::short_id(&normalised.image_id),
        saved_bytes / 1_000_000
    ));
    Ok(Normalisation {
        built: built.to_string(),
        normalised,
        saved_bytes,
        seconds,
    })
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
    let built = pipeline::build_image(engine, r, prepared, &again, progress).await?;
    let second = normalise(engine, r, &built, progress).await?.normalised;
    let c = reproduce::compare(first, &second);
    if second.image_id != first.image_id {
        engine.remove_untagged(&second.image_id).await?;
    }
    progress.note(&c.to_string());
    Ok(c)
}
