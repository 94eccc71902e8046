//! The build stage: a prepared context in, the engine's image (under its guard) out.

use std::collections::BTreeMap;

use crate::context::Prepared;
use crate::engine::{BuildRequest, Engine, EngineError, ImageGuard};
use crate::labels;
use crate::pipeline::types::{BuildOptions, Progress};
use crate::recipe::Recipe;

/// Builds the prepared context; the input digest goes in as a label.
pub async fn build_image(
    engine: &Engine,
    r: &Recipe,
    prepared: &Prepared,
    opts: &BuildOptions,
    progress: &mut dyn Progress,
) -> Result<ImageGuard, EngineError> {
    let mut build_labels: BTreeMap<String, String> = prepared.labels.clone();
    build_labels.insert(labels::INPUT_DIGEST.to_string(), prepared.digest.hex());
    engine
        .build(
            BuildRequest {
                what: &r.name,
                tar: prepared.tar.clone(),
                dockerfile: &prepared.context.dockerfile,
                build_args: &prepared.build_args,
                labels: &build_labels,
                no_cache: opts.no_cache,
                network: opts.network,
            },
            &mut |e| progress.build(&e),
        )
        .await
        .map(|id| ImageGuard::new(engine, id))
}
