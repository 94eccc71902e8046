//! The smoke result as a person reads it in a terminal.

use std::fmt::Write as _;

use super::report::secs;
use super::{CaseOutcome, Judgement, SmokeReport, SmokeSpec};

/// How many lines of a failed case's MIOpen log the table shows (the JSON report has ~8 KB).
const LOG_LINES: usize = 12;

/// A header (versions, device, gfx target, override, environment), the compatibility table
/// (one row per case: what the recipe expects, first call, steady median, limit, max error,
/// verdict; `(!)` marks an informational case whose verdict differs from the expectation),
/// then the findings, the notes (which say what differs and what to update), and the end of
/// the MIOpen log of any failed case. Plain ASCII, no colour: it also goes into CI logs.
pub fn table(spec: &SmokeSpec, report: &SmokeReport, judgement: &Judgement) -> String {
    let mut out = String::new();
    let level = report
        .level
        .map(|l| l.to_string())
        .unwrap_or_else(|| "?".into());
    let verdict = if judgement.passed { "PASSED" } else { "FAILED" };
    let _ = writeln!(out, "smoke test (level {level}): {verdict}");

    let none = "-".to_string();
    let text = |v: &Option<String>| v.clone().unwrap_or_else(|| none.clone());
    let mut header: Vec<(&str, String)> = vec![
        ("python", text(&report.python)),
        (
            "torch",
            match (&report.torch, &report.hip, &report.cuda) {
                (None, _, _) => none.clone(),
                (Some(t), Some(hip), _) => format!("{t} (HIP {hip})"),
                (Some(t), None, Some(cuda)) => format!("{t} (CUDA {cuda}: not a ROCm build)"),
                (Some(t), None, None) => format!("{t} (no HIP: not a ROCm build)"),
            },
        ),
    ];
    let device = match (&report.device_name, report.cuda_available) {
        (Some(name), _) => format!(
            "{name} (gfx target {})",
            report.gfx_target.as_deref().unwrap_or("unknown")
        ),
        (None, Some(false)) => "none (torch.cuda.is_available() is False)".into(),
        (None, _) => "unknown".into(),
    };
    header.push(("device", device));
    header.push((
        "override",
        match &report.hsa_override {
            Some(v) => format!("HSA_OVERRIDE_GFX_VERSION={v}"),
            None => "none".into(),
        },
    ));
    let env: Vec<String> = report
        .env
        .iter()
        .filter(|(k, _)| k.as_str() != "HSA_OVERRIDE_GFX_VERSION")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !env.is_empty() {
        header.push(("env", env.join("\n")));
    }
    if let Some(e) = report.elapsed_s {
        header.push(("took", format!("{} s", secs(e))));
    }
    for (key, value) in &header {
        for (i, line) in value.lines().enumerate() {
            let key = if i == 0 { *key } else { "" };
            let _ = writeln!(out, "  {key:<9}{line}");
        }
    }
    out.push('\n');

    let mut rows = vec![[
        "case".to_string(),
        "expects".into(),
        "first call".into(),
        "steady (median)".into(),
        "limit".into(),
        "max error".into(),
        "verdict".into(),
    ]];
    for verdict in &judgement.cases {
        let got = report.cases.iter().find(|r| r.name == verdict.name);
        let conv = spec.cases.iter().find(|c| c.name == verdict.name);
        let first = match got {
            Some(g) if g.status == super::CaseStatus::Hang => {
                format!("> {} s", secs(g.timeout_s))
            }
            Some(g) => g.first_s.map(duration).unwrap_or_else(|| none.clone()),
            None => none.clone(),
        };
        let steady = got
            .and_then(|g| g.steady_s)
            .map(duration)
            .unwrap_or_else(|| none.clone());
        let limit = match conv.and_then(|c| c.limit_s) {
            Some(l) => format!("{} s", secs(l)),
            None if conv.is_some() => "completes".into(),
            None => none.clone(),
        };
        let error = got
            .and_then(|g| g.rel_error)
            .map(|e| {
                if e == 0.0 {
                    "exact".into()
                } else {
                    format!("{e:.1e}")
                }
            })
            .unwrap_or_else(|| none.clone());
        let expects = match (verdict.gates, verdict.expected) {
            (true, _) => "pass (gates)".to_string(),
            (false, e @ ("pass" | "unsupported")) => e.to_string(),
            (false, e) => format!("{e} (known)"),
        };
        let mut outcome = match verdict.outcome {
            CaseOutcome::Missing if report.error.is_some() => "NOT RUN".to_string(),
            o => o.to_string(),
        };
        if verdict.differs.is_some() {
            outcome.push_str(" (!)");
        }
        rows.push([
            verdict.name.clone(),
            expects,
            first,
            steady,
            limit,
            error,
            outcome,
        ]);
    }
    let mut widths = [0usize; 7];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Numbers right-aligned so that their units line up.
    let right = [false, false, true, true, true, true, false];
    for (r, row) in rows.iter().enumerate() {
        let mut line = String::from(" ");
        for (i, cell) in row.iter().enumerate() {
            line.push(' ');
            if right[i] && r > 0 {
                let _ = write!(line, "{cell:>w$}", w = widths[i]);
            } else {
                let _ = write!(line, "{cell:<w$}", w = widths[i]);
            }
            line.push(' ');
        }
        let _ = writeln!(out, "{}", line.trim_end());
        if r == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "  {}", rule.join("  "));
        }
    }

    if !judgement.findings.is_empty() {
        let _ = writeln!(out, "\nfindings:");
        for f in &judgement.findings {
            let _ = writeln!(out, "  - {f}");
        }
    }
    if !judgement.notes.is_empty() {
        let _ = writeln!(out, "\nnotes:");
        for n in &judgement.notes {
            let _ = writeln!(out, "  - {n}");
        }
    }
    for case in &report.cases {
        let Some(log) = case.miopen_log.as_deref().filter(|l| !l.trim().is_empty()) else {
            continue;
        };
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.len().saturating_sub(LOG_LINES);
        let _ = writeln!(
            out,
            "\nMIOpen log of the rerun of `{}` (last {} lines; the JSON report has more):",
            case.name,
            lines.len() - start
        );
        for l in &lines[start..] {
            let _ = writeln!(out, "  | {l}");
        }
    }
    out
}

/// The stacks-by-cases table `rdna1-images compat` prints: one row per case, one column per
/// smoke report (`header`, and its `case=verdict,...` label). Cases in the suite's order (the
/// Conv2d ones first, as found); `.` where a report has no such case.
pub fn compat_matrix(stacks: &[(String, String)]) -> String {
    let parsed: Vec<Vec<(&str, &str)>> = stacks
        .iter()
        .map(|(_, label)| {
            label
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .collect()
        })
        .collect();
    let mut cases: Vec<&str> = Vec::new();
    for p in &parsed {
        for (case, _) in p {
            if super::suite_case(case).is_none() && !cases.contains(case) {
                cases.push(case);
            }
        }
    }
    for c in super::SUITE {
        if parsed.iter().any(|p| p.iter().any(|(n, _)| *n == c.name)) {
            cases.push(c.name);
        }
    }
    let mut rows = vec![std::iter::once("case".to_string())
        .chain(stacks.iter().map(|(h, _)| h.clone()))
        .collect::<Vec<_>>()];
    for case in &cases {
        let mut row = vec![case.to_string()];
        for p in &parsed {
            let v = p.iter().find(|(n, _)| n == case).map(|(_, v)| *v);
            row.push(v.unwrap_or(".").to_string());
        }
        rows.push(row);
    }
    let cols = rows[0].len();
    let widths: Vec<usize> = (0..cols)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (r, row) in rows.iter().enumerate() {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
        if r == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            let _ = writeln!(out, "  {}", rule.join("  "));
        }
    }
    out
}

/// A duration in the unit that keeps it short: `12.40 s`, `3.1 ms`, `85 us`.
fn duration(s: f64) -> String {
    if s >= 100.0 {
        format!("{s:.0} s")
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.0} us", s * 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smoke::test_fixtures::{fixture, spec};
    use crate::smoke::{judge, parse_report, timed_out_report, Level};

    fn render(name: &str, level: Level) -> String {
        let spec = spec();
        let report = parse_report(&fixture(name)).unwrap();
        table(&spec, &report, &judge(&spec, level, &report))
    }

    #[test]
    fn the_passing_gpu_table_reads_well() {
        let t = render("gpu-pass-rx5700xt.out", Level::Gpu);
        insta::assert_snapshot!(t);
    }

    #[test]
    fn the_timeout_table_shows_the_watchdog_findings_and_the_miopen_log() {
        let t = render("gpu-timeout-miopen-log.out", Level::Gpu);
        insta::assert_snapshot!(t);
    }

    #[test]
    fn a_slow_case_is_marked_slow_with_its_limit() {
        let t = render("gpu-slow-large.out", Level::Gpu);
        assert!(t.starts_with("smoke test (level gpu): FAILED\n"), "{t}");
        let row = t
            .lines()
            .find(|l| l.trim_start().starts_with("large "))
            .unwrap();
        assert!(row.contains("12.40 s"), "{row}");
        assert!(row.contains("10 s"), "{row}");
        assert!(row.ends_with("SLOW"), "{row}");
        assert!(t.contains("\nfindings:\n  - case `large`: first call took 12.40 s, limit 10 s\n"));
    }

    #[test]
    fn a_report_without_cases_lists_them_as_not_run() {
        let spec = spec();
        let report = timed_out_report(&spec, Level::Gpu, 900.0);
        let t = table(&spec, &report, &judge(&spec, Level::Gpu, &report));
        insta::assert_snapshot!(t);
    }

    #[test]
    fn the_compat_matrix_puts_cases_down_and_stacks_across() {
        let t = compat_matrix(&[
            (
                "rocm52 gpu".into(),
                "medium=pass,sdpa=n/a,conv2d_fp16=wrong".into(),
            ),
            (
                "therock gpu".into(),
                "medium=pass,conv2d_fp16=pass,int_mm=unsupported".into(),
            ),
        ]);
        assert_eq!(
            t,
            "  case         rocm52 gpu  therock gpu\n  -----------  ----------  -----------\n  medium       pass        pass\n  conv2d_fp16  wrong       pass\n  sdpa         n/a         .\n  int_mm       .           unsupported\n"
        );
    }

    #[test]
    fn durations_pick_a_short_unit() {
        assert_eq!(duration(12.404), "12.40 s");
        assert_eq!(duration(0.0031), "3.1 ms");
        assert_eq!(duration(0.000085), "85 us");
        assert_eq!(duration(250.0), "250 s");
    }
}
