//! What an app adds to the stacks' pipeline ([`crate::pipeline::target`]): the stack image
//! it builds on, and its own checks (start and health, one real job, clean stop), which run
//! after the stack's suite inside the app image (the app's packages must not have broken
//! torch). The rule is the stacks': no tag without a pass, and a failed app leaves the
//! previous good app image and its tags where they were.

use std::time::Duration;

use crate::engine::{ContainerSpec, Engine, EngineError};
use crate::host::HostRoot;
use crate::labels;
use crate::pipeline::types::*;
use crate::recipe::app::LoadedApp;
use crate::render::app::checks as app_checks;
use crate::render::app::{as_recipe, stack_tag};
use crate::run_plan::{self, RunOptions};
use crate::smoke::Level;

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
