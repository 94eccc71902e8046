//! Skips that show. libtest hides what a passing test prints with `eprintln!`, so a test that
//! returns early looks like a pass. [`skip`] writes past libtest's capture, straight to the
//! process's stderr, and appends one line to the file named by `RDNA1_TEST_SKIPS` when set:
//! `ci/test.sh` counts those lines in its summary and fails on any skip that
//! `ci/expected-skips.txt` does not list (`ci/skips.sh`).
//!
//! Shared by the unit tests (`crate::test_skip`) and the integration tests (through the
//! library's `testing` feature, which tests/ enable), so both report skips the same way.

use std::io::Write as _;
use std::path::Path;

/// The variable naming the file skips are appended to.
pub const SKIPS_FILE_VAR: &str = "RDNA1_TEST_SKIPS";

/// The running test as `<test binary>::<test path>`, the id the allow-list names.
pub fn current_test_id() -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    // Cargo names test binaries `<target>-<16 hex>`.
    let binary = match binary.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            name.to_string()
        }
        _ => binary,
    };
    // libtest runs each test on a thread named after it.
    let test = std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("?")
        .to_string();
    format!("{binary}::{test}")
}

/// The line [`skip`] records: the test id, a tab, the reason on one line.
pub fn skip_line(test_id: &str, why: &str) -> String {
    format!("{test_id}\t{}\n", why.replace(['\n', '\t'], " "))
}

/// Appends a skip to `file` in one write (O_APPEND), so parallel test binaries never
/// interleave their lines.
pub fn record(file: &Path, test_id: &str, why: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?
        .write_all(skip_line(test_id, why).as_bytes())
}

/// Reports this test as skipped, visibly, and records it for `ci/test.sh`'s summary. The
/// caller then returns without asserting anything.
pub fn skip(why: &str) {
    let id = current_test_id();
    // Not eprintln!: libtest would swallow it for a test that then passes.
    let _ = std::io::stderr().write_all(format!("SKIPPED {id}: {why}\n").as_bytes());
    if let Some(file) = std::env::var_os(SKIPS_FILE_VAR) {
        if let Err(e) = record(Path::new(&file), &id, why) {
            panic!("cannot record the skip of {id} in {file:?}: {e}");
        }
    }
}
