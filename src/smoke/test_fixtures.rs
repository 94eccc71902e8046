//! Recorded program output in `tests/fixtures/smoke/`, shared by the unit tests.

use std::path::PathBuf;

use super::SmokeSpec;

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smoke")
}

pub fn fixture(name: &str) -> String {
    let path = dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The rocm52 recipe's cases with a 30 s watchdog (what the gpu fixtures ran with).
pub fn spec() -> SmokeSpec {
    serde_json::from_str(&fixture("spec.json")).expect("spec.json is a SmokeSpec")
}

/// [`spec`] expecting what the test base image has: Debian bookworm's python3-torch 1.13.1
/// reports itself as `1.13.0a0`, on Python 3.11.
pub fn cpu_spec() -> SmokeSpec {
    let mut s = spec();
    s.expect.torch = Some("1.13".into());
    s.expect.python = Some("3.11".into());
    s
}
