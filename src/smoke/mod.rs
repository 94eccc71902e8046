//! The smoke test: what a recipe asks of its image, the report the in-container program
//! prints, and the judging of one against the other.
//!
//! Everything here is pure (no daemon, no clock): the engine runs [`command`] in a container
//! with networking off, hands its stdout to [`parse_report`], and [`judge`] decides whether the
//! image may be tagged. A container killed at its hard limit becomes [`timed_out_report`], which
//! judges as a failure like any other.
//!
//! Why a first-call limit and not just a steady time: on RDNA1 (gfx1010) medium and large
//! convolutions hang or crawl in MIOpen's kernel search, which happens on the first call in a
//! fresh container (DOMAIN.md section 7). The steady time (median after a warm-up) shows
//! stability; a persisted MIOpen cache makes later first calls fast.

use std::fmt;

use serde::{Deserialize, Serialize};

mod judge;
#[cfg(test)]
mod program_tests;
mod report;
mod table;
#[cfg(test)]
mod test_fixtures;

pub use judge::{judge, CaseOutcome, CaseVerdict, Judgement};
pub use report::{
    failed_report, parse_report, timed_out_report, CaseReport, CaseStatus, ParseError, SmokeReport,
    REPORT_MARKER, REPORT_SCHEMA,
};
pub use table::table;

/// The in-container program, copied into every image at [`PROGRAM_PATH`].
pub const PROGRAM: &str = include_str!("program.py");
/// Where the program lives inside images.
pub const PROGRAM_PATH: &str = "/opt/rdna1-images/smoke.py";

/// How much of the smoke test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Conv2d on the GPU (`/dev/kfd` and `/dev/dri` passed), compared with a CPU reference.
    Gpu,
    /// The same program on the CPU: versions, imports, Conv2d (machines without an AMD GPU).
    Cpu,
    /// Nothing is tested; only with an explicit flag, and said in the output.
    Skip,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Gpu => "gpu",
            Level::Cpu => "cpu",
            Level::Skip => "skip",
        }
    }
}

impl Level {
    /// How strong a pass at this level is: gpu > cpu > skip (nothing tested).
    pub fn rank(self) -> u8 {
        match self {
            Level::Skip => 0,
            Level::Cpu => 1,
            Level::Gpu => 2,
        }
    }
}

/// Whether a recorded pass (None: none recorded, or untested) answers a request for `asked`:
/// only a pass at that level or a stronger one (gpu covers cpu, not the other way). The one
/// rule for the skip check, pull-or-build and the channels an image may be pushed to.
pub fn covers(recorded: Option<Level>, asked: Level) -> bool {
    recorded.unwrap_or(Level::Skip).rank() >= asked.rank()
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The smoke container's command (`Cmd`): the program, the level and the spec as JSON.
///
/// At [`Level::Skip`] the program only reports versions and runs no case. The program prints
/// its report whatever its exit code (0 all cases ok, 1 a failure, 2 bad arguments), so read
/// the logs before looking at the exit code.
pub fn command(spec: &SmokeSpec, level: Level, python_bin: &str) -> Vec<String> {
    let spec_json = serde_json::to_string(spec).expect("a SmokeSpec always serializes to JSON");
    vec![
        python_bin.to_string(),
        PROGRAM_PATH.to_string(),
        "--level".to_string(),
        level.to_string(),
        "--spec".to_string(),
        spec_json,
    ]
}

/// The recipe's `smoke:` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmokeSpec {
    /// What the image must report.
    #[serde(default)]
    pub expect: Expect,
    /// Untimed calls before the timed ones (after the first, cold, call).
    #[serde(default = "default_warmup")]
    pub warmup: u32,
    /// Timed calls whose median is the steady time.
    #[serde(default = "default_repeat")]
    pub repeat: u32,
    /// Watchdog per case inside the container, seconds.
    pub case_timeout_s: f64,
    /// Hard limit for the whole container, seconds; it is killed past it.
    pub container_timeout_s: f64,
    /// Max allowed |gpu - cpu| relative to the reference's max magnitude.
    #[serde(default = "default_tolerance")]
    pub tolerance: f64,
    pub cases: Vec<Case>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Prefix the reported `torch.__version__` must start with.
    #[serde(default)]
    pub torch: Option<String>,
    /// Prefix `torch.version.hip` must start with (gpu level only).
    #[serde(default)]
    pub hip: Option<String>,
    /// Prefix of the Python version.
    #[serde(default)]
    pub python: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub in_channels: u32,
    pub out_channels: u32,
    /// Height = width of the input.
    pub size: u32,
    #[serde(default = "default_batch")]
    pub batch: u32,
    #[serde(default = "default_kernel")]
    pub kernel: u32,
    /// The first call (cold MIOpen caches) must finish within this; none = must complete.
    #[serde(default)]
    pub limit_s: Option<f64>,
}

fn default_warmup() -> u32 {
    1
}
fn default_repeat() -> u32 {
    5
}
fn default_tolerance() -> f64 {
    1e-3
}
fn default_batch() -> u32 {
    1
}
fn default_kernel() -> u32 {
    3
}

/// True for a number above zero; false for zero, negatives and NaN (YAML has `.nan`).
/// Finite, above zero, and at most a week: `.inf` or `1e300` would overflow the `Duration`
/// the engine waits with.
fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0 && x <= crate::values::MAX_TIMEOUT_S
}

/// Checks what serde cannot: returns the field path (below `smoke`) and the message.
pub fn validate_spec(s: &SmokeSpec) -> Result<(), (Vec<String>, String)> {
    let bad = |p: &[&str], m: String| Err((p.iter().map(|s| s.to_string()).collect(), m));
    if s.cases.is_empty() {
        return bad(&["cases"], "list at least one Conv2d case".into());
    }
    if !positive(s.case_timeout_s) {
        return bad(
            &["case_timeout_s"],
            "must be a positive, finite number of seconds, at most a week (604800)".into(),
        );
    }
    if !positive(s.container_timeout_s) {
        return bad(
            &["container_timeout_s"],
            "must be a positive, finite number of seconds, at most a week (604800)".into(),
        );
    }
    // The program keeps a reserve of the container's limit to print its report, and shortens
    // watchdogs to fit what is left: a container limit under one watchdog makes every case
    // run short of its `case_timeout_s`.
    if s.container_timeout_s <= s.case_timeout_s {
        return bad(
            &["container_timeout_s"],
            format!(
                "{} s is not longer than `case_timeout_s` ({} s): every case runs inside the \
                 container, so give it at least the watchdog of each case plus a margin",
                s.container_timeout_s, s.case_timeout_s
            ),
        );
    }
    if s.repeat == 0 {
        return bad(
            &["repeat"],
            "must be at least 1 (the steady time is their median)".into(),
        );
    }
    if !positive(s.tolerance) {
        return bad(&["tolerance"], "must be a positive, finite number".into());
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, c) in s.cases.iter().enumerate() {
        let idx = i.to_string();
        if !names.insert(c.name.as_str()) {
            return bad(
                &["cases", &idx, "name"],
                format!("case name `{}` is used twice", c.name),
            );
        }
        for (field, v) in [
            ("in_channels", c.in_channels),
            ("out_channels", c.out_channels),
            ("size", c.size),
            ("batch", c.batch),
            ("kernel", c.kernel),
        ] {
            if v == 0 {
                return bad(&["cases", &idx, field], "must be at least 1".into());
            }
        }
        if let Some(l) = c.limit_s {
            if !positive(l) {
                return bad(
                    &["cases", &idx, "limit_s"],
                    "must be a positive, finite number of seconds, at most a week (604800)".into(),
                );
            }
            if l > s.case_timeout_s {
                return bad(
                    &["cases", &idx, "limit_s"],
                    format!(
                        "{l} s is longer than the watchdog `case_timeout_s` ({} s)",
                        s.case_timeout_s
                    ),
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smoke::test_fixtures::spec;

    #[test]
    fn command_runs_the_program_with_the_level_and_the_spec_as_json() {
        let spec = spec();
        let cmd = command(&spec, Level::Gpu, "python3");
        assert_eq!(
            cmd[..5],
            [
                "python3",
                "/opt/rdna1-images/smoke.py",
                "--level",
                "gpu",
                "--spec"
            ]
        );
        let back: SmokeSpec = serde_json::from_str(&cmd[5]).unwrap();
        assert_eq!(back, spec);
        assert_eq!(command(&spec, Level::Cpu, "/usr/bin/python3.10")[3], "cpu");
    }

    #[test]
    fn validation_names_the_field_and_the_reason() {
        let mut s = spec();
        s.container_timeout_s = 30.0;
        let (path, msg) = validate_spec(&s).unwrap_err();
        assert_eq!(path, ["container_timeout_s"]);
        assert!(
            msg.starts_with("30 s is not longer than `case_timeout_s` (30 s)"),
            "{msg}"
        );
        let mut s = spec();
        s.cases[1].limit_s = Some(45.0);
        let (path, msg) = validate_spec(&s).unwrap_err();
        assert_eq!(path, ["cases", "1", "limit_s"]);
        assert_eq!(
            msg,
            "45 s is longer than the watchdog `case_timeout_s` (30 s)"
        );
        assert_eq!(validate_spec(&spec()), Ok(()));
    }

    #[test]
    fn levels_read_and_print_as_lowercase_words() {
        use clap::ValueEnum;
        assert_eq!(Level::Gpu.to_string(), "gpu");
        assert_eq!(Level::from_str("skip", false), Ok(Level::Skip));
        assert_eq!(serde_json::to_string(&Level::Cpu).unwrap(), "\"cpu\"");
        assert_eq!(
            serde_json::from_str::<Level>("\"gpu\"").unwrap(),
            Level::Gpu
        );
    }

    #[test]
    fn the_program_is_embedded_and_speaks_the_same_schema() {
        assert!(PROGRAM.starts_with("#!/usr/bin/env python3"));
        assert!(PROGRAM.contains(&format!("SCHEMA = {REPORT_SCHEMA}\n")));
        assert!(PROGRAM.contains(&format!("REPORT_MARKER = \"{REPORT_MARKER}\"")));
    }
}

#[cfg(test)]
mod covers_tests {
    use super::{covers, Level};

    #[test]
    fn a_pass_covers_its_level_and_weaker_ones_only() {
        assert!(covers(Some(Level::Gpu), Level::Gpu));
        assert!(covers(Some(Level::Gpu), Level::Cpu));
        assert!(covers(Some(Level::Cpu), Level::Cpu));
        assert!(!covers(Some(Level::Cpu), Level::Gpu));
        assert!(!covers(None, Level::Cpu));
        assert!(!covers(None, Level::Gpu));
        assert!(!covers(Some(Level::Skip), Level::Cpu));
        // Nothing asked: anything answers.
        assert!(covers(None, Level::Skip));
    }
}
