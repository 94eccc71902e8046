//! build -> smoke -> tag, and the rule that holds it together: no tag without a passed
//! smoke test. A failed or hung smoke test leaves the previous good tag where it was and
//! removes the candidate image and its container.

use std::time::Instant;

use crate::context::Prepared;
use crate::engine::{Engine, EngineError, ImageGuard, SweepGuard};
use crate::recipe::Recipe;
use crate::smoke::{self, Level};

pub mod app;
pub mod build_stage;
pub mod distribute;
pub mod normalise;
pub mod smoke_stage;
pub mod target;
pub mod types;

pub use build_stage::build_image;
pub use smoke_stage::{container_spec, host_root, smoke_image};
pub use target::{smoke_target, Subject, Target};
pub use types::*;

/// Builds, tests and tags one recipe or app ([`Target`]). Whatever the run made and did not
/// keep (the engine's image, a normalised candidate that failed, a smoke container) is
/// removed by its guard before this returns, on every path.
pub async fn build(
    engine: &Engine,
    target: &Target<'_>,
    opts: &BuildOptions,
    progress: &mut dyn Progress,
) -> Result<BuildOutcome, EngineError> {
    // Dropped armed (an error, or the future dropped on a signal), it sweeps the untagged
    // images of this input digest that no other guard knew of.
    let mut sweep = None;
    let result = build_guarded(engine, target, opts, progress, &mut sweep).await;
    if let (Ok(_), Some(s)) = (&result, sweep) {
        s.finished();
    }
    crate::engine::guard::drain().await;
    result
}

async fn build_guarded(
    engine: &Engine,
    target: &Target<'_>,
    opts: &BuildOptions,
    progress: &mut dyn Progress,
    sweep: &mut Option<SweepGuard>,
) -> Result<BuildOutcome, EngineError> {
    let r = &target.recipe;
    let prepared = &target.prepared;
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
                // The moving tag names the image of today's inputs after every build,
                // skipped or not (a revert to earlier inputs moves it back).
                let (moving, _) = tags(&r.name, &prepared.digest);
                let moving_ref = format!("{REPOSITORY}:{moving}");
                let mut names = existing.tags;
                if !names.contains(&moving_ref) {
                    let was = engine.image(&moving_ref).await?.map(|i| i.id);
                    engine.tag(&existing.id, REPOSITORY, &moving).await?;
                    progress.note(&format!(
                        "moved {moving_ref} to image {} (today's inputs){}",
                        short_id(&existing.id),
                        was.map(|w| format!(", from {}", short_id(&w)))
                            .unwrap_or_default()
                    ));
                    names.push(moving_ref);
                }
                outcome.tags = names
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
            let result = smoke_target(engine, &existing.id, target, opts.level, progress).await?;
            // Tagged already, so a failure removes nothing: the image and its tags stay.
            let candidate = ImageGuard::new(engine, existing.id);
            return judge_and_tag(
                engine, r, prepared, candidate, result, None, outcome, progress,
            )
            .await;
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
        let pulled_or_not = pull_for_build(engine, plan, target, opts.level, progress).await?;
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
                target.describe(),
                prepared.digest.short()
            ));
            let started = Instant::now();
            progress.stage_started(Stage::Build, &r.name);
            let built = build_image(engine, r, prepared, opts, progress).await?;
            let build_time = started.elapsed().as_secs_f64();
            progress.stage(Stage::Build, build_time);
            // The engine's image carries build times; the one tested, tagged and pushed does
            // not. Normalise first, then test the normalised candidate: the container of the
            // smoke test runs the very image that gets tagged, pushed and recorded as tested.
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
        let c = normalise::verify(engine, r, prepared, opts, n, progress).await?;
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
    let result = smoke_target(engine, &image_id, target, opts.level, progress).await?;
    let tagging = Instant::now();
    let tagged = judge_and_tag(
        engine,
        r,
        prepared,
        candidate,
        result,
        normalised.as_ref(),
        outcome,
        progress,
    )
    .await;
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

/// Tags a passed candidate (or removes a failed one) and records the level it passed.
///
/// `<recipe>-<digest12>` names the last passed build of these inputs: a forced rebuild
/// whose floating inputs (system packages, anything the recipe leaves unpinned) moved gives
/// another image, and the tag moves to it with the drift reported, layer by layer and file
/// by file (`normalised` is the new image's analysis; the old image is read again for it).
/// The replaced image goes unless something else still names it.
#[allow(clippy::too_many_arguments)]
async fn judge_and_tag(
    engine: &Engine,
    r: &Recipe,
    prepared: &Prepared,
    candidate: ImageGuard,
    result: SmokeResult,
    normalised: Option<&crate::reproduce::Normalised>,
    mut outcome: BuildOutcome,
    progress: &mut dyn Progress,
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
    let pinned_ref = format!("{REPOSITORY}:{pinned}");
    let replaced = engine
        .image(&pinned_ref)
        .await?
        .map(|i| i.id)
        .filter(|old| *old != image_id);
    if let Some(old) = &replaced {
        outcome.drift =
            Some(drift_note(engine, r, &pinned_ref, old, &image_id, normalised, progress).await);
    }
    // The commit: both tags, the pass report and the replaced image's removal, whole. A
    // signal from here on waits for its end, so no run stops with one tag moved and not
    // the other, or with a tagged image and no record of its pass.
    commit(&format!("build of {}", r.name), async {
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
        crate::signals::finished(format!(
            "tagged {} (image {}, passed the {} smoke test)",
            outcome.tags.join(" and "),
            short_id(&image_id),
            outcome
                .smoke
                .as_ref()
                .map(|s| s.level.to_string())
                .unwrap_or_default()
        ));
        if let Some(old) = replaced {
            // No tag of ours names it now: it goes, unless a container or another name holds it.
            engine.remove_untagged(&old).await?;
        }
        Ok(())
    })
    .await?;
    outcome.status = BuildStatus::Passed;
    Ok(outcome)
}

/// A commit of `what`: `work` (tags that move together) under
/// [`crate::signals::uninterrupted`]. A signal that came during it ends the run right after,
/// with exit 130 and the message naming what stays, rather than wherever the command next
/// waits (or not at all when nothing is left to wait for).
pub(crate) async fn commit<T>(
    what: &str,
    work: impl std::future::Future<Output = Result<T, EngineError>>,
) -> Result<T, EngineError> {
    let out = crate::signals::uninterrupted(work).await?;
    if crate::signals::cancelled() {
        return Err(EngineError::interrupted(what));
    }
    Ok(out)
}

/// Says that the same inputs gave another image than the one `pinned_ref` names, and how
/// they differ: the old image is analysed as the new one was (its layers are already
/// normalised, so nothing new is loaded) and the two compared with
/// [`crate::reproduce::compare`]. A comparison that cannot be made is said, not fatal.
/// Returns the same for `--json`.
async fn drift_note(
    engine: &Engine,
    r: &Recipe,
    pinned_ref: &str,
    old: &str,
    new: &str,
    normalised: Option<&crate::reproduce::Normalised>,
    progress: &mut dyn Progress,
) -> Drift {
    progress.note(&format!(
        "drift: the same inputs gave another image; {pinned_ref} moves from {} to {} (a floating input changed: a system package, or anything the recipe leaves unpinned)",
        short_id(old),
        short_id(new)
    ));
    let mut drift = Drift {
        replaced_image: old.to_string(),
        comparison: None,
        not_compared: None,
    };
    let Some(new_n) = normalised else {
        drift.not_compared = Some("the new image was not analysed (it was not normalised)".into());
        return drift;
    };
    match normalise::read_normalised(engine, r, old, progress).await {
        Ok(old_n) => {
            let c = crate::reproduce::compare(&old_n, new_n);
            progress.note(&format!("drift of {pinned_ref}, old build first:\n{c}"));
            drift.comparison = Some(c);
        }
        Err(e) => {
            let why = crate::error_chain::Chain(&e).to_string();
            progress.note(&format!(
                "drift: could not compare {} with {}: {why}",
                short_id(old),
                short_id(new),
            ));
            drift.not_compared = Some(why);
        }
    }
    drift
}
