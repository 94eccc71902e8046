//! The local record of a passed smoke test: a tiny image beside the image it is about.

use crate::context::InputDigest;
use crate::engine::{Engine, EngineError};
use crate::pipeline::types::{SmokeResult, REPOSITORY};
use crate::registry::{self, PassReport};

/// Builds the report of a passed smoke test as a tiny image and tags it
/// `rdna1-images:<recipe>-<digest12>-smoke-<level>`, beside the image it is about.
pub async fn record_pass(
    engine: &Engine,
    recipe: &str,
    digest: &InputDigest,
    image_id: &str,
    smoke: &SmokeResult,
) -> Result<String, EngineError> {
    let report = PassReport {
        schema: 1,
        recipe: recipe.to_string(),
        input_digest: digest.hex(),
        image_id: image_id.to_string(),
        level: smoke.level,
        tested_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        smoke: serde_json::to_value(&smoke.report).unwrap_or_default(),
        cases: smoke.cases.clone(),
    };
    let json = serde_json::to_vec_pretty(&report).expect("the report serializes");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(json.len() as u64);
    h.set_mtime(0);
    b.append_data(&mut h, "smoke-report.json", json.as_slice())
        .expect("writing to a Vec cannot fail");
    let tar = b.into_inner().expect("writing to a Vec cannot fail");
    let tag = registry::report_tag(recipe, &digest.short(), smoke.level);
    let reference = format!("{REPOSITORY}:{tag}");
    let previous = engine.image(&reference).await?.map(|i| i.id);
    engine
        .import(tar, REPOSITORY, &tag, &report.labels())
        .await?;
    // A retest moves the tag: the old report would be left as a dangling image.
    if let Some(old) = previous {
        engine.remove_untagged(&old).await?;
    }
    Ok(reference)
}
