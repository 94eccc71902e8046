//! `doctor` against the engines it describes: every engine check must say what the code
//! does on that engine today. On the machine's Docker 20.10 and on Docker 28.5 with the
//! classic and the containerd image store (ci/engines.sh), `doctor --for build` says ready,
//! reports the store it finds, and a build with a CPU smoke test then passes on the
//! containerd store (the store doctor used to call a blocker); an engine that does not
//! answer makes doctor and every engine command exit 3 alike.

mod common;

use std::process::Command;

use common::*;

/// The machine's engine and the 28.5 engines of ci/engines.sh, with what `docker` says their
/// store is (`containerd` or `classic`).
fn engines(test: &str) -> Vec<(String, String)> {
    engines_for(test, "machine", |h| {
        docker_at(h, &["image", "inspect", "rdna1-test-base:bookworm"]).0
    })
}

fn docker_at(host: &str, args: &[&str]) -> (bool, String) {
    let o = Command::new("docker")
        .env("DOCKER_HOST", host)
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).trim().to_string(),
    )
}

fn doctor_at(host: &str) -> (Option<i32>, serde_json::Value, String) {
    let o = Command::new(BIN)
        .env("DOCKER_HOST", host)
        .env_remove("DOCKER_CONTEXT")
        .args(["doctor", "--for", "build", "--json"])
        .output()
        .unwrap();
    (o.status.code(), json_result(&o), text(&o))
}

#[test]
fn doctor_for_build_says_what_a_build_on_each_engine_does() {
    const T: &str = "doctor_engines";
    if !require_base(T) {
        return;
    }
    let engines = engines(T);
    for (label, host) in &engines {
        let (code, d, out) = doctor_at(host);
        assert_eq!(code, Some(0), "{label}: {out}");
        assert_eq!(d["ready"]["build"], true, "{label}: {out}");
        let e = &d["engine"];
        assert_eq!(e["reachable"], true, "{label}: {out}");
        assert_eq!(e["buildkit"], true, "{label}: {out}");
        let (_, version) = docker_at(host, &["version", "--format", "{{.Server.Version}}"]);
        assert_eq!(e["version"], version.as_str(), "{label}: {out}");
        // The store doctor reports is the one the engine has.
        let (_, status) = docker_at(host, &["info", "--format", "{{json .DriverStatus}}"]);
        let want = if status.contains("io.containerd.snapshotter.v1") {
            "containerd"
        } else {
            "classic"
        };
        assert_eq!(e["store"]["kind"], want, "{label}: {out}");
        if label.contains("containerd") {
            assert_eq!(want, "containerd", "{label} is not the containerd store");
        }
        let engine_problems: Vec<&serde_json::Value> = d["problems"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["id"].as_str().is_some_and(|id| id.starts_with("engine-")))
            .collect();
        assert!(engine_problems.is_empty(), "{label}: {engine_problems:?}");
    }

    // What doctor says of the containerd store, the build does: it builds, smoke-tests and
    // tags there (on the other two, every engine test builds).
    if let Some((label, host)) = engines.iter().find(|(l, _)| l.contains("containerd")) {
        let mut sb = Sandbox::new();
        let name = sb.recipe("fixture-ok");
        let o = sb.cmd_env(
            &["build", &name, "--smoke", "cpu", "--json"],
            &[("DOCKER_HOST", host.as_str())],
        );
        // The sandbox removes its tags from the default engine only: these are on `host`.
        let (_, tags) = docker_at(
            host,
            &[
                "image",
                "ls",
                "--format",
                "{{.Repository}}:{{.Tag}}",
                "rdna1-images",
            ],
        );
        for t in tags
            .lines()
            .filter(|t| t.starts_with(&format!("rdna1-images:{name}")))
        {
            docker_at(host, &["rmi", "--no-prune", t]);
        }
        assert_eq!(o.status.code(), Some(0), "{label}: {}", text(&o));
        assert_eq!(json_result(&o)[0]["status"], "passed", "{}", text(&o));
    }

    // An engine that does not answer: doctor says not ready, and a command that needs the
    // engine fails the same way (exit 3), not later and not otherwise.
    let gone = tempfile::tempdir().unwrap();
    let host = format!("unix://{}/docker.sock", gone.path().display());
    let (code, d, out) = doctor_at(&host);
    assert_eq!(code, Some(3), "{out}");
    assert_eq!(d["engine"]["reachable"], false, "{out}");
    assert!(
        d["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == "engine-unreachable"),
        "{out}"
    );
    let o = Command::new(BIN)
        .env("DOCKER_HOST", &host)
        .args(["clean", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
}
