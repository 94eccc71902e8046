//! build -> smoke -> tag for an app recipe, on the stack image that passed its smoke test.
//!
//! The same rule as the stacks': no tag without a pass. The smoke test is the stack's suite
//! again inside the app image (the app's packages must not have broken torch), then the
//! app's own checks (start and health, one real job, clean stop). A failed app leaves the
//! previous good app image and its tags where they were.

use std::time::{Duration, Instant};

use crate::context::app::prepare;
use crate::engine::{ContainerSpec, Engine, EngineError, SweepGuard};
use crate::host::HostRoot;
use crate::labels;
use crate::pipeline::types::*;
use crate::pipeline::{build_image, distribute, normalise, smoke_image};
use crate::recipe::app::LoadedApp;
use crate::render::app::checks as app_checks;
use crate::render::app::{as_recipe, stack_tag};
use crate::run_plan::{self, RunOptions};
use crate::smoke::{self, Level};

/// The stack image an app builds on: the id its local tag names, and the tag of that image
/// that never moves (`<stack>-<digest12>`). Both tags are set only after a passed smoke
/// test, so they name a tested image.
pub async fn stack_image(engine: &Engine, l: &LoadedApp) -> Result<(String, String), EngineError> {
    let tag = stack_tag(l);
    let what = || format!("app {}", l.app.name);
    let Some(s) = engine.image(&tag).await? else {
        return Err(EngineError::Api {
            what: what(),
            detail: format!(
                "no {tag} here: the app builds on the stack image that passed its smoke test. Run `rdna1-images build {}` (or `pull {}`) first",
                l.app.stack, l.app.stack
            ),
        });
    };
    let prefix = format!("{tag}-");
    let pinned = s.tags.iter().find(|t| {
        t.strip_prefix(&prefix)
            .is_some_and(|d| d.len() == 12 && d.bytes().all(|b| b.is_ascii_hexdigit()))
    });
    match pinned {
        Some(p) => Ok((s.id, p.clone())),
        None => Err(EngineError::Api {
            what: what(),
            detail: format!(
                "{tag} (image {}) has no {prefix}<digest12> tag, so it is not an image this tool tested: run `rdna1-images build {}` first",
                short_id(&s.id),
                l.app.stack
            ),
        }),
    }
}

/// Builds, tests and tags one app.
pub async fn build_app(
    engine: &Engine,
    l: &LoadedApp,
    opts: &BuildOptions,
    progress: &mut dyn Progress,
) -> Result<BuildOutcome, EngineError> {
    let mut sweep = None;
    let result = build_guarded(engine, l, opts, progress, &mut sweep).await;
    if let (Ok(_), Some(s)) = (&result, sweep) {
        s.finished();
    }
    crate::engine::guard::drain().await;
    result
}

async fn build_guarded(
    engine: &Engine,
    l: &LoadedApp,
    opts: &BuildOptions,
    progress: &mut dyn Progress,
    sweep: &mut Option<SweepGuard>,
) -> Result<BuildOutcome, EngineError> {
    let (stack_id, stack_ref) = stack_image(engine, l).await?;
    let prepared = prepare(l, &stack_id, &stack_ref)?;
    let r = as_recipe(l);
    *sweep = Some(SweepGuard::new(engine, prepared.digest.hex()));
    let (_, pinned) = tags(&r.name, &prepared.digest);
    let pinned_ref = format!("{REPOSITORY}:{pinned}");
    let mut outcome = BuildOutcome::new(&r.name, prepared.digest.hex());
    if !opts.force {
        if let Some(existing) = engine.image(&pinned_ref).await? {
            let recorded =
                distribute::recorded_level(engine, &r.name, &prepared.digest, &existing.id).await?;
            if smoke::covers(recorded, opts.level) {
                progress.note(&format!(
                    "{pinned_ref} already exists (on stack image {}): same inputs, nothing to build; --force rebuilds",
                    short_id(&stack_id)
                ));
                outcome.image_id = Some(existing.id);
                outcome.tags = existing
                    .tags
                    .into_iter()
                    .filter(|t| t.starts_with(&format!("{REPOSITORY}:")))
                    .collect();
                return Ok(outcome);
            }
        }
    }
    progress.note(&format!(
        "building app {} on {} (image {}), input digest {}",
        r.name,
        stack_tag(l),
        short_id(&stack_id),
        prepared.digest.short()
    ));
    let started = Instant::now();
    progress.stage_started(Stage::Build, &r.name);
    let built = build_image(engine, &r, &prepared, opts, progress).await?;
    progress.stage(Stage::Build, started.elapsed().as_secs_f64());
    outcome.build_seconds = Some(started.elapsed().as_secs_f64());
    if opts.level == Level::Skip {
        progress.note(&format!(
            "smoke test SKIPPED (--smoke skip): app image {} is NOT tagged",
            short_id(built.id())
        ));
        outcome.status = BuildStatus::Untested;
        outcome.image_id = Some(built.keep());
        return Ok(outcome);
    }
    // The tests run on the engine's image, and only a passed one is normalised (it differs
    // from the normalised image in times and tar dialect only; see pipeline::normalise):
    // a failing app costs no normalise.
    // 1. The stack's suite in the app image.
    progress.note("the stack's smoke test again, inside the app image");
    let mut result = smoke_image(engine, built.id(), &r, opts.level, progress).await?;
    // 2-4. The app's own checks, even after a stack failure (the table shows both).
    let (passed, findings, table) = app_smoke(engine, built.id(), l, opts.level, progress).await?;
    result.passed = result.passed && passed;
    result.findings.extend(findings);
    result.table = format!("{}\n{table}", result.table);
    let passed = result.passed;
    outcome.smoke = Some(result);
    if !passed {
        outcome.status = BuildStatus::Failed;
        outcome.image_id = Some(built.id().to_string());
        // The candidate goes; a previous good app image keeps its tags.
        outcome.candidate_removed = built.release().await?;
        return Ok(outcome);
    }
    progress.stage_started(Stage::Normalise, &r.name);
    let (norm, candidate) = normalise::normalise(engine, &r, built, progress).await?;
    progress.stage(Stage::Normalise, norm.seconds);
    outcome.layers = norm.normalised.diff_ids();
    let image_id = candidate.id().to_string();
    outcome.image_id = Some(image_id.clone());
    let (moving, pinned) = tags(&r.name, &prepared.digest);
    for t in [&pinned, &moving] {
        engine.tag(&image_id, REPOSITORY, t).await?;
        outcome.tags.push(format!("{REPOSITORY}:{t}"));
    }
    let _ = candidate.keep();
    if let Some(s) = &outcome.smoke {
        distribute::record_pass(engine, &r.name, &prepared.digest, &image_id, s).await?;
    }
    outcome.status = BuildStatus::Passed;
    Ok(outcome)
}

/// Runs the app's checks in a fresh container of `image` without network; returns
/// (passed, findings, table).
pub async fn app_smoke(
    engine: &Engine,
    image: &str,
    l: &LoadedApp,
    level: Level,
    progress: &mut dyn Progress,
) -> Result<(bool, Vec<String>, String), EngineError> {
    let r = as_recipe(l);
    let limit = l.app.smoke.container_timeout_s;
    let mut container = ContainerSpec {
        image: image.to_string(),
        labels: vec![
            (labels::MANAGED.into(), "true".into()),
            (labels::ROLE.into(), "smoke".into()),
            (labels::RECIPE.into(), r.name.to_string()),
        ],
        network: Some("none".into()),
        timeout: Some(Duration::from_secs_f64(limit)),
        init: true,
        ..Default::default()
    };
    let mut target = None;
    if level == Level::Gpu {
        let what = || format!("app checks of {} ({})", r.name, short_id(image));
        let root = HostRoot::from_env()
            .map_err(|e| EngineError::failed(format!("{}: cannot read the host", what()), e))?;
        let host = crate::host::probe(&root);
        let plan = run_plan::plan(&r, &host, &RunOptions::new(std::env::temp_dir()))
            .map_err(|e| EngineError::failed(what(), e))?;
        let gpu = crate::pipeline::container_spec(&plan);
        container.devices = gpu.devices;
        container.group_add = gpu.group_add;
        container.security_opt = gpu.security_opt;
        container.env = gpu.env;
        target = plan.gfx_target.clone();
    }
    container.cmd = app_checks::argv(l, level, target.as_deref());
    progress.note(&format!(
        "app checks ({level}) of {}: start and {}, one job through {}, clean stop; no network, hard limit {limit} s",
        short_id(image),
        l.app.serve.health,
        l.app.smoke.job_path
    ));
    progress.stage_started(Stage::Smoke, &format!("app checks in {}", short_id(image)));
    let outcome = engine
        .run_to_completion(&container, &mut |line| progress.smoke_line(line))
        .await?;
    progress.stage(Stage::Smoke, outcome.seconds);
    let report = app_checks::complete(app_checks::parse(&outcome.stdout), level, outcome.timed_out);
    let (passed, findings) = app_checks::judge(&report);
    Ok((passed, findings, app_checks::table(&report)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_core_names_the_same_repository() {
        assert_eq!(crate::render::app::REPOSITORY, super::REPOSITORY);
    }
}
