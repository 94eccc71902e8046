//! What the stages share: the options of a build, its outcome, and the [`Progress`] trait the
//! UI implements. It sits below every stage and the sequencer ([`crate::pipeline`]) so the
//! stages can hand outcomes to each other without importing the module that calls them.

use serde::Serialize;

use crate::context;
use crate::engine::BuildEvent;
use crate::registry::{Credentials, Repository};
use crate::smoke::{Level, SmokeReport};

/// The local repository every image is tagged in (defined in the core, where `run` and the
/// app renderer read it too).
pub use crate::registry::REPOSITORY;

/// The tags of a recipe: the moving one and the one named by the input digest.
pub fn tags(recipe: &str, digest: &context::InputDigest) -> (String, String) {
    (recipe.to_string(), format!("{recipe}-{}", digest.short()))
}

/// Where progress goes. The CLI prints it; tests can collect it.
pub trait Progress: Send {
    fn build(&mut self, event: &BuildEvent);
    fn smoke_line(&mut self, line: &str);
    fn note(&mut self, message: &str);
    /// A line of push or pull progress (per layer).
    fn transfer_line(&mut self, line: &str) {
        self.note(line)
    }
    /// A layer's push or pull progress, keyed by its id (a terminal draws a bar per layer).
    fn layer(&mut self, _event: &LayerEvent) {}
    /// A stage of a recipe's run began (`what` says on what).
    fn stage_started(&mut self, _stage: Stage, _what: &str) {}
    /// A stage of a recipe's run ended after `seconds` (for the summary line).
    fn stage(&mut self, _stage: Stage, _seconds: f64) {}
}

/// The stages the final summary line accounts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Pull,
    Build,
    Normalise,
    Smoke,
    Tag,
    Push,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Pull => "pull",
            Stage::Build => "build",
            Stage::Normalise => "normalise",
            Stage::Smoke => "smoke",
            Stage::Tag => "tag",
            Stage::Push => "push",
        }
    }
}

/// One layer's transfer progress.
#[derive(Debug, Clone)]
pub struct LayerEvent<'a> {
    pub id: &'a str,
    pub status: &'a str,
    pub current: Option<i64>,
    pub total: Option<i64>,
    /// The layer is done (pushed, pulled, already there).
    pub finished: bool,
}

/// The smoke test's result for one image.
#[derive(Debug, Clone, Serialize)]
pub struct SmokeResult {
    pub level: Level,
    pub passed: bool,
    pub findings: Vec<String>,
    pub report: SmokeReport,
    /// The compatibility table: every case's verdict, times and error, beside what the recipe
    /// expects of it.
    pub cases: Vec<crate::smoke::CompatRow>,
    /// The human table.
    #[serde(skip)]
    pub table: String,
    pub container_seconds: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BuildStatus {
    /// `<recipe>-<digest12>` existed: nothing was built.
    Skipped,
    /// Built, smoke test passed, tagged.
    Passed,
    /// Built, smoke test failed: not tagged.
    Failed,
    /// Built with `--smoke skip`: not tagged.
    Untested,
    /// Pulled from the registry (same input digest, its smoke report covers the level).
    Pulled,
    /// `--verify-reproducible`: a second build gave another image; not tagged.
    #[serde(rename = "not_reproducible")]
    NotReproducible,
}

#[derive(Debug, Clone, Serialize)]
pub struct BuildOutcome {
    pub recipe: String,
    #[serde(serialize_with = "crate::digest_json::sha256")]
    pub input_digest: String,
    pub status: BuildStatus,
    pub image_id: Option<String>,
    /// Tags set by this build (or found, when skipped).
    pub tags: Vec<String>,
    pub smoke: Option<SmokeResult>,
    pub build_seconds: Option<f64>,
    /// A failed candidate was removed (it had no tag of its own).
    pub candidate_removed: bool,
    /// Layer digests (diff ids) of the image, bottom first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
    /// The second build's comparison, with `--verify-reproducible`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reproducible: Option<crate::reproduce::Comparison>,
    /// With `--push`: the references pushed and their manifest digests (empty: not pushed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pushed: Option<Vec<PushedTag>>,
    /// A forced rebuild of these inputs gave another image than the one the pinned tag
    /// named: the tag moved, and this says from what and how they differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,
}

/// The same inputs gave another image (a floating input moved): what the pinned tag named
/// before, and the comparison of the two (the replaced build first), when it could be made.
#[derive(Debug, Clone, Serialize)]
pub struct Drift {
    #[serde(serialize_with = "crate::digest_json::sha256")]
    pub replaced_image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comparison: Option<crate::reproduce::Comparison>,
    /// Why there is no comparison (the replaced image could not be read again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_compared: Option<String>,
}

impl BuildOutcome {
    /// The outcome of a run of `recipe` with these inputs before anything happened: skipped
    /// until a stage says otherwise.
    pub fn new(recipe: &str, input_digest_hex: String) -> Self {
        BuildOutcome {
            recipe: recipe.to_string(),
            input_digest: input_digest_hex,
            status: BuildStatus::Skipped,
            image_id: None,
            tags: vec![],
            smoke: None,
            build_seconds: None,
            candidate_removed: false,
            layers: vec![],
            reproducible: None,
            pushed: None,
            drift: None,
        }
    }
}

pub struct BuildOptions {
    pub level: Level,
    pub no_cache: bool,
    pub force: bool,
    /// `networkmode` for RUN steps (None: the engine's default).
    pub network: Option<&'static str>,
    /// Pull-or-build: the registry to ask for `<recipe>-<digest12>` first.
    pub registry: Option<RegistryPlan>,
    /// Build a second time without cache and compare before the smoke test.
    pub verify_reproducible: bool,
}

/// `sha256:0123456789ab...` -> `0123456789ab`.
pub fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

/// A registry and the credentials for it.
#[derive(Debug, Clone)]
pub struct Remote {
    pub repo: Repository,
    pub creds: Option<Credentials>,
}

/// What `build` does with the registry.
#[derive(Debug, Clone)]
pub struct RegistryPlan {
    pub remote: Remote,
    /// Ask the registry for `<recipe>-<digest12>` and pull it instead of building.
    pub pull: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PushedTag {
    pub reference: String,
    pub digest: String,
    pub seconds: f64,
    pub bytes_uploaded: i64,
}
