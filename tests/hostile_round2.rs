//! Hostile input, round 2 (issue 22): one test per class. Each test plants or writes what an
//! attacker with a malicious checkout or recipes folder would, and requires a clear refusal
//! (never a panic, a block, a followed link, a raw control character on the terminal, or a
//! value that changes the system).

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn ok_text(name: &str) -> String {
    std::fs::read_to_string(fixtures().join("recipes/fixture-ok.yaml"))
        .unwrap()
        .replace("name: fixture-ok\n", &format!("name: {name}\n"))
}

fn source_text(name: &str) -> String {
    format!(
        "name: {name}\ndescription: d\nstatus: experimental\nrocm: \"6.2\"\nbase:\n  image: a:b\n  unpinned_reason: test\n\
         gpu:\n  target: gfx1010\n  targets:\n    gfx1010: null\npython:\n  version: \"3.11\"\n  bin: python3\n\
         pytorch:\n  source:\n    version: 2.4.1\n    repository: https://example.invalid/pytorch\n    ref: v2.4.1\n\
         \x20   commit: ee1b6804381c57161c477caa380a840a84167676\n    arch: [gfx1010]\n    env:\n      USE_ROCM: \"1\"\n\
         \x20   ccache:\n      dir: /root/.ccache\n      max_size: 20G\n\
         smoke:\n  case_timeout_s: 60\n  container_timeout_s: 300\n  cases:\n    - name: medium\n      in_channels: 16\n\
         \x20     out_channels: 32\n      size: 48\nsource_date_epoch: 1764028800\n"
    )
}

/// Runs the tool with a deadline: a command that blocks (a FIFO, a loop) fails the test
/// instead of hanging it.
fn run_bounded(recipes: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .arg("--recipes")
        .arg(recipes)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let o = child.wait_with_output().unwrap();
            panic!("{args:?} blocked for 30 s:\n{}", text(&o));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mkfifo(p: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
}

/// Class 1: what is planted in the output folder is never followed, read or blocked on,
/// by `render --all --write` or `--check`.
#[test]
fn the_output_folder_is_never_followed() {
    let recipes = tempfile::tempdir().unwrap();
    std::fs::write(recipes.path().join("plant.yaml"), ok_text("plant")).unwrap();
    // A victim folder and file outside the output folder, which nothing may touch.
    let victim = tempfile::tempdir().unwrap();
    let vfile = victim.path().join("precious");
    std::fs::write(&vfile, "keep me").unwrap();
    std::fs::create_dir(victim.path().join("sub")).unwrap();
    std::fs::write(victim.path().join("sub/also"), "keep me too").unwrap();

    // Each plant: (what, how to plant it inside a fresh output folder).
    type Plant = (&'static str, fn(&Path, &Path));
    let plants: Vec<Plant> = vec![
        ("recipe folder -> victim", |out, v| {
            symlink(v, out.join("plant")).unwrap()
        }),
        ("Dockerfile -> victim file", |out, v| {
            symlink(v.join("precious"), out.join("plant.Dockerfile")).unwrap()
        }),
        ("requirements -> victim file", |out, v| {
            std::fs::create_dir(out.join("plant")).unwrap();
            symlink(v.join("precious"), out.join("plant/smoke.py")).unwrap()
        }),
        ("files folder -> victim", |out, v| {
            std::fs::create_dir(out.join("plant")).unwrap();
            symlink(v, out.join("plant/files")).unwrap()
        }),
        ("loop a -> .", |out, _| {
            std::fs::create_dir(out.join("plant")).unwrap();
            symlink(".", out.join("plant/a")).unwrap()
        }),
        ("FIFO as the Dockerfile", |out, _| {
            mkfifo(&out.join("plant.Dockerfile"))
        }),
        ("FIFO in the recipe folder", |out, _| {
            std::fs::create_dir(out.join("plant")).unwrap();
            mkfifo(&out.join("plant/smoke.py"))
        }),
        ("/dev/zero link as the Dockerfile", |out, _| {
            symlink("/dev/zero", out.join("plant.Dockerfile")).unwrap()
        }),
        ("a character device as the Dockerfile", |out, _| {
            // Root can make one (CI runs as root); otherwise the link case above covers it.
            let _ = rustix::fs::mknodat(
                rustix::fs::CWD,
                out.join("plant.Dockerfile"),
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::from_raw_mode(0o600),
                rustix::fs::makedev(1, 5),
            );
        }),
        ("output folder itself -> victim", |out, v| {
            std::fs::remove_dir(out).unwrap();
            symlink(v, out).unwrap()
        }),
    ];
    for mode in ["--write", "--check"] {
        for (what, plant) in &plants {
            let base = tempfile::tempdir().unwrap();
            let out = base.path().join("out");
            std::fs::create_dir(&out).unwrap();
            plant(&out, victim.path());
            let o = run_bounded(
                recipes.path(),
                &["render", "--all", mode, "--out", out.to_str().unwrap()],
            );
            let all = text(&o);
            assert!(
                matches!(o.status.code(), Some(1) | Some(2)),
                "{mode} {what}: {all}"
            );
            assert_eq!(
                std::fs::read_to_string(&vfile).unwrap(),
                "keep me",
                "{mode} {what}: {all}"
            );
            assert_eq!(
                std::fs::read_to_string(victim.path().join("sub/also")).unwrap(),
                "keep me too",
                "{mode} {what}: {all}"
            );
            let names: Vec<String> = std::fs::read_dir(victim.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect();
            assert_eq!(
                names.len(),
                2,
                "{mode} {what}: wrote into the victim {names:?}"
            );
            assert!(
                [
                    "symbolic link",
                    "FIFO",
                    "character device",
                    "not a regular file"
                ]
                .iter()
                .any(|w| all.contains(w)),
                "{mode} {what}: the message says what is wrong: {all}"
            );
        }
    }
    // A clean folder still round-trips, and the write is atomic (no temp file left).
    let base = tempfile::tempdir().unwrap();
    let out = base.path().join("out");
    let o = run_bounded(
        recipes.path(),
        &["render", "--all", "--write", "--out", out.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = run_bounded(
        recipes.path(),
        &["render", "--all", "--check", "--out", out.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["plant", "plant.Dockerfile"]);
}

/// Class 2: no raw control, bidi or zero-width character from a recipe reaches the
/// terminal, in text or `--json` output.
#[test]
fn no_raw_control_character_reaches_the_terminal() {
    let hostile = [
        "x\nok    forged\n",
        "\u{1b}]0;title\u{7}",
        "\u{1b}]8;;http://evil\u{1b}\\link",
        "a\rb\u{8}c",
        "\u{9b}31m",
        "a\u{202e}b\u{2066}c",
        "a\u{200b}b",
        "a\u{2028}b",
        "\u{7f}",
    ];
    for h in hostile {
        let sb = Sandbox::new();
        let y = |name: &str| {
            let key = serde_json::to_string(h).unwrap();
            ok_text(name).replace("env:\n", &format!("env:\n  {key}: x\n"))
        };
        sb.write("esc1", &y("esc1"));
        // The same character in a smoke case name (shown in tables and messages).
        let case = serde_json::to_string(h).unwrap();
        sb.write(
            "esc2",
            &ok_text("esc2").replace("- name: medium", &format!("- name: {case}")),
        );
        sb.write(
            "esc3",
            &ok_text("esc3").replace(
                "description: CPU fixture on the local Debian base image",
                &format!("description: {case}"),
            ),
        );
        for args in [
            vec!["check"],
            vec!["render", "esc1"],
            vec!["render", "esc2"],
            vec!["list"],
        ] {
            let o = sb.cmd(&args);
            let all = [o.stdout.as_slice(), o.stderr.as_slice()].concat();
            let s = String::from_utf8_lossy(&all);
            assert_ne!(o.status.code(), Some(101), "{args:?} {h:?}: {s}");
            for line in s.lines() {
                assert!(
                    !line.starts_with("ok    forged"),
                    "{args:?}: forged line: {s}"
                );
            }
            let bad = s.chars().find(|&c| {
                (c.is_control() && c != '\n')
                    || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200b}'..='\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{feff}')
            });
            assert!(bad.is_none(), "{args:?} {h:?}: raw {bad:?} in: {s:?}");
        }
        let o = sb.cmd(&["check", "--json"]);
        let out = String::from_utf8(o.stdout.clone()).unwrap();
        serde_json::from_str::<serde_json::Value>(&out).expect("valid JSON");
        assert!(
            !out.contains(|c: char| c.is_control() && c != '\n'
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202e}' | '\u{200b}')),
            "{h:?}: raw in JSON: {out:?}"
        );
    }
}

/// Class 3: no input reaches an assert, expect or unwrap: exit 2 with a located message.
#[test]
fn no_input_panics() {
    let sb = Sandbox::new();
    for (i, extra) in [
        "a,\tb",
        "a,\nb",
        "a,\u{a0}b",
        "a,\u{85}b",
        "a,\u{3000}b",
        "a\t,b",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("pip{i}");
        let y = source_text(&name).replace(
            "    ccache:\n",
            &format!(
                "    requirements:\n      - name: {}\n        version: 1.0\n        sha256: [{}]\n    ccache:\n",
                serde_json::to_string(&format!("numpy[{extra}]")).unwrap(),
                "a".repeat(64)
            ),
        );
        sb.write(&name, &y);
        // `check` writes the requirements file (the context); `render` only the Dockerfile.
        let o = sb.cmd(&["check"]);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", text(&o));
        assert!(
            text(&o).contains("field `pytorch.source.requirements[0].name`"),
            "{}",
            text(&o)
        );
    }
    // Long `files` paths whose cut at 100 bytes lands in `..`, in `.`, or mid-character.
    for (i, rel) in [
        // The context path is `files/<entry>`: bytes 0..100 end in `/..`.
        format!("{}/..x{}", "a".repeat(91), "b".repeat(200)),
        format!("{}/.{}", "a".repeat(92), "b".repeat(200)),
        format!("{}/{}", "a".repeat(150), "b".repeat(150)),
    ]
    .iter()
    .enumerate()
    {
        let name = format!("long{i}");
        let dir = sb.dir.path().join(Path::new(rel).parent().unwrap());
        if std::fs::create_dir_all(&dir).is_ok() {
            let _ = std::fs::write(sb.dir.path().join(rel), "x");
        }
        let y = ok_text(&name).replace(
            "source_date_epoch:",
            &format!("files:\n  - {rel}\nsource_date_epoch:"),
        );
        sb.write(&name, &y);
        for args in [vec!["render", &name], vec!["list"], vec!["check"]] {
            let o = sb.cmd(&args);
            assert_ne!(o.status.code(), Some(101), "{rel}: {}", text(&o));
        }
        std::fs::remove_file(sb.dir.path().join(format!("{name}.yaml"))).unwrap();
    }
}

/// Class 4: alias expansion is bounded by the bytes it makes, not by the number of aliases.
#[test]
fn alias_expansion_is_bounded_by_bytes() {
    let sb = Sandbox::new();
    let big = "x".repeat(64 * 1024);
    let mut y = ok_text("wide").replace(
        "description: CPU fixture on the local Debian base image\n",
        &format!("description: &big {big}\n"),
    );
    // 100 tiny anchors keep the alias/anchor ratio low; 900 aliases of the one 64 KiB
    // anchor as shell steps make 59 MB of Dockerfile from 75 KB.
    let tiny: String = (0..100).map(|i| format!("  - &t{i} t\n")).collect();
    y = y.replace(
        "source_date_epoch:",
        &format!(
            "steps:\n{tiny}{}source_date_epoch:",
            "  - *big\n".repeat(900)
        ),
    );
    assert!(y.len() < 80 * 1024);
    sb.write("wide", &y);
    let o = sb.cmd(&["render", "wide"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "rendered {} bytes",
        o.stdout.len()
    );
    let e = text(&o);
    assert!(e.contains("wide.yaml:"), "{e}");
    assert!(e.contains("alias"), "{e}");
}

/// Class 5: values that would change the system are refused, however the path is spelled.
#[test]
fn values_that_change_the_system_are_refused() {
    let sb = Sandbox::new();
    let system = [
        "/",
        "/etc",
        "/usr",
        "/usr/bin",
        "/root",
        "/usr/local/bin//",
        "/bin",
        "/lib",
        "/proc",
        "/sys",
        "/dev",
        "/boot",
        "/var",
        "/var/cache",
        "/opt",
        "/home",
        "/home/user",
        "/usr/local/../../etc",
        "/var/cache/../../etc",
        "//etc",
        "/opt/rocm",
        "/tmp",
    ];
    for (i, p) in system.iter().enumerate() {
        let name = format!("sys{i}");
        sb.write(
            &name,
            &ok_text(&name).replace(
                "MIOPEN_USER_DB_PATH: /var/cache/miopen/db",
                &format!("MIOPEN_USER_DB_PATH: {p:?}"),
            ),
        );
        let o = sb.cmd(&["render", &name]);
        assert_eq!(
            o.status.code(),
            Some(2),
            "MIOPEN_USER_DB_PATH {p}: {}",
            text(&o)
        );
        assert!(
            text(&o).contains("field `env.MIOPEN_USER_DB_PATH`"),
            "{}",
            text(&o)
        );
        let name = format!("cc{i}");
        sb.write(
            &name,
            &source_text(&name).replace("dir: /root/.ccache", &format!("dir: {p:?}")),
        );
        let o = sb.cmd(&["render", &name]);
        assert_eq!(o.status.code(), Some(2), "ccache.dir {p}: {}", text(&o));
        assert!(
            text(&o).contains("field `pytorch.source.ccache.dir`"),
            "{}",
            text(&o)
        );
    }
    // Two caches whose common parent is a system folder get one volume each, never one
    // volume over the parent.
    let y = ok_text("vol")
        .replace(
            "MIOPEN_USER_DB_PATH: /var/cache/miopen/db",
            "MIOPEN_USER_DB_PATH: /var/cache/a",
        )
        .replace(
            "MIOPEN_CUSTOM_CACHE_DIR: /var/cache/miopen/kernels",
            "MIOPEN_CUSTOM_CACHE_DIR: /var/cache/b",
        );
    sb.write("vol", &y);
    let o = sb.cmd_env(
        &["run", "--cpu", "--dry-run", "vol"],
        &[("RDNA1_IMAGES_HOST_ROOT", "/nonexistent")],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        !out.contains(":/var/cache "),
        "a volume over /var/cache: {out}"
    );
    assert!(
        out.contains(":/var/cache/a ") && out.contains(":/var/cache/b "),
        "{out}"
    );
    for (i, p) in [
        "/root/.ccache",
        "/var/cache/miopen",
        "/opt/cache/x",
        "/home/u/.cache/x",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("good{i}");
        sb.write(
            &name,
            &source_text(&name).replace("dir: /root/.ccache", &format!("dir: {p}")),
        );
        let o = sb.cmd(&["render", &name]);
        assert_eq!(o.status.code(), Some(0), "{p}: {}", text(&o));
    }
}

/// The weak validations of round 1: each refused with a located, clear message.
#[test]
fn weak_validation_is_refused_with_a_message() {
    // Names in the recipes folder that are not recipe names: warned by list, errors in check.
    let sb = Sandbox::new();
    sb.write("good", &ok_text("good"));
    for bad in ["ROCM52.yaml", "rocm.52.yaml", "röcm52.yaml", "x.YAML"] {
        std::fs::write(sb.dir.path().join(bad), ok_text("good")).unwrap();
    }
    std::fs::write(sb.dir.path().join(format!("{}.yaml", "a".repeat(65))), "x").unwrap();
    let o = sb.cmd(&["list"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let e = String::from_utf8_lossy(&o.stderr).to_string();
    for bad in ["ROCM52.yaml", "rocm.52.yaml", "x.YAML"] {
        assert!(e.contains(bad) && e.contains("warning"), "list: {bad}: {e}");
    }
    let o = sb.cmd(&["check"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    for bad in ["ROCM52.yaml", "rocm.52.yaml", "x.YAML", "röcm52.yaml"] {
        assert!(text(&o).contains(bad), "check: {bad}: {}", text(&o));
    }

    let sb = Sandbox::new();
    // (name, recipe text, field the error names)
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "zero",
            source_text("zero").replace("max_size: 20G", "max_size: 0G"),
            "pytorch.source.ccache.max_size",
        ),
        (
            "banana",
            source_text("banana").replace("USE_ROCM: \"1\"", "HSA_OVERRIDE_GFX_VERSION: banana"),
            "pytorch.source.env.HSA_OVERRIDE_GFX_VERSION",
        ),
        (
            "yes",
            ok_text("yes").replace("python:\n", "python:\n  externally_managed: \"yes\"\n"),
            "python.externally_managed",
        ),
        (
            "qtrue",
            ok_text("qtrue").replace("python:\n", "python:\n  externally_managed: \"true\"\n"),
            "python.externally_managed",
        ),
        (
            "qepoch",
            ok_text("qepoch").replace(
                "source_date_epoch: 1764028800",
                "source_date_epoch: \"1764028800\"",
            ),
            "source_date_epoch",
        ),
        (
            "binary",
            ok_text("binary").replace(
                "description: CPU fixture on the local Debian base image",
                "description: !!binary aGVsbG8=",
            ),
            "description",
        ),
        (
            "tagged",
            ok_text("tagged").replace("rocm: none", "rocm: !!str none"),
            "rocm",
        ),
        (
            "merge",
            ok_text("merge").replace(
                "python:\n  version: \"3.11\"\n  bin: python3\n",
                "x: &p\n  version: \"3.11\"\n  bin: python3\npython:\n  <<: *p\n",
            ),
            "",
        ),
        (
            "bidi",
            ok_text("bidi").replace(
                "description: CPU fixture on the local Debian base image",
                "description: \"a\\u202eb\"",
            ),
            "description",
        ),
        (
            "isolate",
            ok_text("isolate").replace(
                "MIOPEN_CUSTOM_CACHE_DIR: /var/cache/miopen/kernels",
                "MIOPEN_CUSTOM_CACHE_DIR: /var/cache/miopen/kernels\n  MY: \"a\\u2066b\"",
            ),
            "env.MY",
        ),
        (
            "zw",
            ok_text("zw").replace(
                "description: CPU fixture on the local Debian base image",
                "description: \"\\u200b\\u200c\\u200d\\u2060\"",
            ),
            "description",
        ),
        (
            "ref1",
            ok_text("ref1").replace("image: rdna1-test-base:bookworm", "image: ../x:1"),
            "base.image",
        ),
        (
            "ref2",
            ok_text("ref2").replace(
                "image: rdna1-test-base:bookworm",
                "image: --platform.linux/arm64:1",
            ),
            "base.image",
        ),
        (
            "ref3",
            ok_text("ref3").replace("image: rdna1-test-base:bookworm", "image: -.-:5000/x:1"),
            "base.image",
        ),
        (
            "ldp",
            ok_text("ldp").replace("env:\n", "env:\n  LD_PRELOAD: /x.so\n"),
            "env.LD_PRELOAD",
        ),
        (
            "benv",
            ok_text("benv").replace("env:\n", "env:\n  BASH_ENV: /x\n"),
            "env.BASH_ENV",
        ),
        (
            "path",
            ok_text("path").replace("env:\n", "env:\n  PATH: /x\n"),
            "env.PATH",
        ),
        (
            "pyp",
            ok_text("pyp").replace("env:\n", "env:\n  PYTHONPATH: /x\n"),
            "env.PYTHONPATH",
        ),
        (
            "pipidx",
            source_text("pipidx").replace(
                "USE_ROCM: \"1\"",
                "PIP_INDEX_URL: https://evil.example/simple",
            ),
            "pytorch.source.env.PIP_INDEX_URL",
        ),
        (
            "gitcfg",
            source_text("gitcfg").replace("USE_ROCM: \"1\"", "GIT_CONFIG_COUNT: \"1\""),
            "pytorch.source.env.GIT_CONFIG_COUNT",
        ),
    ];
    for (name, y, field) in &cases {
        sb.write(name, y);
        let o = sb.cmd(&["render", name]);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(2), "{name}: {out}");
        assert!(out.contains(&format!("{name}.yaml:")), "{name}: {out}");
        if !field.is_empty() {
            assert!(out.contains(&format!("field `{field}`")), "{name}: {out}");
        }
        std::fs::remove_file(sb.dir.path().join(format!("{name}.yaml"))).unwrap();
    }

    // Invalid UTF-8 is located.
    let sb = Sandbox::new();
    let mut bytes = ok_text("utf").into_bytes();
    let at = bytes.windows(11).position(|w| w == b"CPU fixture").unwrap();
    bytes[at + 1] = 0xff;
    std::fs::write(sb.dir.path().join("utf.yaml"), &bytes).unwrap();
    let o = sb.cmd(&["render", "utf"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("utf.yaml:4:15"), "{}", text(&o));

    // `files`: a total limit, and hard links refused.
    let sb = Sandbox::new();
    let mut list = String::from("files:\n");
    for i in 0..9 {
        let f = std::fs::File::create(sb.dir.path().join(format!("big{i}"))).unwrap();
        f.set_len(60 << 20).unwrap();
        list.push_str(&format!("  - big{i}\n"));
    }
    sb.write(
        "total",
        &ok_text("total").replace("source_date_epoch:", &format!("{list}source_date_epoch:")),
    );
    let o = sb.cmd(&["render", "total"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("total"), "{}", text(&o));
    let outside = tempfile::tempdir_in(sb.dir.path().parent().unwrap()).unwrap();
    std::fs::write(outside.path().join("secret"), "s").unwrap();
    if std::fs::hard_link(outside.path().join("secret"), sb.dir.path().join("linked")).is_ok() {
        sb.write(
            "hard",
            &ok_text("hard").replace(
                "source_date_epoch:",
                "files:\n  - linked\nsource_date_epoch:",
            ),
        );
        let o = sb.cmd(&["render", "hard"]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(text(&o).contains("hard link"), "{}", text(&o));
    }
}
