//! build -> smoke -> tag, and the rule that holds it together: no tag without a passed
//! smoke test. A failed or hung smoke test leaves the previous good tag where it was and
//! removes the candidate image and its container.

use std::time::Instant;

use crate::context::{self, Prepared};
use crate::engine::{BuildEvent, Engine, EngineError, ImageGuard, SweepGuard};
use crate::recipe::{Loaded, Recipe};
use crate::smoke::{self, Level};

pub mod app;
pub mod build_stage;
pub mod distribute;
pub mod normalise;
pub mod smoke_stage;
pub mod types;

pub use build_stage::build_image;
pub use smoke_stage::{container_spec, host_root, smoke_image};
pub use types::*;

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
    let mut outcome = BuildOutcome::new(&r.name, prepared.digest.hex());
    if !opts.force {
        if let Some(existing) = engine.image(&pinned_ref).await? {
            // A skip needs an earlier pass at the level asked for, or a stronger one.
            let recorded =
                distribute::recorded_level(engine, &r.name, &prepared.digest, &existing.id).await?;
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
    // The registry's name of an image pulled to be tested here: it holds the image until
    // the test is judged (untagging an only name deletes the image), then goes.
    let mut pulled_name = None;
    // Verifying reproducibility means building here, twice: no pull-or-build then.
    if let Some(plan) = opts
        .registry
        .as_ref()
        .filter(|p| p.pull && !opts.verify_reproducible)
    {
        use distribute::{pull_for_build, PullForBuild};
        let asked = Instant::now();
        let pulled_or_not =
            pull_for_build(engine, plan, loaded, &prepared.digest, opts.level, progress).await?;
        progress.stage(Stage::Pull, asked.elapsed().as_secs_f64());
        match pulled_or_not {
            PullForBuild::Build => {}
            PullForBuild::Done(o) => return Ok(*o),
            PullForBuild::NeedsSmoke(id, name) => {
                pulled = Some(id);
                pulled_name = Some(name);
            }
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
            let (norm, candidate) = normalise::normalise(engine, r, built, progress).await?;
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
        let c = normalise::verify(engine, r, &prepared, opts, n, progress).await?;
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
        // Untested but kept, as before: the user asked for the build (a pulled one under
        // the registry's name, its only one).
        let _ = candidate.keep();
        if let Some(name) = pulled_name {
            name.keep();
        }
        return Ok(outcome);
    }
    let result = smoke_image(engine, &image_id, r, opts.level, progress).await?;
    let tagging = Instant::now();
    let tagged = judge_and_tag(engine, r, &prepared, candidate, result, outcome).await;
    progress.stage(Stage::Tag, tagging.elapsed().as_secs_f64());
    let mut tagged = tagged?;
    if let Some(name) = pulled_name {
        // Passed: the local tags hold it now. Failed: this was its last name, and it goes.
        name.release().await?;
        if tagged.status == BuildStatus::Failed {
            tagged.candidate_removed = engine.image(&image_id).await?.is_none();
        }
    }
    Ok(tagged)
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
        normalise::normalise_beside_smoke(engine, r, built.id(), &mut deferred),
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
        distribute::record_pass(engine, &r.name, &prepared.digest, &image_id, passed).await?;
    }
    outcome.status = BuildStatus::Passed;
    Ok(outcome)
}
