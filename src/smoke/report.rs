//! The report the in-container program prints, and reading it back from the container's output.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Level, SmokeSpec};

/// Starts the one stdout line that carries the report (`program.py` prints it).
pub const REPORT_MARKER: &str = "RDNA1_SMOKE_REPORT";
/// The report format this version reads; `program.py` writes the same number in `schema`.
pub const REPORT_SCHEMA: u32 = 2;

/// What the program found in the container. Fields it could not learn are `None` (for example
/// `torch` when torch does not import; then `error` says why).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmokeReport {
    pub schema: u32,
    /// `None` only when the program was given a level it does not know.
    pub level: Option<Level>,
    /// `platform.python_version()`, e.g. `3.10.12`.
    pub python: Option<String>,
    /// `torch.__version__`, e.g. `1.13.1+rocm5.2`.
    pub torch: Option<String>,
    /// `torch.version.hip`; `None` for a build without ROCm.
    pub hip: Option<String>,
    /// `torch.version.cuda`: set on a CUDA build (where the suite is proven on NVIDIA cards).
    #[serde(default)]
    pub cuda: Option<String>,
    pub cuda_available: Option<bool>,
    pub device_name: Option<String>,
    /// `gcnArchName` as the runtime reports it (after any override); `unknown` on PyTorch
    /// releases without it (1.13); `None` without a device.
    pub gfx_target: Option<String>,
    /// `HSA_OVERRIDE_GFX_VERSION` in the container, if set.
    pub hsa_override: Option<String>,
    /// The variables that change how ROCm, MIOpen and PyTorch behave (`HSA_*`, `MIOPEN_*`,
    /// `HIP_*`, `ROCR_*`, `AMD_*`, `PYTORCH_*`, `TORCH_*`, ...).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub cases: Vec<CaseReport>,
    /// Set when the program could not do its job (torch does not import, the probe hung, bad
    /// arguments, a signal, a container-level timeout).
    pub error: Option<String>,
    /// Wall time of the whole program.
    #[serde(default)]
    pub elapsed_s: Option<f64>,
}

/// One case as it ran: a seed Conv2d case (fp32, `in_channels -> out_channels`, input
/// `batch x in_channels x size x size`, kernel `kernel`, padding `kernel / 2`) or a case of
/// the conformance suite (`kind` `suite`; the shape fields are then `None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseReport {
    pub name: String,
    #[serde(default)]
    pub kind: CaseKind,
    /// What it ran, in words.
    #[serde(default)]
    pub what: Option<String>,
    pub in_channels: Option<u32>,
    pub out_channels: Option<u32>,
    pub size: Option<u32>,
    pub batch: Option<u32>,
    pub kernel: Option<u32>,
    pub status: CaseStatus,
    /// The first call on the device, cold caches: MIOpen's search and kernel compile.
    pub first_s: Option<f64>,
    /// Median of `runs`.
    pub steady_s: Option<f64>,
    /// The timed calls after the warm-up.
    #[serde(default)]
    pub runs: Vec<f64>,
    /// Max |device - reference| / max |reference|, worst over the results checked; the
    /// reference is computed in float64 on the CPU. Infinite (reported as `null` with status
    /// `wrong`) for NaN or a mismatch in an exact comparison.
    pub rel_error: Option<f64>,
    /// The tolerance the program compared against: the recipe's for Conv2d cases (the judge
    /// uses the recipe's), the dtype's for suite cases; 0 for exact comparisons.
    pub tolerance: Option<f64>,
    pub error: Option<String>,
    /// What else the case measured (training losses, memory sizes, the compile backend...).
    #[serde(default)]
    pub detail: Option<serde_json::Value>,
    /// The watchdog this case ran under (less than `case_timeout_s` when the container's time
    /// budget was running out).
    pub timeout_s: f64,
    /// The last phase the case process reached, e.g. `first call on cuda`: where a hang was.
    #[serde(default)]
    pub phase: Option<String>,
    /// Tail (about 8 KB) of the stderr of the rerun with `MIOPEN_ENABLE_LOGGING_CMD=1` and
    /// `MIOPEN_LOG_LEVEL=5`, for a MIOpen case that failed at level gpu.
    pub miopen_log: Option<String>,
    /// What became of that rerun: its status (`pass`, `hang`...), or `skipped: <why>`.
    #[serde(default)]
    pub rerun: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseKind {
    /// One of the recipe's `cases` (the seed's Conv2d limits).
    #[default]
    Conv2d,
    /// A case of the conformance suite.
    Suite,
}

/// The program's verdict on a case: exactly one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseStatus {
    /// Completed and matched the reference within the tolerance.
    Pass,
    /// Completed but the result differs from the reference (or holds NaN/Inf).
    Wrong,
    /// Raised an exception, had no GPU, or was not run.
    Error,
    /// The case process was killed by a signal (a segfault in a kernel library, an abort).
    Crash,
    /// The watchdog killed it.
    Hang,
    /// A clean "not available" from the operation (e.g. `_int_mm` without hipBLASLt).
    Unsupported,
    /// This torch has no such API (SDPA and torch.compile on 1.13), or at level cpu the CPU
    /// build has no kernel for the dtype.
    #[serde(rename = "n/a")]
    NotApplicable,
}

impl CaseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Pass => "pass",
            CaseStatus::Wrong => "wrong",
            CaseStatus::Error => "error",
            CaseStatus::Crash => "crash",
            CaseStatus::Hang => "hang",
            CaseStatus::Unsupported => "unsupported",
            CaseStatus::NotApplicable => "n/a",
        }
    }
}

/// Why the container's output did not give a report.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    #[error(
        "the smoke program printed no `{REPORT_MARKER}` line: it crashed, was killed, or the \
         image does not run the smoke program; {tail}"
    )]
    NoReport { tail: String },
    #[error(
        "the smoke report line is not a valid report: {reason}; the line begins `{excerpt}`; {tail}"
    )]
    Malformed {
        reason: String,
        excerpt: String,
        tail: String,
    },
    #[error(
        "the smoke report has schema {found}, this rdna1-images reads schema {REPORT_SCHEMA}: \
         rebuild the image with this version of the tool"
    )]
    Schema { found: u64 },
}

const TAIL_LINES: usize = 8;
const EXCERPT_CHARS: usize = 120;

/// Finds the last `RDNA1_SMOKE_REPORT` line in the container's stdout (stderr mixed in is
/// fine) and reads the report from it.
pub fn parse_report(stdout: &str) -> Result<SmokeReport, ParseError> {
    let line = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with(REPORT_MARKER))
        .map(|l| l[REPORT_MARKER.len()..].trim());
    let Some(json) = line else {
        return Err(ParseError::NoReport { tail: tail(stdout) });
    };
    let malformed = |reason: String| ParseError::Malformed {
        reason,
        excerpt: excerpt(json),
        tail: tail(stdout),
    };
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| malformed(format!("invalid JSON ({e})")))?;
    // The schema first: a future report may not fit these structs at all.
    match value.get("schema").and_then(serde_json::Value::as_u64) {
        Some(n) if n == u64::from(REPORT_SCHEMA) => {}
        Some(found) => return Err(ParseError::Schema { found }),
        None => return Err(malformed("no numeric `schema` field".into())),
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        malformed(format!("field `{path}`: {}", e.inner()))
    })
}

fn tail(output: &str) -> String {
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "the output was empty".into();
    }
    let start = lines.len().saturating_sub(TAIL_LINES);
    let shown: Vec<String> = lines[start..]
        .iter()
        .map(|l| format!("  | {}", excerpt_n(l, 300)))
        .collect();
    format!(
        "last {} line(s) of output:\n{}",
        shown.len(),
        shown.join("\n")
    )
}

fn excerpt(s: &str) -> String {
    excerpt_n(s, EXCERPT_CHARS)
}

fn excerpt_n(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// A report for a run that produced none: every case is missing and `error` says why. Judging
/// it fails with that message first.
pub fn failed_report(level: Level, error: impl Into<String>) -> SmokeReport {
    SmokeReport {
        schema: REPORT_SCHEMA,
        level: Some(level),
        python: None,
        torch: None,
        hip: None,
        cuda: None,
        cuda_available: None,
        device_name: None,
        gfx_target: None,
        hsa_override: None,
        env: BTreeMap::new(),
        cases: Vec::new(),
        error: Some(error.into()),
        elapsed_s: None,
    }
}

/// The report for a smoke container the engine killed at its hard limit after `after_s`
/// seconds, before the program printed anything.
pub fn timed_out_report(spec: &SmokeSpec, level: Level, after_s: f64) -> SmokeReport {
    let which = if after_s == spec.container_timeout_s {
        " (container_timeout_s)".to_string()
    } else {
        String::new()
    };
    let mut report = failed_report(
        level,
        format!(
            "the smoke container timed out after {} s{which} and was killed before it printed a \
             report: a case hung beyond its watchdog, or the program could not start",
            secs(after_s)
        ),
    );
    report.elapsed_s = Some(after_s);
    report
}

/// Seconds as a person writes them: `30`, `7.5`, `0.25`.
pub(crate) fn secs(s: f64) -> String {
    let text = format!("{s:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    text.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smoke::test_fixtures::{fixture, spec};

    #[test]
    fn parses_a_recorded_gpu_report() {
        let r = parse_report(&fixture("gpu-pass-rx5700xt.out")).unwrap();
        assert_eq!(r.schema, 2);
        assert_eq!(r.level, Some(Level::Gpu));
        assert_eq!(r.torch.as_deref(), Some("1.13.1+rocm5.2"));
        assert_eq!(r.hip.as_deref(), Some("5.2.21151-afdc89f8"));
        assert_eq!(r.device_name.as_deref(), Some("AMD Radeon RX 5700 XT"));
        assert_eq!(r.hsa_override.as_deref(), Some("10.3.0"));
        assert_eq!(r.env["MIOPEN_USER_DB_PATH"], "/var/cache/miopen/db");
        assert_eq!(r.cases.len(), 3);
        let large = &r.cases[1];
        assert_eq!(
            (large.name.as_str(), large.in_channels, large.out_channels),
            ("large", Some(32), Some(64))
        );
        assert_eq!(large.status, CaseStatus::Pass);
        assert_eq!(large.runs.len(), 5);
        assert!(large.first_s.unwrap() > large.steady_s.unwrap());
    }

    #[test]
    fn parses_the_report_of_the_test_base_image_with_stderr_mixed_in() {
        // Recorded from rdna1-test-base:bookworm; the docker CLI interleaves stderr here.
        let r = parse_report(&fixture("cpu-pass.out")).unwrap();
        assert_eq!(r.level, Some(Level::Cpu));
        assert_eq!(r.cuda_available, Some(false));
        assert!(r.cases.iter().all(|c| c.status == CaseStatus::Pass));
    }

    #[test]
    fn a_report_with_an_error_and_no_torch_parses() {
        let out = "RDNA1_SMOKE_REPORT {\"schema\":2,\"level\":\"cpu\",\"python\":\"3.11.7\",\"torch\":null,\"hip\":null,\"cuda_available\":null,\"device_name\":null,\"gfx_target\":null,\"hsa_override\":null,\"env\":{},\"cases\":[],\"error\":\"cannot import torch: ModuleNotFoundError: No module named 'torch'\",\"elapsed_s\":0.07}\n";
        let r = parse_report(out).unwrap();
        assert_eq!(r.torch, None);
        assert!(r.error.unwrap().starts_with("cannot import torch"));
    }

    #[test]
    fn no_report_line_says_so_and_shows_the_last_lines() {
        let err = parse_report(&fixture("no-report.out")).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ParseError::NoReport { .. }));
        assert!(
            msg.starts_with("the smoke program printed no `RDNA1_SMOKE_REPORT` line"),
            "{msg}"
        );
        assert!(msg.contains("last 8 line(s) of output:"), "{msg}");
        assert!(msg.contains("| Segmentation fault (core dumped)"), "{msg}");
        // Only the last lines, not the whole log.
        assert!(!msg.contains("line 1 of the log"), "{msg}");
    }

    #[test]
    fn empty_output_says_it_was_empty() {
        let msg = parse_report("").unwrap_err().to_string();
        assert!(msg.ends_with("the output was empty"), "{msg}");
    }

    #[test]
    fn truncated_json_is_malformed_with_the_reason_and_an_excerpt() {
        let err = parse_report(&fixture("malformed.out")).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ParseError::Malformed { .. }), "{msg}");
        assert!(
            msg.starts_with(
                "the smoke report line is not a valid report: invalid JSON (EOF while parsing"
            ),
            "{msg}"
        );
        assert!(
            msg.contains("the line begins `{\"schema\":2,\"level\":\"gpu\""),
            "{msg}"
        );
        assert!(msg.contains("last 2 line(s) of output:"), "{msg}");
    }

    #[test]
    fn a_wrong_field_type_names_the_field() {
        let out =
            fixture("gpu-pass-rx5700xt.out").replace("\"status\":\"pass\"", "\"status\":\"fine\"");
        let msg = parse_report(&out).unwrap_err().to_string();
        assert!(
            msg.contains("field `cases[0].status`: unknown variant `fine`"),
            "{msg}"
        );
    }

    #[test]
    fn another_schema_is_refused_before_its_fields_are_read() {
        let out = "RDNA1_SMOKE_REPORT {\"schema\":1,\"whatever\":true}";
        let err = parse_report(out).unwrap_err();
        assert_eq!(err, ParseError::Schema { found: 1 });
        assert!(err
            .to_string()
            .contains("schema 1, this rdna1-images reads schema 2"));
    }

    #[test]
    fn the_last_report_line_wins() {
        let out = format!(
            "RDNA1_SMOKE_REPORT {{\"schema\":2}}\n{}",
            fixture("gpu-pass-rx5700xt.out")
        );
        assert_eq!(parse_report(&out).unwrap().cases.len(), 3);
    }

    #[test]
    fn a_report_round_trips_through_json() {
        let r = parse_report(&fixture("gpu-timeout-miopen-log.out")).unwrap();
        let line = format!("{REPORT_MARKER} {}", serde_json::to_string(&r).unwrap());
        assert_eq!(parse_report(&line).unwrap(), r);
    }

    #[test]
    fn timed_out_report_names_the_limit() {
        let spec = spec();
        let r = timed_out_report(&spec, Level::Gpu, 900.0);
        assert_eq!(
            r.error.as_deref(),
            Some("the smoke container timed out after 900 s (container_timeout_s) and was killed before it printed a report: a case hung beyond its watchdog, or the program could not start")
        );
        assert!(r.cases.is_empty());
        let r = timed_out_report(&spec, Level::Cpu, 62.5);
        assert!(r
            .error
            .unwrap()
            .starts_with("the smoke container timed out after 62.5 s and"));
    }

    #[test]
    fn secs_reads_like_a_person_wrote_it() {
        assert_eq!(secs(30.0), "30");
        assert_eq!(secs(7.5), "7.5");
        assert_eq!(secs(0.25), "0.25");
        assert_eq!(secs(12.404), "12.4");
    }
}
