//! The CLI contract without an engine: bad input exits 2 and names the place.

mod common;

use common::*;

fn bad(sb: &Sandbox, name: &str, yaml: &str) -> String {
    sb.write(name, yaml);
    let o = sb.cmd(&["render", name]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn ok_text() -> String {
    std::fs::read_to_string(fixtures().join("recipes/fixture-ok.yaml")).unwrap()
}

#[test]
fn yaml_syntax_error_names_file_and_line() {
    let sb = Sandbox::new();
    let y = ok_text()
        .replace("name: fixture-ok\n", "name: syntax\n")
        .replace("  image: rdna1-test-base:bookworm", "  image: [unclosed");
    let err = bad(&sb, "syntax", &y);
    assert!(err.contains("syntax.yaml:"), "{err}");
    let line = y.lines().position(|l| l.contains("[unclosed")).unwrap() + 1;
    assert!(
        err.contains(&format!(":{}:", line)) || err.contains(&format!(":{}:", line + 1)),
        "{err}"
    );
}

#[test]
fn unknown_key_is_an_error_that_says_what_is_allowed() {
    let sb = Sandbox::new();
    let y = ok_text()
        .replace("name: fixture-ok\n", "name: unknown\n")
        .replace("  warmup: 1\n", "  warmup: 1\n  warmpu: 2\n");
    let err = bad(&sb, "unknown", &y);
    let line = y.lines().position(|l| l.contains("warmpu")).unwrap() + 1;
    assert!(err.contains(&format!("unknown.yaml:{line}:")), "{err}");
    assert!(
        err.contains("field `smoke.warmpu`: unknown field `warmpu`"),
        "{err}"
    );
    assert!(err.contains("expected one of"), "{err}");
}

#[test]
fn missing_field_is_named() {
    let sb = Sandbox::new();
    let y = ok_text()
        .replace("name: fixture-ok\n", "name: missing\n")
        .replace("source_date_epoch: 1764028800\n", "");
    let err = bad(&sb, "missing", &y);
    assert!(err.contains("missing.yaml"), "{err}");
    assert!(err.contains("missing field `source_date_epoch`"), "{err}");
}

#[test]
fn wrong_type_names_the_field_path_and_line() {
    let sb = Sandbox::new();
    let y = ok_text()
        .replace("name: fixture-ok\n", "name: wrongtype\n")
        .replace("      in_channels: 32\n", "      in_channels: many\n");
    let err = bad(&sb, "wrongtype", &y);
    let line = y
        .lines()
        .position(|l| l.contains("in_channels: many"))
        .unwrap()
        + 1;
    assert!(err.contains(&format!("wrongtype.yaml:{line}:")), "{err}");
    assert!(err.contains("smoke.cases[1].in_channels"), "{err}");
}

#[test]
fn validation_error_is_located_too() {
    let sb = Sandbox::new();
    let y = ok_text()
        .replace("name: fixture-ok\n", "name: invalid\n")
        .replace("      limit_s: 10\n", "      limit_s: 100\n");
    let err = bad(&sb, "invalid", &y);
    let line = y.lines().position(|l| l.contains("limit_s: 100")).unwrap() + 1;
    assert!(
        err.contains(&format!(
            "invalid.yaml:{line}:7: field `smoke.cases[1].limit_s`"
        )),
        "{err}"
    );
    assert!(err.contains("longer than the watchdog"), "{err}");
}

#[test]
fn unknown_recipe_lists_the_known_ones_and_paths_are_refused() {
    let o = std::process::Command::new(BIN)
        .args(["render", "rocm99"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("unknown recipe `rocm99`") && err.contains("rocm52, rocm62"),
        "{err}"
    );
    let o = std::process::Command::new(BIN)
        .args(["build", "../etc/passwd"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a plain name"));
}

#[test]
fn list_shows_the_three_stacks_with_status() {
    let o = std::process::Command::new(BIN)
        .args(["list"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let row = |n: &str| {
        out.lines()
            .find(|l| l.starts_with(n))
            .unwrap_or_else(|| panic!("{n} missing:\n{out}"))
            .to_string()
    };
    assert!(
        row("rocm52").contains("recommended") && row("rocm52").contains("10.3.0"),
        "{out}"
    );
    assert!(
        row("rocm62").contains("advanced") && row("rocm62").contains("native"),
        "{out}"
    );
    let therock = row("therock");
    assert!(
        therock.contains("recommended")
            && therock.contains(" 2.12.0+rocm10.1.0 ")
            && therock.contains("native"),
        "{out}"
    );
    let o = std::process::Command::new(BIN)
        .args(["list", "--json"])
        .output()
        .unwrap();
    let v = json_result(&o);
    // The three stacks, then the apps (tests/json.rs checks their rows).
    let kinds: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["stack", "stack", "stack", "app"], "{v}");
    let d = v[0]["input_digest"].as_str().unwrap();
    assert!(
        d.starts_with("sha256:") && d.len() == 7 + 64,
        "digests are sha256:<hex>: {d}"
    );
}

#[test]
fn render_check_detects_drift() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let run = |args: &[&str]| std::process::Command::new(BIN).args(args).output().unwrap();
    let o = run(&["render", "--all", "--check", "--out", out]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "empty folder must drift: {}",
        text(&o)
    );
    let o = run(&["render", "--all", "--write", "--out", out]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(dir.path().join("rocm52.Dockerfile").exists());
    assert!(dir.path().join("rocm52/requirements.txt").exists());
    assert!(dir.path().join("rocm62/patches").is_dir());
    let o = run(&["render", "--all", "--check", "--out", out]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    std::fs::write(dir.path().join("rocm62.Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(dir.path().join("rocm52/stale.txt"), "x").unwrap();
    let o = run(&["render", "--all", "--check", "--out", out]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("rocm62.Dockerfile: differs") && t.contains("stale.txt: not produced"),
        "{t}"
    );
}

/// `doctor` on fixture host trees through the binary: gfx target, advice, exit code, JSON.
#[test]
fn doctor_reads_fixture_hosts() {
    use common::host_fixture::FixtureHost;
    let cases = [
        ("rx5700xt", FixtureHost::rx5700xt(), "gfx1010", "rocm52"),
        ("rx5500xt", FixtureHost::rx5500xt(), "gfx1012", "rocm62"),
        ("no-gpu", FixtureHost::no_gpu(), "", ""),
    ];
    // Exit codes per fixture with a reachable engine are unit-tested in src/doctor.rs.
    for (label, fixture, gfx, first) in cases {
        let dir = tempfile::tempdir().unwrap();
        fixture.write_to(dir.path()).unwrap();
        let o = std::process::Command::new(BIN)
            .args(["doctor", "--json"])
            .env("RDNA1_IMAGES_HOST_ROOT", dir.path())
            // The engine is not what this test is about; an unreachable one must not hide the GPU.
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .output()
            .unwrap();
        let v = json_result(&o);
        // An unreachable engine blocks builds and GPU use alike: exit 3 either way.
        assert_eq!(o.status.code(), Some(3), "{label}: {}", text(&o));
        if gfx.is_empty() {
            assert!(v["gpus"].as_array().unwrap().is_empty(), "{label}: {v}");
            continue;
        }
        let g = &v["gpus"][0];
        assert_eq!(g["gfx_target"], gfx, "{label}: {g}");
        let advice = g.to_string();
        assert!(
            advice.contains(first),
            "{label}: advice should name {first}: {advice}"
        );
        assert_eq!(v["engine"]["reachable"], false);
    }
}

#[test]
fn run_network_is_checked_before_anything_starts() {
    let mut sb = Sandbox::new();
    let name = sb.recipe("fixture-ok");
    // Unreachable engine: a value that passed the parser would fail later with exit 3.
    let o = sb.cmd_env(
        &["run", &name, "--cpu", "--network", "bridge0", "--", "true"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains("invalid value 'bridge0' for '--network <NETWORK>'")
            && out.contains("[possible values: default, host, none]"),
        "{out}"
    );
    let o = sb.cmd(&["run", &name, "--cpu", "--network", "none", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("--network none"), "{}", text(&o));
}
