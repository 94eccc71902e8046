//! The smoke test: what a recipe asks of its image, the report the in-container program
//! prints, and the judging of one against the other.

use serde::{Deserialize, Serialize};

/// The in-container program, copied into every image at [`PROGRAM_PATH`].
pub const PROGRAM: &str = include_str!("program.py");
/// Where the program lives inside images.
pub const PROGRAM_PATH: &str = "/opt/rdna1-images/smoke.py";

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

/// Checks what serde cannot: returns the field path (below `smoke`) and the message.
pub fn validate_spec(s: &SmokeSpec) -> Result<(), (Vec<String>, String)> {
    let bad = |p: &[&str], m: String| Err((p.iter().map(|s| s.to_string()).collect(), m));
    if s.cases.is_empty() {
        return bad(&["cases"], "list at least one Conv2d case".into());
    }
    if !(s.case_timeout_s > 0.0) {
        return bad(&["case_timeout_s"], "must be a positive number of seconds".into());
    }
    if !(s.container_timeout_s > 0.0) {
        return bad(&["container_timeout_s"], "must be a positive number of seconds".into());
    }
    if s.repeat == 0 {
        return bad(&["repeat"], "must be at least 1 (the steady time is their median)".into());
    }
    if !(s.tolerance > 0.0) {
        return bad(&["tolerance"], "must be a positive number".into());
    }
    let mut names = std::collections::BTreeSet::new();
    for (i, c) in s.cases.iter().enumerate() {
        let idx = i.to_string();
        if !names.insert(c.name.as_str()) {
            return bad(&["cases", &idx, "name"], format!("case name `{}` is used twice", c.name));
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
            if !(l > 0.0) {
                return bad(&["cases", &idx, "limit_s"], "must be a positive number of seconds".into());
            }
            if l > s.case_timeout_s {
                return bad(
                    &["cases", &idx, "limit_s"],
                    format!("{l} s is longer than the watchdog `case_timeout_s` ({} s)", s.case_timeout_s),
                );
            }
        }
    }
    Ok(())
}
