//! The CI scripts' own checks, each shown failing on the defect it guards: the skip summary,
//! ci/test.sh without its gates, the static gates' thresholds, and ci/nightly-has-tag.sh's
//! answers (from a loopback HTTP server that says what the test wants).

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::text;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bash(script: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new("bash");
    c.arg(script).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("bash runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Skips

#[test]
fn the_skip_summary_counts_skips_and_fails_on_one_not_expected() {
    let dir = tempfile::tempdir().unwrap();
    let skips = dir.path().join("skips");
    let allow = dir.path().join("allow");
    std::fs::write(
        &allow,
        "# comment\nengine::gpu_* no /dev/kfd on hosted runners\n",
    )
    .unwrap();
    let script = root().join("ci/skips.sh");

    // None recorded: 0, and a pass.
    let o = bash(
        &script,
        &[skips.to_str().unwrap(), allow.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        stdout(&o).contains("skipped tests: 0 (0 not expected)"),
        "{}",
        text(&o)
    );

    // An expected one: counted and listed with its reason, still a pass.
    common::test_skip_record(&skips, "engine::gpu_smoke", "no /dev/kfd").unwrap();
    let o = bash(
        &script,
        &[skips.to_str().unwrap(), allow.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        stdout(&o).contains("skipped tests: 1 (0 not expected)"),
        "{}",
        text(&o)
    );
    assert!(
        stdout(&o).contains(
            "SKIPPED engine::gpu_smoke: no /dev/kfd [expected: no /dev/kfd on hosted runners]"
        ),
        "{}",
        text(&o)
    );

    // The planted defect: a test that stopped running. Named, and a failure.
    common::test_skip_record(
        &skips,
        "rdna1_images::smoke::program_tests::x",
        "no python3",
    )
    .unwrap();
    let o = bash(
        &script,
        &[skips.to_str().unwrap(), allow.to_str().unwrap()],
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stdout(&o).contains("skipped tests: 2 (1 not expected)"),
        "{}",
        text(&o)
    );
    assert!(
        stdout(&o)
            .contains("SKIPPED rdna1_images::smoke::program_tests::x: no python3 [NOT EXPECTED"),
        "{}",
        text(&o)
    );
}

/// Not run on its own: the test below runs it in a child process, as libtest runs any test.
#[test]
#[ignore = "run by a_skip_shows_through_libtest_capture_and_is_recorded"]
fn planted_skip() {
    common::skip("planted by the test of the skip mechanism");
}

#[test]
fn a_skip_shows_through_libtest_capture_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("skips");
    // Without --nocapture: an eprintln! of a passing test would not show here.
    let o = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "planted_skip",
            "--ignored",
            "--test-threads",
            "2",
        ])
        .env("RDNA1_TEST_SKIPS", &file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("SKIPPED ci_checks::planted_skip: planted by the test of the skip mechanism"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "ci_checks::planted_skip\tplanted by the test of the skip mechanism\n"
    );
}

#[test]
fn the_allow_list_expects_no_skip_today() {
    // CI has python3, root, Docker and the registries: any skip there is a test that stopped.
    let allow = std::fs::read_to_string(root().join("ci/expected-skips.txt")).unwrap();
    let entries: Vec<&str> = allow
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert!(entries.is_empty(), "{entries:?}");
}

// ---------------------------------------------------------------------------------------------
// ci/test.sh

#[test]
fn ci_test_sh_fails_at_once_when_the_static_gates_script_is_missing() {
    let scratch = tempfile::tempdir().unwrap();
    let ci = scratch.path().join("ci");
    std::fs::create_dir(&ci).unwrap();
    for e in std::fs::read_dir(root().join("ci")).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() && e.file_name() != "static-gates.sh" {
            std::fs::copy(e.path(), ci.join(e.file_name())).unwrap();
        }
    }
    let o = bash(&ci.join("test.sh"), &[], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("ci/static-gates.sh is missing"),
        "{}",
        text(&o)
    );
    // Before anything was installed or started.
    assert!(!stdout(&o).contains("==> [1/"), "{}", text(&o));
}

// ---------------------------------------------------------------------------------------------
// ci/static-gates.sh thresholds

/// A copy of what the gates read, `edit` applied; the gates and their self-test run on it.
fn gates_on_copy(edit: impl FnOnce(&Path)) -> Output {
    let scratch = tempfile::tempdir().unwrap();
    let r = root();
    let o = Command::new("cp")
        .arg("-r")
        .args([".github", "ci", "dockerfiles", ".hadolint.yaml"].map(|p| r.join(p)))
        .arg(scratch.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    edit(scratch.path());
    bash(&scratch.path().join("ci/static-gates.sh"), &[], &[])
}

fn replace_in(path: &Path, from: &str, to: &str) {
    let s = std::fs::read_to_string(path).unwrap();
    assert!(s.contains(from), "{}: no `{from}`", path.display());
    std::fs::write(path, s.replace(from, to)).unwrap();
}

#[test]
fn the_gates_self_test_fails_when_a_threshold_is_raised() {
    let o = gates_on_copy(|_| {});
    assert_eq!(o.status.code(), Some(0), "unchanged copy: {}", text(&o));

    // hadolint at `warning` no longer fails on style findings.
    let o = gates_on_copy(|d| {
        replace_in(
            &d.join(".hadolint.yaml"),
            "failure-threshold: style",
            "failure-threshold: warning",
        )
    });
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stdout(&o).contains("self-test: hadolint did NOT fail on a broken copy with DL3048 style"),
        "{}",
        text(&o)
    );

    // zizmor at `high` no longer fails on medium findings.
    let o = gates_on_copy(|d| {
        replace_in(
            &d.join("ci/static-gates.sh"),
            "--min-severity medium",
            "--min-severity high",
        )
    });
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stdout(&o).contains("self-test: zizmor did NOT fail on a broken copy with artipacked"),
        "{}",
        text(&o)
    );
}

// ---------------------------------------------------------------------------------------------
// ci/nightly-has-tag.sh

/// A loopback HTTP server: `answer(method, path)` gives (status, extra headers, body) for
/// every request until dropped. Returns its `127.0.0.1:port`.
fn serve(
    answer: impl Fn(&str, &str, &str) -> (u16, Vec<String>, String) + Send + 'static,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let host = addr.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut auth = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if line.to_ascii_lowercase().starts_with("authorization:") {
                    auth = line.trim().to_string();
                }
            }
            let mut words = request.split_whitespace();
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let (status, headers, body) = answer(method, path, &auth);
            let mut reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for h in headers {
                reply.push_str(&h.replace("{host}", &host));
                reply.push_str("\r\n");
            }
            reply.push_str("\r\n");
            if method != "HEAD" {
                reply.push_str(&body);
            }
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    addr
}

fn has_tag(host: &str, kind: &str) -> Output {
    let mut env = vec![
        ("RDNA1_REGISTRY_USER", "u"),
        ("RDNA1_REGISTRY_PASSWORD", "p"),
    ];
    if !kind.is_empty() {
        env.push(("RDNA1_REGISTRY_KIND", kind));
    }
    bash(
        &root().join("ci/nightly-has-tag.sh"),
        &[&format!("{host}/owner/rdna1-images:rocm52-0123456789ab")],
        &env,
    )
}

fn status_server(code: u16) -> String {
    serve(move |_, _, _| {
        let headers = if code == 200 {
            vec!["Docker-Content-Digest: sha256:abc".to_string()]
        } else {
            vec![]
        };
        (code, headers, String::new())
    })
}

#[test]
fn has_tag_present_absent_and_outages_on_every_registry() {
    for kind in ["generic", "ghcr"] {
        let o = has_tag(&status_server(200), kind);
        assert_eq!(o.status.code(), Some(0), "{kind}: {}", text(&o));
        assert_eq!(stdout(&o).trim(), "sha256:abc");
        let o = has_tag(&status_server(404), kind);
        assert_eq!(o.status.code(), Some(1), "{kind}: {}", text(&o));
        // An outage is never "absent".
        for code in [500, 502, 503, 429] {
            let o = has_tag(&status_server(code), kind);
            assert_eq!(o.status.code(), Some(3), "{kind} {code}: {}", text(&o));
            assert!(text(&o).contains(&format!("HTTP {code}")), "{}", text(&o));
        }
    }
    // Nothing listening.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = has_tag(&format!("127.0.0.1:{port}"), "ghcr");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("did not answer"), "{}", text(&o));
}

#[test]
fn has_tag_takes_a_refusal_for_absent_on_ghcr_only() {
    // 403 on the manifest: GHCR's answer for a missing package with credentials.
    let o = has_tag(&status_server(403), "ghcr");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("treated as absent"), "{}", text(&o));
    let o = has_tag(&status_server(403), "generic");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("HTTP 403"), "{}", text(&o));

    // 401 with a Bearer challenge whose token endpoint refuses: GHCR for a private or
    // missing package. Absent there; wrong credentials anywhere else.
    let refusing_tokens = || {
        serve(|_, path, _| {
            if path.starts_with("/token") {
                (
                    401,
                    vec![],
                    r#"{"errors":[{"code":"UNAUTHORIZED"}]}"#.into(),
                )
            } else {
                (
                    401,
                    vec![
                        r#"WWW-Authenticate: Bearer realm="http://{host}/token",service="test""#
                            .into(),
                    ],
                    String::new(),
                )
            }
        })
    };
    let o = has_tag(&refusing_tokens(), "ghcr");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = has_tag(&refusing_tokens(), "generic");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("refused a token"), "{}", text(&o));

    // A token, then 401 on the manifest with it: the same split.
    let refusing_manifest = || {
        serve(|_, path, auth| {
            if path.starts_with("/token") {
                (200, vec![], r#"{"token":"t0k"}"#.into())
            } else if auth.contains("Bearer t0k") {
                (401, vec![], String::new())
            } else {
                (
                    401,
                    vec![
                        r#"WWW-Authenticate: Bearer realm="http://{host}/token",service="test""#
                            .into(),
                    ],
                    String::new(),
                )
            }
        })
    };
    let o = has_tag(&refusing_manifest(), "ghcr");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = has_tag(&refusing_manifest(), "generic");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));

    // The token flow that works: present.
    let o = has_tag(
        &serve(|_, path, auth| {
            if path.starts_with("/token") {
                (200, vec![], r#"{"token":"t0k"}"#.into())
            } else if auth.contains("Bearer t0k") {
                (
                    200,
                    vec!["Docker-Content-Digest: sha256:def".into()],
                    String::new(),
                )
            } else {
                (
                    401,
                    vec![
                        r#"WWW-Authenticate: Bearer realm="http://{host}/token",service="test""#
                            .into(),
                    ],
                    String::new(),
                )
            }
        }),
        "",
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(stdout(&o).trim(), "sha256:def");
}

#[test]
fn has_tag_picks_the_rule_from_the_host() {
    // Only ghcr.io is GHCR; a loopback host is generic, so its 403 is an error.
    let o = has_tag(&status_server(403), "");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
}
