//! The smoke stage: the run plan in the engine's terms, a fresh container of the image, and
//! the judged report.

use std::time::Duration;

use crate::engine::{ContainerSpec, Engine, EngineError, MountSpec};
use crate::host::HostRoot;
use crate::labels;
use crate::pipeline::types::{short_id, Progress, SmokeResult, Stage};
use crate::recipe::Recipe;
use crate::run_plan::{self, RunOptions, RunPlan};
use crate::smoke::{self, Judgement, Level};

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
        ports: vec![],
        user: None,
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
        let root = HostRoot::from_env()
            .map_err(|e| EngineError::failed(format!("{}: cannot read the host", what()), e))?;
        let host = crate::host::probe(&root);
        let opts = RunOptions::new(std::env::temp_dir());
        let plan = run_plan::plan(r, &host, &opts).map_err(|e| EngineError::failed(what(), e))?;
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
    let cases = smoke::compat_rows(spec, &report, &judgement);
    Ok(SmokeResult {
        level,
        passed: judgement.passed,
        findings: judgement.findings.clone(),
        cases,
        report,
        table,
        container_seconds: outcome.seconds,
    })
}
