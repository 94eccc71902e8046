//! Every command's `--json` is one document on stdout that validates against
//! schema/output.schema.json, on success and on each error class (bad input, environment,
//! job, interrupted); progress stays on stderr.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const NO_ENGINE: (&str, &str) = ("DOCKER_HOST", "unix:///nonexistent/docker.sock");

/// The document, with the class and exit code `--json` must give.
fn expect_error(o: &std::process::Output, class: &str, code: i32) -> serde_json::Value {
    assert_eq!(o.status.code(), Some(code), "{}", text(o));
    let doc = json_document(o);
    assert_eq!(doc["error"]["class"], class, "{doc:#}");
    assert!(
        !doc["error"]["message"].as_str().unwrap().is_empty(),
        "{doc:#}"
    );
    doc
}

/// A fixture copy with an ENV of its own, so no concurrent build shares its vertices.
fn unique(sb: &mut Sandbox, fixture: &str, test: &str) -> String {
    let name = sb.recipe(fixture);
    let nonce = format!(
        "{test}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let t = sb.read(&name).replace(
        "env:\n",
        &format!("env:\n  RDNA1_TEST_NONCE: \"{nonce}\"\n"),
    );
    assert!(
        t.contains("RDNA1_TEST_NONCE"),
        "fixture {fixture} has no env:"
    );
    sb.write(&name, &t);
    name
}

#[test]
fn list_and_check_give_one_document() {
    let mut sb = Sandbox::new();
    let name = sb.recipe("fixture-ok");
    let o = sb.cmd(&["list", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let doc = json_document(&o);
    assert_eq!(doc["command"], "list");
    assert_eq!(doc["result"][0]["name"], name.as_str());
    let o = sb.cmd(&["check", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(json_result(&o)[0]["ok"], true);

    // A broken recipe: bad input, with check's rows beside the error.
    sb.write("broken", "name: broken\nnot: [valid\n");
    let o = sb.cmd(&["check", "--json"]);
    let doc = expect_error(&o, "bad-input", 2);
    assert!(doc["result"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["ok"] == false));
    let o = sb.cmd(&["list", "--json"]);
    let doc = expect_error(&o, "bad-input", 2);
    assert!(
        doc["error"]["message"]
            .as_str()
            .unwrap()
            .contains("broken.yaml"),
        "{doc:#}"
    );
}

#[test]
fn list_json_has_the_apps_after_the_stacks_without_a_digest() {
    let o = Command::new(BIN).args(["list", "--json"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let rows = json_result(&o);
    let rows = rows.as_array().unwrap();
    let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    let first_app = kinds.iter().position(|k| *k == "app").expect("an app row");
    assert!(kinds[first_app..].iter().all(|k| *k == "app"), "{kinds:?}");
    let therock = rows.iter().find(|r| r["name"] == "therock").unwrap();
    assert_eq!(therock["kind"], "stack");
    assert!(therock["input_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    let comfy = rows.iter().find(|r| r["name"] == "comfyui").unwrap();
    assert_eq!(comfy["stack"], "therock", "{comfy}");
    // Its digest covers the stack image, which `list` (no engine) cannot know.
    assert!(comfy["input_digest"].is_null(), "{comfy}");
    assert_eq!(comfy["pytorch"], therock["pytorch"], "{comfy}");
    assert!(
        comfy["verified"]
            .as_str()
            .is_some_and(|v| v.contains("not run on an RDNA1 card")),
        "{comfy}"
    );
}

#[test]
fn refused_arguments_with_json_give_a_bad_input_document() {
    let o = Command::new(BIN)
        .args(["smoke", "x", "--level", "skip", "--json"])
        .output()
        .unwrap();
    let doc = expect_error(&o, "bad-input", 2);
    assert_eq!(doc["command"], "smoke");
    assert!(
        doc["error"]["message"].as_str().unwrap().contains("skip"),
        "{doc:#}"
    );
    // The human message still goes to stderr.
    assert!(String::from_utf8_lossy(&o.stderr).contains("possible values"));
    // Without --json, clap's usual error and nothing on stdout.
    let o = Command::new(BIN)
        .args(["smoke", "x", "--level", "skip"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
}

#[test]
fn every_engine_command_without_an_engine_is_an_environment_document() {
    let mut sb = Sandbox::new();
    let name = sb.recipe("fixture-ok");
    for args in [
        vec![
            "build",
            name.as_str(),
            "--smoke",
            "cpu",
            "--no-pull",
            "--json",
        ],
        vec!["smoke", name.as_str(), "--level", "cpu", "--json"],
        vec!["doctor", "--for", "build", "--json"],
        vec!["push", name.as_str(), "--json"],
        vec!["pull", name.as_str(), "--json"],
    ] {
        let o = sb.cmd_env(&args, &[NO_ENGINE]);
        let doc = expect_error(&o, "environment", 3);
        assert_eq!(doc["command"], args[0], "{doc:#}");
    }
}

#[test]
fn unknown_recipes_are_bad_input_documents() {
    let sb = Sandbox::new();
    for args in [
        vec!["build", "nosuch", "--json"],
        vec!["smoke", "nosuch", "--print-command", "--json"],
        vec!["push", "nosuch", "--json"],
        vec!["pull", "nosuch", "--json"],
        vec!["promote", "nosuch", "--json"],
        vec!["lock", "nosuch", "--json"],
    ] {
        let o = sb.cmd(&args);
        let doc = expect_error(&o, "bad-input", 2);
        assert_eq!(doc["command"], args[0], "{doc:#}");
    }
    // lock of a recipe that is not there (the embedded recipes lock into the state folder).
    let o = Command::new(BIN)
        .args(["lock", "no-such-recipe", "--json"])
        .output()
        .unwrap();
    expect_error(&o, "bad-input", 2);
}

#[test]
fn lock_reports_objects() {
    let mut sb = Sandbox::new();
    let name = sb.recipe("fixture-ok");
    let o = sb.cmd_env(&["lock", &name, "--json"], &[NO_ENGINE]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = json_result(&o);
    assert!(r["file"]
        .as_str()
        .unwrap()
        .ends_with(&format!("{name}.lock")));
    assert!(r["pinned"].is_array() && r["left"].is_array(), "{r:#}");
    assert!(r["skipped"].is_array(), "{r:#}");
}

#[test]
fn doctor_for_build_on_this_engine_validates() {
    if !require_docker("doctor_json") {
        return;
    }
    let o = Command::new(BIN)
        .args(["doctor", "--for", "build", "--json"])
        .output()
        .unwrap();
    let doc = json_document(&o);
    assert_eq!(doc["result"]["engine"]["reachable"], true, "{doc:#}");
}

#[test]
fn a_failed_smoke_test_is_a_job_document_with_the_result() {
    if !require_base("json_job") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = unique(&mut sb, "fixture-wrong-torch", "json_job");
    let o = sb.cmd(&["build", &name, "--smoke", "cpu", "--no-pull", "--json"]);
    let doc = expect_error(&o, "job", 1);
    let b = &doc["result"][0];
    assert_eq!(b["status"], "failed", "{doc:#}");
    assert!(b["input_digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(b["smoke"]["findings"]
        .as_array()
        .is_some_and(|f| !f.is_empty()));
    // Progress went to stderr.
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("=> ["),
        "{}",
        text(&o)
    );
}

#[test]
fn ctrl_c_during_a_build_gives_an_interrupted_document() {
    if !require_base("json_interrupted") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = unique(&mut sb, "fixture-container-timeout", "json_interrupted");
    let registry = std::env::var("RDNA1_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let mut child = Command::new(BIN)
        .env("RDNA1_IMAGES_BUILD_NETWORK", "none")
        .env(
            "RDNA1_IMAGES_REGISTRY",
            format!("{registry}/rdna1-images-sandbox"),
        )
        .arg("--recipes")
        .arg(sb.dir.path())
        .args(["build", &name, "--smoke", "cpu", "--no-pull", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("smoke test (cpu)") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let started = Instant::now();
    let seen = rx.recv_timeout(Duration::from_secs(400)).is_ok();
    if seen {
        // The smoke container is running: its wait has the Ctrl-C handler.
        std::thread::sleep(Duration::from_secs(3));
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
    } else {
        let _ = child.kill();
    }
    let o = child.wait_with_output().unwrap();
    let err = reader.join().unwrap();
    assert!(seen, "the smoke test never started:\n{err}");
    let o = std::process::Output {
        status: o.status,
        stdout: o.stdout,
        stderr: err.into_bytes(),
    };
    let doc = expect_error(&o, "interrupted", 130);
    assert_eq!(doc["command"], "build");
    assert!(started.elapsed() < Duration::from_secs(400));
}
