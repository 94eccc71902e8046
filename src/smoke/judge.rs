//! Judging a report against the recipe's `smoke:` section: the rule that decides the tag, and
//! the compatibility table (every case's verdict beside what the recipe expects).

use std::fmt;

use serde::Serialize;

use super::report::secs;
use super::{CaseReport, CaseStatus, Expectation, Level, SmokeReport, SmokeSpec};

/// The verdict on one report. `passed` is true exactly when `findings` is empty.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Judgement {
    pub passed: bool,
    /// Why it failed, one sentence each, naming the case and the limit.
    pub findings: Vec<String>,
    /// What a reader should know but does not fail the test (the level, reruns, extra cases,
    /// informational cases whose verdict differs from the recipe's expectation).
    pub notes: Vec<String>,
    /// One per case of the spec: the Conv2d cases, then the suite's in the program's order.
    pub cases: Vec<CaseVerdict>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseVerdict {
    pub name: String,
    pub outcome: CaseOutcome,
    /// Whether this case decides the tag (every Conv2d case, and suite cases marked
    /// `required`).
    pub gates: bool,
    /// What the recipe expects: `pass`, `unsupported` or `wrong`.
    pub expected: &'static str,
    /// An informational case whose verdict differs from `expected`: the sentence saying so.
    pub differs: Option<String>,
    /// This case's part of [`Judgement::findings`].
    pub findings: Vec<String>,
}

/// How one case came out, worst reason first when there are several: the program's verdict
/// (pass, wrong, error, crash, hang, unsupported, n/a), or what the judge adds (a Conv2d case
/// over its first-call limit is slow; a case the report lacks is missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseOutcome {
    Pass,
    /// Correct, but the first call took longer than `limit_s` (Conv2d cases).
    Slow,
    Wrong,
    Error,
    Crash,
    Hang,
    Unsupported,
    #[serde(rename = "n/a")]
    NotApplicable,
    /// The spec has it, the report does not.
    Missing,
    /// Level skip: nothing ran.
    Skipped,
}

impl CaseOutcome {
    /// The word of the program's verdict (`pass`, `wrong`, ..., `n/a`).
    pub fn word(self) -> &'static str {
        match self {
            CaseOutcome::Pass => "pass",
            CaseOutcome::Slow => "slow",
            CaseOutcome::Wrong => "wrong",
            CaseOutcome::Error => "error",
            CaseOutcome::Crash => "crash",
            CaseOutcome::Hang => "hang",
            CaseOutcome::Unsupported => "unsupported",
            CaseOutcome::NotApplicable => "n/a",
            CaseOutcome::Missing => "missing",
            CaseOutcome::Skipped => "skipped",
        }
    }
}

impl From<CaseStatus> for CaseOutcome {
    fn from(s: CaseStatus) -> Self {
        match s {
            CaseStatus::Pass => CaseOutcome::Pass,
            CaseStatus::Wrong => CaseOutcome::Wrong,
            CaseStatus::Error => CaseOutcome::Error,
            CaseStatus::Crash => CaseOutcome::Crash,
            CaseStatus::Hang => CaseOutcome::Hang,
            CaseStatus::Unsupported => CaseOutcome::Unsupported,
            CaseStatus::NotApplicable => CaseOutcome::NotApplicable,
        }
    }
}

/// Failures in capitals, so that they stand out in a table of passes.
impl fmt::Display for CaseOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CaseOutcome::Pass => "pass",
            CaseOutcome::Slow => "SLOW",
            CaseOutcome::Wrong => "WRONG",
            CaseOutcome::Error => "ERROR",
            CaseOutcome::Crash => "CRASH",
            CaseOutcome::Hang => "HANG",
            CaseOutcome::Unsupported => "unsupported",
            CaseOutcome::NotApplicable => "n/a",
            CaseOutcome::Missing => "MISSING",
            CaseOutcome::Skipped => "skipped",
        })
    }
}

/// One row of the compatibility table, as `--json` and the smoke report image carry it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct CompatRow {
    pub case: String,
    /// `pass`, `wrong`, `error`, `crash`, `hang`, `unsupported`, `n/a`, `slow`, `missing`,
    /// `skipped`.
    pub verdict: String,
    /// What the recipe expects: `pass`, `unsupported`, `wrong`.
    pub expected: String,
    /// The case decides the tag.
    pub gates: bool,
    /// Informational and not what the recipe expects.
    pub differs: bool,
    pub first_s: Option<f64>,
    pub steady_s: Option<f64>,
    /// Max relative error against the CPU reference.
    pub max_error: Option<f64>,
    pub tolerance: Option<f64>,
    /// The public source of a known wrong result.
    #[serde(default)]
    pub source: Option<String>,
}

/// The compatibility table's rows: one per case of the spec, in the judgement's order.
pub fn compat_rows(spec: &SmokeSpec, report: &SmokeReport, j: &Judgement) -> Vec<CompatRow> {
    j.cases
        .iter()
        .map(|v| {
            let got = report.cases.iter().find(|r| r.name == v.name);
            let conv = spec.cases.iter().find(|c| c.name == v.name);
            CompatRow {
                case: v.name.clone(),
                verdict: v.outcome.word().into(),
                expected: v.expected.into(),
                gates: v.gates,
                differs: v.differs.is_some(),
                first_s: got.and_then(|g| g.first_s),
                steady_s: got.and_then(|g| g.steady_s),
                max_error: got.and_then(|g| g.rel_error),
                tolerance: match conv {
                    Some(_) => Some(spec.tolerance),
                    None => got.and_then(|g| g.tolerance),
                },
                source: spec
                    .conformance
                    .get(&v.name)
                    .and_then(|e| e.source().map(str::to_string)),
            }
        })
        .collect()
}

/// Decides whether the image passed the smoke test at `level`.
///
/// Fails on: a program error; a report for another level; `expect.torch` / `expect.python`
/// (and `expect.hip` at level gpu) not matching as version prefixes; at level gpu, no GPU; a
/// Conv2d case missing or not `pass`; a relative error above the recipe's tolerance; a first
/// call over `limit_s` (at every level, so a cpu run checks the same numbers); a `required`
/// suite case missing or not `pass`. Informational suite cases never fail it: a verdict other
/// than the expected one becomes a note. Level skip passes with a note and checks nothing.
pub fn judge(spec: &SmokeSpec, level: Level, report: &SmokeReport) -> Judgement {
    let mut findings = Vec::new();
    let mut notes = Vec::new();
    let suite: Vec<(&String, &Expectation)> = super::SUITE
        .iter()
        .filter_map(|c| spec.conformance.get_key_value(c.name))
        .collect();

    if level == Level::Skip {
        notes.push("smoke test skipped on request (level skip): the image was not tested".into());
        let skipped = |name: &str, gates: bool, expected: &'static str| CaseVerdict {
            name: name.to_string(),
            outcome: CaseOutcome::Skipped,
            gates,
            expected,
            differs: None,
            findings: Vec::new(),
        };
        let cases = spec
            .cases
            .iter()
            .map(|c| skipped(&c.name, true, "pass"))
            .chain(
                suite
                    .iter()
                    .map(|(n, e)| skipped(n, e.gates(), e.verdict())),
            )
            .collect();
        return Judgement {
            passed: true,
            findings,
            notes,
            cases,
        };
    }

    if let Some(error) = &report.error {
        findings.push(format!("the smoke program failed: {}", first_line(error)));
    }
    match report.level {
        Some(l) if l == level => {}
        Some(l) => findings.push(format!("the report is for level `{l}`, expected `{level}`")),
        None => findings.push(format!("the report names no level, expected `{level}`")),
    }
    // After a program error, fields it never learned are consequences, not findings.
    let reported = report.error.is_none();
    let expect = &spec.expect;
    findings.extend(version_finding(
        "python",
        &report.python,
        &expect.python,
        reported,
    ));
    findings.extend(version_finding(
        "torch",
        &report.torch,
        &expect.torch,
        reported,
    ));
    match level {
        Level::Gpu => {
            findings.extend(version_finding("HIP", &report.hip, &expect.hip, reported));
            match report.cuda_available {
                Some(true) => {}
                Some(false) => findings.push(
                    "level gpu: torch.cuda.is_available() is False in the container, so no case \
                     ran on a GPU"
                        .into(),
                ),
                None if reported => findings
                    .push("level gpu: the report does not say whether a GPU was available".into()),
                None => {}
            }
        }
        Level::Cpu => notes.push(
            "level cpu: the cases ran on the CPU; the GPU was not tested (an informational \
             case's verdict says nothing about a card here)"
                .into(),
        ),
        Level::Skip => unreachable!("handled above"),
    }

    let mut cases = Vec::new();
    let mut missing = Vec::new();
    for case in &spec.cases {
        let verdict = match report.cases.iter().find(|r| r.name == case.name) {
            Some(got) => judge_case(spec, case, got, &mut notes),
            None => {
                missing.push(format!("`{}`", case.name));
                CaseVerdict {
                    name: case.name.clone(),
                    outcome: CaseOutcome::Missing,
                    gates: true,
                    expected: "pass",
                    differs: None,
                    findings: Vec::new(),
                }
            }
        };
        findings.extend(verdict.findings.iter().cloned());
        cases.push(verdict);
    }
    for (name, exp) in suite {
        let got = report.cases.iter().find(|r| &r.name == name);
        if got.is_none() && exp.gates() {
            missing.push(format!("`{name}`"));
        }
        let verdict = judge_suite_case(name, exp, got, level, &mut notes);
        findings.extend(verdict.findings.iter().cloned());
        if let Some(d) = &verdict.differs {
            notes.push(d.clone());
        }
        cases.push(verdict);
    }
    if !missing.is_empty() {
        findings.push(format!(
            "no result in the report for case(s) {}",
            missing.join(", ")
        ));
    }
    for extra in report.cases.iter().filter(|r| {
        !spec.cases.iter().any(|c| c.name == r.name) && !spec.conformance.contains_key(&r.name)
    }) {
        notes.push(format!(
            "case `{}` is in the report but not in the recipe: ignored",
            extra.name
        ));
    }

    Judgement {
        passed: findings.is_empty(),
        findings,
        notes,
        cases,
    }
}

/// A suite case: `required` ones must pass; the others are compared with the expectation.
fn judge_suite_case(
    name: &str,
    exp: &Expectation,
    got: Option<&CaseReport>,
    level: Level,
    notes: &mut Vec<String>,
) -> CaseVerdict {
    let mut v = CaseVerdict {
        name: name.to_string(),
        outcome: CaseOutcome::Missing,
        gates: exp.gates(),
        expected: exp.verdict(),
        differs: None,
        findings: Vec::new(),
    };
    let Some(got) = got else {
        if !v.gates {
            notes.push(format!("case `{name}`: no result in the report"));
        }
        return v;
    };
    v.outcome = got.status.into();
    let why = got
        .error
        .as_deref()
        .map(first_line)
        .unwrap_or("no error message");
    if got.status == CaseStatus::Pass {
        // A pass must carry its numbers: a report that says pass without them is broken.
        let over = match (got.rel_error, got.tolerance) {
            (Some(e), Some(t)) => e > t,
            _ => true,
        };
        if over || got.first_s.is_none() {
            v.outcome = CaseOutcome::Error;
            v.findings.push(format!(
                "case `{name}`: reported pass without an error within its tolerance and a \
                 first-call time"
            ));
            if !v.gates {
                // Informational: the broken report is a note, not a failure.
                notes.push(v.findings.remove(0));
            }
            return v;
        }
    }
    if let Some(rerun) = &got.rerun {
        notes.push(format!("case `{name}`: rerun with MIOpen logging: {rerun}"));
    }
    if v.gates {
        match got.status {
            CaseStatus::Pass => {}
            CaseStatus::NotApplicable => v.findings.push(format!(
                "case `{name}` is required, but this torch has no such API: {why}"
            )),
            CaseStatus::Wrong => v.findings.push(format!("case `{name}` (required): {why}")),
            CaseStatus::Hang => v
                .findings
                .push(format!("case `{name}` (required) hung: {why}")),
            s => v
                .findings
                .push(format!("case `{name}` (required): {}: {why}", s.as_str())),
        }
        return v;
    }
    // n/a says nothing about the expectation: the API is not there.
    if got.status == CaseStatus::NotApplicable || v.outcome.word() == exp.verdict() {
        return v;
    }
    let here = match level {
        Level::Cpu => " at level cpu",
        _ => "",
    };
    let source = exp
        .source()
        .map(|s| format!(" (known from {s})"))
        .unwrap_or_default();
    v.differs = Some(if got.status == CaseStatus::Pass {
        format!(
            "`{name}` now passes{here}, but the recipe expects `{}`{source}: update the recipe",
            exp.verdict()
        )
    } else {
        format!(
            "`{name}` is `{}`{here}, but the recipe expects `{}`{source}: update the recipe ({why})",
            got.status.as_str(),
            exp.verdict()
        )
    });
    v
}

fn judge_case(
    spec: &SmokeSpec,
    case: &super::Case,
    got: &CaseReport,
    notes: &mut Vec<String>,
) -> CaseVerdict {
    let name = &case.name;
    let mut findings = Vec::new();
    let mut outcome = CaseOutcome::Pass;

    let asked = (
        Some(case.in_channels),
        Some(case.out_channels),
        Some(case.size),
        Some(case.batch),
        Some(case.kernel),
    );
    let ran = (
        got.in_channels,
        got.out_channels,
        got.size,
        got.batch,
        got.kernel,
    );
    if asked != ran {
        findings.push(format!(
            "case `{name}`: ran {} but the recipe asks for {}: the image has a stale spec",
            shape(ran),
            shape(asked)
        ));
        worsen(&mut outcome, CaseOutcome::Error);
    }

    match got.status {
        CaseStatus::Hang => {
            let which = if got.timeout_s == spec.case_timeout_s {
                "case_timeout_s".to_string()
            } else {
                format!(
                    "what remained of container_timeout_s = {} s",
                    secs(spec.container_timeout_s)
                )
            };
            let mut msg = format!(
                "case `{name}` timed out after {} s ({which})",
                secs(got.timeout_s)
            );
            if let Some(phase) = &got.phase {
                msg.push_str(&format!(", in phase `{phase}`"));
            }
            findings.push(msg);
            worsen(&mut outcome, CaseOutcome::Hang);
        }
        CaseStatus::Error
        | CaseStatus::Crash
        | CaseStatus::Unsupported
        | CaseStatus::NotApplicable => {
            let why = got
                .error
                .as_deref()
                .map(first_line)
                .unwrap_or("no error message");
            findings.push(format!("case `{name}` failed: {why}"));
            worsen(&mut outcome, got.status.into());
        }
        CaseStatus::Wrong => {
            findings.push(match got.rel_error {
                Some(e) => mismatch_message(name, e, spec.tolerance),
                None => format!(
                    "case `{name}`: {}",
                    got.error
                        .as_deref()
                        .map(first_line)
                        .unwrap_or("result differs from the CPU reference")
                ),
            });
            worsen(&mut outcome, CaseOutcome::Wrong);
        }
        CaseStatus::Pass => {
            // Judge against the recipe, not the tolerance the program was given.
            match got.rel_error {
                Some(e) if e <= spec.tolerance => {}
                Some(e) => {
                    findings.push(mismatch_message(name, e, spec.tolerance));
                    worsen(&mut outcome, CaseOutcome::Wrong);
                }
                None => {
                    findings.push(format!(
                        "case `{name}`: no error against the CPU reference was reported"
                    ));
                    worsen(&mut outcome, CaseOutcome::Error);
                }
            }
            if got.runs.is_empty() {
                findings.push(format!(
                    "case `{name}`: no timed runs were reported (repeat = {})",
                    spec.repeat
                ));
                worsen(&mut outcome, CaseOutcome::Error);
            }
            match (got.first_s, case.limit_s) {
                (Some(first), Some(limit)) if first > limit => {
                    findings.push(format!(
                        "case `{name}`: first call took {first:.2} s, limit {} s",
                        secs(limit)
                    ));
                    worsen(&mut outcome, CaseOutcome::Slow);
                }
                (Some(_), _) => {}
                (None, _) => {
                    findings.push(format!("case `{name}`: no first-call time was reported"));
                    worsen(&mut outcome, CaseOutcome::Error);
                }
            }
        }
    }

    if let Some(rerun) = &got.rerun {
        let log = match &got.miopen_log {
            Some(l) if !l.trim().is_empty() => " (MIOpen log tail in the report)",
            _ => "",
        };
        notes.push(format!(
            "case `{name}`: rerun with MIOpen logging: {rerun}{log}"
        ));
    }

    CaseVerdict {
        name: name.clone(),
        outcome,
        gates: true,
        expected: "pass",
        differs: None,
        findings,
    }
}

fn worsen(current: &mut CaseOutcome, o: CaseOutcome) {
    if rank(o) > rank(*current) {
        *current = o;
    }
}

fn rank(o: CaseOutcome) -> u8 {
    match o {
        CaseOutcome::Pass | CaseOutcome::Skipped => 0,
        CaseOutcome::Slow => 1,
        CaseOutcome::Wrong => 2,
        CaseOutcome::Unsupported | CaseOutcome::NotApplicable => 3,
        CaseOutcome::Error => 4,
        CaseOutcome::Crash => 5,
        CaseOutcome::Hang => 6,
        CaseOutcome::Missing => 7,
    }
}

fn mismatch_message(name: &str, rel_error: f64, tolerance: f64) -> String {
    format!(
        "case `{name}`: result differs from the CPU reference: relative error {rel_error:.2e}, \
         tolerance {tolerance:e}"
    )
}

/// A Conv2d case's shape as the report gives it: in and out channels, size, batch, kernel.
type Conv2dShape = (
    Option<u32>,
    Option<u32>,
    Option<u32>,
    Option<u32>,
    Option<u32>,
);

fn shape((cin, cout, size, batch, kernel): Conv2dShape) -> String {
    let n = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_else(|| "?".into());
    format!(
        "{}->{} ch, input {}x{}x{}x{}, kernel {}",
        n(cin),
        n(cout),
        n(batch),
        n(cin),
        n(size),
        n(size),
        n(kernel)
    )
}

fn first_line(s: &str) -> &str {
    s.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim_end()
}

/// `actual` starts with `prefix` at a version boundary: `3.10` matches `3.10.12` but not
/// `3.1`, and `1.1` does not match `1.13.1`.
fn version_matches(actual: &str, prefix: &str) -> bool {
    match actual.strip_prefix(prefix) {
        Some(rest) => !rest.starts_with(|c: char| c.is_ascii_digit()),
        None => false,
    }
}

fn version_finding(
    what: &str,
    actual: &Option<String>,
    expected: &Option<String>,
    required: bool,
) -> Option<String> {
    let expected = expected.as_deref()?;
    match actual.as_deref() {
        Some(v) if version_matches(v, expected) => None,
        Some(v) => Some(format!(
            "{what} is `{v}`, the recipe expects a version starting with `{expected}`"
        )),
        None if required => Some(format!(
            "{what} version not reported, the recipe expects a version starting with `{expected}`"
        )),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smoke::test_fixtures::{cpu_spec, fixture, spec};
    use crate::smoke::{parse_report, timed_out_report};

    fn judged(name: &str, level: Level) -> Judgement {
        judge(&spec(), level, &parse_report(&fixture(name)).unwrap())
    }

    fn outcomes(j: &Judgement) -> Vec<(&str, CaseOutcome)> {
        j.cases
            .iter()
            .map(|c| (c.name.as_str(), c.outcome))
            .collect()
    }

    #[test]
    fn the_rx_5700_xt_report_passes() {
        let j = judged("gpu-pass-rx5700xt.out", Level::Gpu);
        assert!(j.passed, "{:?}", j.findings);
        assert!(j.findings.is_empty());
        assert!(j.notes.is_empty(), "{:?}", j.notes);
        assert_eq!(
            outcomes(&j),
            [
                ("medium", CaseOutcome::Pass),
                ("large", CaseOutcome::Pass),
                ("xlarge", CaseOutcome::Pass)
            ]
        );
    }

    #[test]
    fn a_slow_first_call_fails_and_names_the_case_and_limit() {
        let j = judged("gpu-slow-large.out", Level::Gpu);
        assert!(!j.passed);
        assert_eq!(
            j.findings,
            ["case `large`: first call took 12.40 s, limit 10 s"]
        );
        assert_eq!(j.cases[1].outcome, CaseOutcome::Slow);
        assert_eq!(j.cases[0].outcome, CaseOutcome::Pass);
    }

    #[test]
    fn a_mismatch_fails_with_the_error_and_the_tolerance() {
        let j = judged("gpu-mismatch.out", Level::Gpu);
        assert!(!j.passed);
        assert_eq!(
            j.findings,
            ["case `medium`: result differs from the CPU reference: relative error 4.69e-1, tolerance 1e-3"]
        );
        assert_eq!(j.cases[0].outcome, CaseOutcome::Wrong);
        assert_eq!(
            j.notes,
            ["case `medium`: rerun with MIOpen logging: wrong (MIOpen log tail in the report)"]
        );
    }

    #[test]
    fn a_timeout_names_the_watchdog_and_where_it_hung() {
        let j = judged("gpu-timeout-miopen-log.out", Level::Gpu);
        assert!(!j.passed);
        assert_eq!(
            j.findings,
            ["case `xlarge` timed out after 30 s (case_timeout_s), in phase `first call on cuda`"]
        );
        assert_eq!(
            outcomes(&j),
            [
                ("medium", CaseOutcome::Pass),
                ("large", CaseOutcome::Pass),
                ("xlarge", CaseOutcome::Hang)
            ]
        );
        assert_eq!(
            j.notes,
            ["case `xlarge`: rerun with MIOpen logging: hang (MIOpen log tail in the report)"]
        );
    }

    #[test]
    fn the_cpu_report_passes_at_level_cpu_with_a_note() {
        let report = parse_report(&fixture("cpu-pass.out")).unwrap();
        let j = judge(&cpu_spec(), Level::Cpu, &report);
        assert!(j.passed, "{:?}", j.findings);
        assert_eq!(
            j.notes,
            ["level cpu: the cases ran on the CPU; the GPU was not tested (an informational case's verdict says nothing about a card here)"]
        );
    }

    #[test]
    fn a_cpu_report_is_not_a_gpu_pass() {
        let report = parse_report(&fixture("cpu-pass.out")).unwrap();
        let j = judge(&cpu_spec(), Level::Gpu, &report);
        assert!(!j.passed);
        assert_eq!(
            j.findings,
            [
                "the report is for level `cpu`, expected `gpu`",
                "HIP version not reported, the recipe expects a version starting with `5.2`",
                "level gpu: torch.cuda.is_available() is False in the container, so no case ran on a GPU",
            ]
        );
    }

    #[test]
    fn a_wrong_torch_version_fails_but_hip_is_not_checked_at_cpu_level() {
        let j = judged("wrong-torch.out", Level::Cpu);
        assert!(!j.passed);
        assert_eq!(
            j.findings,
            ["torch is `2.0.1+cpu`, the recipe expects a version starting with `1.13.1`"]
        );
    }

    #[test]
    fn no_gpu_at_level_gpu_fails_clearly() {
        let j = judged("gpu-no-gpu.out", Level::Gpu);
        assert!(!j.passed);
        assert_eq!(
            j.findings[0],
            "HIP version not reported, the recipe expects a version starting with `5.2`"
        );
        assert_eq!(j.findings[1], "level gpu: torch.cuda.is_available() is False in the container, so no case ran on a GPU");
        assert_eq!(
            j.findings[2],
            "case `medium` failed: level gpu needs a GPU, but torch.cuda.is_available() is False: this torch (1.13.1) is not a ROCm build (torch.version.hip is None), so it cannot use an AMD GPU. The smoke test never falls back to the CPU"
        );
        assert!(j.cases.iter().all(|c| c.outcome == CaseOutcome::Error));
    }

    #[test]
    fn a_container_timeout_fails_with_the_limit_and_the_missing_cases() {
        let spec = spec();
        let j = judge(
            &spec,
            Level::Gpu,
            &timed_out_report(&spec, Level::Gpu, 900.0),
        );
        assert!(!j.passed);
        assert!(j.findings[0].starts_with(
            "the smoke program failed: the smoke container timed out after 900 s (container_timeout_s) and was killed"
        ));
        assert_eq!(
            j.findings.last().unwrap(),
            "no result in the report for case(s) `medium`, `large`, `xlarge`"
        );
        assert!(j.cases.iter().all(|c| c.outcome == CaseOutcome::Missing));
    }

    #[test]
    fn the_judge_uses_the_recipes_tolerance_not_the_reported_one() {
        let mut spec = cpu_spec();
        spec.tolerance = 1e-7;
        let j = judge(
            &spec,
            Level::Cpu,
            &parse_report(&fixture("cpu-pass.out")).unwrap(),
        );
        assert!(!j.passed);
        assert!(j.findings[0].starts_with("case `medium`: result differs from the CPU reference: relative error 4.74e-7, tolerance 1e-7"), "{:?}", j.findings);
    }

    #[test]
    fn a_stale_case_shape_and_an_extra_case_are_reported() {
        let mut report = parse_report(&fixture("cpu-pass.out")).unwrap();
        report.cases[0].out_channels = Some(64);
        report.cases[2].name = "huge".into();
        let j = judge(&cpu_spec(), Level::Cpu, &report);
        assert_eq!(
            j.findings,
            [
                "case `medium`: ran 16->64 ch, input 1x16x48x48, kernel 3 but the recipe asks for 16->32 ch, input 1x16x48x48, kernel 3: the image has a stale spec",
                "no result in the report for case(s) `xlarge`",
            ]
        );
        assert!(j
            .notes
            .contains(&"case `huge` is in the report but not in the recipe: ignored".to_string()));
    }

    #[test]
    fn skip_passes_with_a_note_and_checks_nothing() {
        let spec = spec();
        let j = judge(
            &spec,
            Level::Skip,
            &timed_out_report(&spec, Level::Skip, 1.0),
        );
        assert!(j.passed);
        assert_eq!(
            j.notes,
            ["smoke test skipped on request (level skip): the image was not tested"]
        );
        assert!(j.cases.iter().all(|c| c.outcome == CaseOutcome::Skipped));
    }

    #[test]
    fn version_prefixes_stop_at_a_version_boundary() {
        assert!(version_matches("1.13.1+rocm5.2", "1.13.1"));
        assert!(version_matches("3.10.12", "3.10"));
        assert!(version_matches("5.2.21151-afdc89f8", "5.2"));
        assert!(version_matches("3.10", "3.10"));
        assert!(!version_matches("3.1.4", "3.10"));
        assert!(!version_matches("1.13.1", "1.1"));
        assert!(!version_matches("3.10.12", "3.1"));
        assert!(!version_matches("2.0.1", "1.13"));
    }
}

#[cfg(test)]
mod suite_tests {
    use super::*;
    use crate::smoke::test_fixtures::fixture;
    use crate::smoke::{parse_report, Expectation, SUITE};

    /// The rocm52 recipe's Conv2d cases with every suite case, as the H100 run had them.
    fn h100_spec(exp: impl Fn(&str) -> Expectation) -> SmokeSpec {
        let mut s = crate::smoke::test_fixtures::spec();
        s.expect = Default::default();
        s.conformance = SUITE
            .iter()
            .map(|c| (c.name.to_string(), exp(c.name)))
            .collect();
        s
    }

    #[test]
    fn the_h100_run_passes_every_case_of_the_suite() {
        // Recorded on an NVIDIA H100 (torch 2.11.0+cu130) with every case required.
        let report = parse_report(&fixture("gpu-h100-suite.out")).unwrap();
        let spec = h100_spec(|_| Expectation::Required);
        let j = judge(&spec, Level::Gpu, &report);
        assert!(j.passed, "{:?}", j.findings);
        assert_eq!(j.cases.len(), 3 + SUITE.len());
        assert!(j.cases.iter().all(|c| c.outcome == CaseOutcome::Pass));
        let rows = compat_rows(&spec, &report, &j);
        let mm = rows.iter().find(|r| r.case == "matmul_fp32").unwrap();
        assert_eq!((mm.verdict.as_str(), mm.gates), ("pass", true));
        assert_eq!(mm.tolerance, Some(1e-4));
    }

    #[test]
    fn an_informational_verdict_that_differs_is_said_either_way_and_does_not_fail() {
        let report = parse_report(&fixture("gpu-h100-suite.out")).unwrap();
        let spec = h100_spec(|name| match name {
            "conv2d_fp16" => Expectation::Fails {
                verdict: "wrong",
                source: "AUTOMATIC1111 #4634".into(),
            },
            "int_mm" => Expectation::Unsupported,
            _ => Expectation::Pass,
        });
        let j = judge(&spec, Level::Gpu, &report);
        assert!(j.passed, "{:?}", j.findings);
        assert_eq!(
            j.notes,
            [
                "`conv2d_fp16` now passes, but the recipe expects `wrong` (known from AUTOMATIC1111 #4634): update the recipe",
                "`int_mm` now passes, but the recipe expects `unsupported`: update the recipe",
            ]
        );
        let t = crate::smoke::table(&spec, &report, &j);
        let row = t.lines().find(|l| l.contains("conv2d_fp16 ")).unwrap();
        assert!(
            row.contains("wrong (known)") && row.ends_with("pass (!)"),
            "{row}"
        );
    }

    #[test]
    fn a_required_case_that_a_fault_made_wrong_fails_the_tag_and_names_it() {
        // The same H100 with the fault injector zeroing fp32 matmul (RDNA1_FAULT=zeros).
        let report = parse_report(&fixture("gpu-h100-fault-zeros.out")).unwrap();
        let mut spec = h100_spec(|_| Expectation::Required);
        spec.cases.clear();
        spec.conformance.remove("memory");
        let j = judge(&spec, Level::Gpu, &report);
        assert!(!j.passed);
        assert_eq!(
            j.findings,
            ["case `matmul_fp32` (required): matmul float32: max abs error / max |ref| = 1.000e+00, tolerance 0.0001"]
        );
        // Informational, the same wrong result is a note that asks for the recipe's update.
        spec.conformance
            .insert("matmul_fp32".into(), Expectation::Pass);
        let j = judge(&spec, Level::Gpu, &report);
        assert!(j.passed, "{:?}", j.findings);
        assert!(
            j.notes.iter().any(|n| n.starts_with(
                "`matmul_fp32` is `wrong`, but the recipe expects `pass`: update the recipe (matmul float32:"
            )),
            "{:?}",
            j.notes
        );
    }

    #[test]
    fn a_crash_is_a_crash_and_n_a_on_a_required_case_fails() {
        let report = parse_report(&fixture("gpu-h100-fault-crash.out")).unwrap();
        let mut spec = h100_spec(|_| Expectation::Pass);
        spec.cases.clear();
        spec.conformance.remove("memory");
        spec.conformance.insert("rnn".into(), Expectation::Required);
        let j = judge(&spec, Level::Gpu, &report);
        let rnn = j.cases.iter().find(|c| c.name == "rnn").unwrap();
        assert_eq!(rnn.outcome, CaseOutcome::Crash);
        assert!(j.findings[0].starts_with(
            "case `rnn` (required): crash: the case process was killed by SIGSEGV without a result (last phase: first call on cuda)"
        ), "{:?}", j.findings);
        let mut report = report;
        let sdpa = report.cases.iter_mut().find(|c| c.name == "sdpa").unwrap();
        sdpa.status = CaseStatus::NotApplicable;
        sdpa.error = Some("torch 1.13.1 has no scaled_dot_product_attention (2.0+)".into());
        spec.conformance
            .insert("sdpa".into(), Expectation::Required);
        let j = judge(&spec, Level::Gpu, &report);
        assert!(j.findings.contains(&"case `sdpa` is required, but this torch has no such API: torch 1.13.1 has no scaled_dot_product_attention (2.0+)".to_string()), "{:?}", j.findings);
    }
}
