//! The app's own smoke checks, Rust side: the spec handed to `app_checks.py`, its report,
//! the judgement (start, job and stop must each pass) and the table. Pure.

use serde::{Deserialize, Serialize};

use super::{command, APP_DIR};
use crate::recipe::app::LoadedApp;
use crate::smoke::Level;

/// The line `app_checks.py` prints its report on.
pub const MARK: &str = "RDNA1-APP-REPORT ";
/// The program inside the app image.
pub const CHECKS_PATH: &str = "/opt/rdna1-images/app/app_checks.py";
/// The checks, in order; each must pass.
pub const CHECKS: &[&str] = &["start", "job", "stop"];

/// The spec `app_checks.py` reads (its only argument, JSON).
pub fn spec(l: &LoadedApp, level: Level, gpu_target: Option<&str>) -> serde_json::Value {
    let a = &l.app;
    let target = if level == Level::Gpu {
        gpu_target
    } else {
        None
    };
    serde_json::json!({
        "level": level.as_str(),
        "port": a.serve.port,
        "health": a.serve.health.as_str(),
        "devices_field": a.serve.devices_field.as_ref().map(|d| d.as_str()),
        "command": command(l, target),
        "workdir": APP_DIR,
        "data": a.serve.data.as_str(),
        "volumes": a.serve.volumes.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
        "output": a.smoke.output.as_str(),
        "job_path": a.smoke.job_path.as_str(),
        "job": a.smoke.job.as_str(),
        "start_timeout_s": a.smoke.start_timeout_s,
        "job_timeout_s": a.smoke.job_timeout_s,
        "stop_timeout_s": a.smoke.stop_timeout_s,
    })
}

/// The container's command.
pub fn argv(l: &LoadedApp, level: Level, gpu_target: Option<&str>) -> Vec<String> {
    vec![
        l.stack.recipe.python.bin.to_string(),
        CHECKS_PATH.to_string(),
        spec(l, level, gpu_target).to_string(),
    ]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppCheck {
    pub name: String,
    /// pass, fail, or (filled in here) hang / missing.
    pub verdict: String,
    pub seconds: f64,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppReport {
    pub level: String,
    pub checks: Vec<AppCheck>,
    #[serde(default)]
    pub devices: Option<serde_json::Value>,
}

/// The report from the container's stdout; None when there is none (crashed, killed).
pub fn parse(stdout: &str) -> Option<AppReport> {
    stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(MARK))
        .and_then(|j| serde_json::from_str(j).ok())
}

/// Every check in order, those the report lacks marked `hang` (the container's hard limit
/// killed it) or `missing` (it stopped before them).
pub fn complete(report: Option<AppReport>, level: Level, timed_out: bool) -> AppReport {
    let mut r = report.unwrap_or(AppReport {
        level: level.as_str().into(),
        checks: vec![],
        devices: None,
    });
    let failed_before = r.checks.iter().any(|c| c.verdict != "pass");
    for name in CHECKS {
        if !r.checks.iter().any(|c| c.name == *name) {
            let (verdict, detail) = if failed_before {
                ("not run", "an earlier check failed")
            } else if timed_out {
                ("hang", "the container's hard time limit ended it")
            } else {
                ("missing", "the check program ended without a result")
            };
            r.checks.push(AppCheck {
                name: name.to_string(),
                verdict: verdict.into(),
                seconds: 0.0,
                detail: detail.into(),
            });
        }
    }
    r
}

/// Passed when every check passed; the findings name each one that did not.
pub fn judge(r: &AppReport) -> (bool, Vec<String>) {
    let findings: Vec<String> = r
        .checks
        .iter()
        .filter(|c| c.verdict != "pass")
        .map(|c| format!("app check {}: {} ({})", c.name, c.verdict, c.detail))
        .collect();
    (findings.is_empty(), findings)
}

pub fn table(r: &AppReport) -> String {
    let mut out = format!("{:<8} {:<8} {:>8}  DETAIL\n", "APP", "VERDICT", "SECONDS");
    for c in &r.checks {
        out.push_str(&format!(
            "{:<8} {:<8} {:>8.1}  {}\n",
            c.name, c.verdict, c.seconds, c.detail
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, verdict: &str) -> AppCheck {
        AppCheck {
            name: name.into(),
            verdict: verdict.into(),
            seconds: 1.0,
            detail: "d".into(),
        }
    }

    #[test]
    fn a_killed_run_is_a_hang_and_fails() {
        let r = complete(None, Level::Cpu, true);
        assert_eq!(r.checks.len(), 3);
        assert!(r.checks.iter().all(|c| c.verdict == "hang"));
        assert!(!judge(&r).0);
    }

    #[test]
    fn every_check_must_pass() {
        let mut r = AppReport {
            level: "cpu".into(),
            checks: vec![check("start", "pass"), check("job", "fail")],
            devices: None,
        };
        r = complete(Some(r), Level::Cpu, false);
        assert_eq!(r.checks[2].verdict, "not run");
        let (ok, findings) = judge(&r);
        assert!(!ok);
        assert!(findings[0].contains("app check job: fail"), "{findings:?}");
        let all = AppReport {
            level: "cpu".into(),
            checks: CHECKS.iter().map(|n| check(n, "pass")).collect(),
            devices: None,
        };
        assert!(judge(&complete(Some(all), Level::Cpu, false)).0);
    }

    #[test]
    fn the_report_is_the_marked_line() {
        let out = "noise\nRDNA1-APP-REPORT {\"level\":\"cpu\",\"checks\":[]}\n";
        assert_eq!(parse(out).unwrap().level, "cpu");
        assert!(parse("RDNA1-APP-REPORT {broken").is_none());
    }

    #[test]
    fn comfyui_gets_its_gpu_flags_only_at_the_gpu_level() {
        let l = crate::recipe::Catalog::embedded()
            .load_app("comfyui")
            .unwrap();
        let gpu = argv(&l, Level::Gpu, Some("gfx1010"));
        assert!(gpu[2].contains("--fp32-vae"), "{gpu:?}");
        let cpu = argv(&l, Level::Cpu, Some("gfx1010"));
        assert!(
            cpu[2].contains("\"--cpu\"") && !cpu[2].contains("--fp32-vae"),
            "{cpu:?}"
        );
    }
}
