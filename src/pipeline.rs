//! build -> smoke -> tag, and the rule that holds it together: no tag without a passed
//! smoke test. A failed or hung smoke test leaves the previous good tag where it was and
//! removes the candidate image and its container.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::context::{self, Prepared};
use crate::engine::{
    BuildEvent, BuildRequest, ContainerSpec, Engine, EngineError, ImageGuard, MountSpec, SweepGuard,
};
use crate::host::HostRoot;
use crate::recipe::{Loaded, Recipe};
use crate::render::labels;
use crate::run_plan::{self, RunOptions, RunPlan};
use crate::smoke::{self, Judgement, Level, SmokeReport};

/// The local repository every image is tagged in.
pub const REPOSITORY: &str = "rdna1-images";

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
    #[serde(serialize_with = "crate::ui::json::sha256")]
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
    pub pushed: Option<Vec<crate::distribute::PushedTag>>,
}

pub struct BuildOptions {
    pub level: Level,
    pub no_cache: bool,
    pub force: bool,
    /// `networkmode` for RUN steps (None: the engine's default).
    pub network: Option<&'static str>,
    /// Pull-or-build: the registry to ask for `<recipe>-<digest12>` first.
    pub registry: Option<crate::distribute::RegistryPlan>,
    /// Build a second time without cache and compare before the smoke test.
    pub verify_reproducible: bool,
}

/// Builds, tests and tags one recipe. Whatever the run made and did not keep (the engine's
/// image, a normalised candidate that failed, a smoke container) is removed by its guard
/// before this returns, on every path.
pub async fn build(
    engine: &Engine,
    loaded: &Loaded,
    opts: &BuildOptions,
    progress: &mut dyn Progress,
) -> Result<BuildOutcome, EngineError> {
    // Dropped armed (an error, or the future dropped on a signal), it sweeps the untagged
    // images of this input digest that no other guard knew of.
    let mut sweep = None;
    let result = build_guarded(engine, loaded, opts, progress, &mut sweep).await;
    if let (Ok(_), Some(s)) = (&result, sweep) {
        s.finished();
    }
    crate::engine::guard::drain().await;
    result
}

async fn build_guarded(
    engine: &Engine,
    loaded: &Loaded,
    opts: &BuildOptions,
    progress: &mut dyn Progress,
    sweep: &mut Option<SweepGuard>,
) -> Result<BuildOutcome, EngineError> {
    let r = &loaded.recipe;
    // A missing or unreadable file or patch is the recipe's fault: exit 2, with its field.
    let prepared = context::prepare(loaded)?;
    *sweep = Some(SweepGuard::new(engine, prepared.digest.hex()));
    let (_, pinned) = tags(&r.name, &prepared.digest);
    let pinned_ref = format!("{REPOSITORY}:{pinned}");
    let mut outcome = BuildOutcome {
        recipe: r.name.to_string(),
        input_digest: prepared.digest.hex(),
        status: BuildStatus::Skipped,
        image_id: None,
        tags: vec![],
        smoke: None,
        build_seconds: None,
        candidate_removed: false,
        layers: vec![],
        reproducible: None,
        pushed: None,
    };
    if !opts.force {
        if let Some(existing) = engine.image(&pinned_ref).await? {
            // A skip needs an earlier pass at the level asked for, or a stronger one.
            let recorded =
                crate::distribute::recorded_level(engine, &r.name, &prepared.digest, &existing.id)
                    .await?;
            outcome.image_id = Some(existing.id.clone());
            if smoke::covers(recorded, opts.level) {
                progress.note(&format!(
                    "{pinned_ref} already exists (image {}, passed the {} smoke test): same inputs, nothing to build; --force rebuilds",
                    short_id(&existing.id),
                    recorded.map(Level::as_str).unwrap_or("no")
                ));
                outcome.tags = existing
                    .tags
                    .into_iter()
                    .filter(|t| t.starts_with(&format!("{REPOSITORY}:")))
                    .collect();
                return Ok(outcome);
            }
            progress.note(&format!(
                "{pinned_ref} already exists (image {}), but its recorded smoke level is {}, and {} was asked for: testing it again",
                short_id(&existing.id),
                recorded.map(Level::as_str).unwrap_or("none"),
                opts.level
            ));
            let result = smoke_image(engine, &existing.id, r, opts.level, progress).await?;
            // Tagged already, so a failure removes nothing: the image and its tags stay.
            let candidate = ImageGuard::new(engine, existing.id);
            return judge_and_tag(engine, r, &prepared, candidate, result, outcome).await;
        }
    }
    let mut pulled = None;
    // Verifying reproducibility means building here, twice: no pull-or-build then.
    if let Some(plan) = opts
        .registry
        .as_ref()
        .filter(|p| p.pull && !opts.verify_reproducible)
    {
        use crate::distribute::{pull_for_build, PullForBuild};
        let asked = Instant::now();
        let pulled_or_not =
            pull_for_build(engine, plan, loaded, &prepared.digest, opts.level, progress).await?;
        progress.stage(Stage::Pull, asked.elapsed().as_secs_f64());
        match pulled_or_not {
            PullForBuild::Build => {}
            PullForBuild::Done(o) => return Ok(*o),
            PullForBuild::NeedsSmoke(id) => pulled = Some(id),
        }
    }
    let (candidate, normalised) = match pulled {
        Some(id) => (ImageGuard::new(engine, id), None),
        None => {
            progress.note(&format!(
                "building {} (input digest {})",
                r.name,
                prepared.digest.short()
            ));
            let started = Instant::now();
            progress.stage_started(Stage::Build, &r.name);
            let built = build_image(engine, r, &prepared, opts, progress).await?;
            let build_time = started.elapsed().as_secs_f64();
            progress.stage(Stage::Build, build_time);
            if opts.level != Level::Skip && !opts.verify_reproducible {
                return smoke_beside_normalise(
                    engine, loaded, &prepared, built, opts, outcome, started, build_time, progress,
                )
                .await;
            }
            // The engine's image carries build times; the one tested, tagged and pushed does not.
            progress.stage_started(Stage::Normalise, &r.name);
            let (norm, candidate) = crate::normalise::normalise(engine, r, built, progress).await?;
            progress.stage(Stage::Normalise, norm.seconds);
            outcome.build_seconds = Some(started.elapsed().as_secs_f64());
            (candidate, Some(norm.normalised))
        }
    };
    let image_id = candidate.id().to_string();
    outcome.image_id = Some(image_id.clone());
    if let Some(n) = &normalised {
        outcome.layers = n.diff_ids();
    }
    if let (true, Some(n)) = (opts.verify_reproducible, &normalised) {
        let c = crate::normalise::verify(engine, r, &prepared, opts, n, progress).await?;
        let same = c.reproducible;
        outcome.reproducible = Some(c);
        if !same {
            outcome.status = BuildStatus::NotReproducible;
            outcome.candidate_removed = candidate.release().await?;
            return Ok(outcome);
        }
    }
    if opts.level == Level::Skip {
        progress.note(&format!(
            "smoke test SKIPPED (--smoke skip): image {} is NOT tagged",
            short_id(&image_id)
        ));
        outcome.status = BuildStatus::Untested;
        // Untested but kept, as before: the user asked for the build.
        let _ = candidate.keep();
        return Ok(outcome);
    }
    let result = smoke_image(engine, &image_id, r, opts.level, progress).await?;
    let tagging = Instant::now();
    let tagged = judge_and_tag(engine, r, &prepared, candidate, result, outcome).await;
    progress.stage(Stage::Tag, tagging.elapsed().as_secs_f64());
    tagged
}

/// Collects notes while another task owns the console, to print them in order afterwards.
#[derive(Default)]
struct Deferred {
    notes: Vec<String>,
}

impl Progress for Deferred {
    fn build(&mut self, _event: &BuildEvent) {}
    fn smoke_line(&mut self, _line: &str) {}
    fn note(&mut self, message: &str) {
        self.notes.push(message.to_string());
    }
}

/// The smoke test runs on the engine's image while the normalised one is made from it: the
/// normalised image differs only in times and tar dialect (checked by
/// [`crate::reproduce::same_but_for_time`] and the rewrite's construction), so the tested
/// files and config are the tagged ones, and the wall time is the longer of the two instead
/// of their sum.
#[allow(clippy::too_many_arguments)]
async fn smoke_beside_normalise(
    engine: &Engine,
    loaded: &Loaded,
    prepared: &Prepared,
    built: ImageGuard,
    opts: &BuildOptions,
    mut outcome: BuildOutcome,
    started: Instant,
    build_time: f64,
    progress: &mut dyn Progress,
) -> Result<BuildOutcome, EngineError> {
    let r = &loaded.recipe;
    let mut deferred = Deferred::default();
    let (norm, smoke) = tokio::join!(
        crate::normalise::normalise_beside_smoke(engine, r, built.id(), &mut deferred),
        smoke_image(engine, built.id(), r, opts.level, progress)
    );
    for n in &deferred.notes {
        progress.note(n);
    }
    if let Ok((n, _)) = &norm {
        progress.stage(Stage::Normalise, n.seconds);
    }
    let (norm, candidate) = norm.inspect_err(|_| {
        progress.note(&format!(
            "normalise failed: the built candidate {} is removed",
            short_id(built.id())
        ))
    })?;
    if built.id() == candidate.id() {
        let _ = built.keep();
    } else {
        built.release().await?;
    }
    let image_id = candidate.id().to_string();
    outcome.build_seconds = Some(started.elapsed().as_secs_f64());
    tracing::debug!(
        "timing: build {build_time:.2} s, normalise {:.2} s beside the smoke test {:.2} s, both done at {:.2} s",
        norm.seconds,
        smoke.as_ref().map(|s| s.container_seconds).unwrap_or(0.0),
        started.elapsed().as_secs_f64()
    );
    outcome.image_id = Some(image_id.clone());
    outcome.layers = norm.normalised.diff_ids();
    let tagging = Instant::now();
    let tagged = judge_and_tag(engine, r, prepared, candidate, smoke?, outcome).await;
    progress.stage(Stage::Tag, tagging.elapsed().as_secs_f64());
    tagged
}

/// Tags a passed candidate (or removes a failed one) and records the level it passed.
async fn judge_and_tag(
    engine: &Engine,
    r: &Recipe,
    prepared: &Prepared,
    candidate: ImageGuard,
    result: SmokeResult,
    mut outcome: BuildOutcome,
) -> Result<BuildOutcome, EngineError> {
    let (moving, pinned) = tags(&r.name, &prepared.digest);
    let image_id = candidate.id().to_string();
    let passed = result.passed;
    outcome.smoke = Some(result);
    if !passed {
        outcome.status = BuildStatus::Failed;
        // The candidate goes; a previous good image keeps its tags.
        outcome.candidate_removed = candidate.release().await?;
        return Ok(outcome);
    }
    // The test hook: passed, nothing tagged yet.
    crate::signals::pause_at("tag").await;
    // The immutable tag first: if the moving tag fails after it, a rerun skips the build.
    for t in [&pinned, &moving] {
        engine.tag(&image_id, REPOSITORY, t).await?;
        outcome.tags.push(format!("{REPOSITORY}:{t}"));
    }
    // Tagged: it stays.
    let _ = candidate.keep();
    if let Some(passed) = &outcome.smoke {
        // The level it passed, beside it, for `push` and for pullers.
        crate::distribute::record_pass(engine, &r.name, &prepared.digest, &image_id, passed)
            .await?;
    }
    outcome.status = BuildStatus::Passed;
    Ok(outcome)
}

/// Builds the prepared context; the input digest goes in as a label.
pub async fn build_image(
    engine: &Engine,
    r: &Recipe,
    prepared: &Prepared,
    opts: &BuildOptions,
    progress: &mut dyn Progress,
) -> Result<ImageGuard, EngineError> {
    let mut build_labels = BTreeMap::new();
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

/// The host root the tool reads devices from (a fixture tree in tests).
pub fn host_root() -> std::path::PathBuf {
    std::env::var_os(crate::host::HOST_ROOT_ENV)
        .filter(|v| !v.is_empty())
        .map(Into::into)
        .unwrap_or_else(|| "/".into())
}

/// A run plan in the engine's terms: one mapping for `run` and the gpu smoke test.
pub fn container_spec(plan: &RunPlan) -> ContainerSpec {
    let mut labels: Vec<(String, String)> = plan
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.push((labels::MANAGED.into(), "true".into()));
    ContainerSpec {
        image: plan.image.clone(),
        cmd: plan.cmd.clone(),
        env: plan.env.clone(),
        labels,
        devices: plan.devices.clone(),
        group_add: plan.group_add.clone(),
        security_opt: plan.security_opt.clone(),
        ipc_host: plan.ipc_host,
        shm_size: plan.shm_size_bytes,
        mounts: plan
            .binds
            .iter()
            .map(|b| MountSpec::Bind {
                source: b.source.clone(),
                target: b.target.clone(),
            })
            .chain(plan.volumes.iter().map(|v| MountSpec::Volume {
                name: v.name.clone(),
                target: v.target.clone(),
            }))
            .collect(),
        workdir: Some(plan.workdir.clone()),
        network: plan.network.clone(),
        timeout: None,
        init: plan.init,
    }
}

/// Runs the smoke program in a fresh container of `image` and judges its report.
pub async fn smoke_image(
    engine: &Engine,
    image: &str,
    r: &Recipe,
    level: Level,
    progress: &mut dyn Progress,
) -> Result<SmokeResult, EngineError> {
    let spec = &r.smoke;
    let mut container = ContainerSpec {
        image: image.to_string(),
        cmd: smoke::command(spec, level, &r.python.bin),
        labels: vec![
            (labels::MANAGED.into(), "true".into()),
            (labels::ROLE.into(), "smoke".into()),
            (labels::RECIPE.into(), r.name.to_string()),
        ],
        network: Some("none".into()),
        timeout: Some(Duration::from_secs_f64(spec.container_timeout_s)),
        ..Default::default()
    };
    if level == Level::Gpu {
        // The devices, numeric GIDs and override `run` would use on this host; no cache
        // volume: the first call must meet MIOpen's search with empty caches.
        let what = || format!("gpu smoke test of {} ({})", r.name, short_id(image));
        let root = HostRoot::from_env().map_err(|e| EngineError::Api {
            what: what(),
            detail: format!("cannot read the host: {e}"),
        })?;
        let host = crate::host::probe(&root);
        let opts = RunOptions::new(std::env::temp_dir());
        let plan = run_plan::plan(r, &host, &opts).map_err(|e| EngineError::Api {
            what: what(),
            detail: e.to_string(),
        })?;
        let gpu = container_spec(&plan);
        container.devices = gpu.devices;
        container.group_add = gpu.group_add;
        container.security_opt = gpu.security_opt;
        container.env = gpu.env;
    }
    progress.note(&format!(
        "smoke test ({level}) of {} in a container without network, hard limit {} s",
        short_id(image),
        spec.container_timeout_s
    ));
    progress.stage_started(Stage::Smoke, &format!("{level} in {}", short_id(image)));
    let outcome = engine
        .run_to_completion(&container, &mut |line| progress.smoke_line(line))
        .await?;
    progress.stage(Stage::Smoke, outcome.seconds);
    let report = if outcome.timed_out {
        smoke::timed_out_report(spec, level, spec.container_timeout_s)
    } else {
        match smoke::parse_report(&outcome.stdout) {
            Ok(r) => r,
            Err(e) => {
                let tail: Vec<&str> = outcome.stderr.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(EngineError::Api {
                    what: format!("smoke test of {} ({})", r.name, short_id(image)),
                    detail: format!(
                        "{e} (container exit code {:?})\n  last stderr lines:\n    {}",
                        outcome.exit_code,
                        tail.join("\n    ")
                    ),
                });
            }
        }
    };
    let judgement: Judgement = smoke::judge(spec, level, &report);
    let table = smoke::table(spec, &report, &judgement);
    Ok(SmokeResult {
        level,
        passed: judgement.passed,
        findings: judgement.findings.clone(),
        report,
        table,
        container_seconds: outcome.seconds,
    })
}

/// `sha256:0123456789ab...` -> `0123456789ab`.
pub fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}
