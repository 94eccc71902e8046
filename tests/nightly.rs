//! The nightly's matrix entry (ci/nightly-entry.sh), run end to end by
//! ci/nightly-dryrun-test.sh against the loopback registry with the binary cargo just built:
//! push when the input-digest tag is absent, skip when present, never push a failed build.

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn nightly_entry_dry_run_against_the_loopback_registry() {
    let test = "nightly_entry_dry_run_against_the_loopback_registry";
    if !common::require_base(test) {
        return;
    }
    if std::env::var_os("RDNA1_TEST_REGISTRY").is_none() {
        if std::env::var("RDNA1_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("{test}: RDNA1_TEST_REGISTRY is not set: run ci/registry.sh start and eval \"$(ci/registry.sh env)\"");
        }
        common::skip("no loopback registry (eval \"$(ci/registry.sh env)\")");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("ci/nightly-dryrun-test.sh"))
        .env("RDNA1_IMAGES_BIN", common::BIN)
        .current_dir(root)
        .output()
        .expect("bash runs");
    let text = common::text(&out);
    eprintln!("{text}");
    assert!(out.status.success(), "{text}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(" passed, 0 failed"),
        "{text}"
    );
}
