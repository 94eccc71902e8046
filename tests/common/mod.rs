//! Shared helpers for tests that run the built binary, some against the real engine.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const BIN: &str = env!("CARGO_BIN_EXE_rdna1-images");

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

mod engines;
mod folder_server;
mod group;
#[allow(unused_imports)]
pub use engines::{engines_28, engines_for, machine_engine};
#[allow(unused_imports)]
pub use folder_server::FolderServer;
#[allow(unused_imports)]
pub use group::{spawn_group, Run};

/// Recorded skips and fake host trees: the library's, behind its `testing` feature (the
/// self dev-dependency in Cargo.toml turns it on for tests).
#[allow(unused_imports)]
pub use rdna1_images::host::fixture as host_fixture;
#[allow(unused_imports)]
pub use rdna1_images::test_skip::{record as test_skip_record, skip};

/// True when the engine answers. Without one: a failure under RDNA1_REQUIRE_DOCKER=1 (CI),
/// else a recorded skip (see `skip`), never a silent pass.
pub fn require_docker(test: &str) -> bool {
    let ok = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return true;
    }
    if std::env::var("RDNA1_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("{test}: the Docker engine is required (RDNA1_REQUIRE_DOCKER=1) but `docker info` fails");
    }
    skip(&format!(
        "{test}: no Docker engine (set RDNA1_REQUIRE_DOCKER=1 to make this a failure)"
    ));
    false
}

/// The local base image the fixtures build on (made by ci/test-base.sh).
pub fn require_base(test: &str) -> bool {
    if !require_docker(test) {
        return false;
    }
    let ok = docker(&["image", "inspect", "rdna1-test-base:bookworm"])
        .status
        .success();
    if !ok && std::env::var("RDNA1_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("{test}: image rdna1-test-base:bookworm is missing: run ci/test-base.sh");
    }
    if !ok {
        skip(&format!(
            "{test}: rdna1-test-base:bookworm missing (run ci/test-base.sh)"
        ));
    }
    ok
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI runs")
}

pub fn docker_out(args: &[&str]) -> String {
    let o = docker(args);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Checks `doc` against schema/output.schema.json, and that `error` is there exactly when
/// the exit code is not 0 (with that code).
pub fn validate_document(doc: &serde_json::Value, exit_code: Option<i32>) {
    static VALIDATOR: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    let v = VALIDATOR.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/output.schema.json");
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        jsonschema::validator_for(&schema).expect("the schema compiles")
    });
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "the document does not validate:\n{}\n{doc:#}",
        errors.join("\n")
    );
    match exit_code {
        Some(0) => assert!(doc.get("error").is_none(), "exit 0 with an error: {doc:#}"),
        Some(c) => assert_eq!(doc["error"]["exit_code"], c, "{doc:#}"),
        None => {}
    }
}

/// The one JSON document of a `--json` run, validated ([`validate_document`]).
pub fn json_document(o: &Output) -> serde_json::Value {
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", text(o)));
    validate_document(&doc, o.status.code());
    doc
}

/// The result of a `--json` run (the whole document when there is none, e.g. an error).
pub fn json_result(o: &Output) -> serde_json::Value {
    let doc = json_document(o);
    match doc.get("result") {
        Some(r) => r.clone(),
        None => doc,
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A recipes folder of its own, with fixture recipes under unique names so tests running
/// side by side never share a tag; removes the tags it made when dropped, and the untagged
/// images of its recipes.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub names: Vec<String>,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
            names: vec![],
        }
    }

    /// Copies fixture `recipes/<fixture>.yaml` under a unique name; returns the name.
    pub fn recipe(&mut self, fixture: &str) -> String {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}-{n}-{fixture}", std::process::id());
        let text =
            std::fs::read_to_string(fixtures().join(format!("recipes/{fixture}.yaml"))).unwrap();
        self.write(
            &name,
            &text.replace(&format!("name: {fixture}\n"), &format!("name: {name}\n")),
        );
        self.names.push(name.clone());
        name
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(format!("{name}.yaml")), text).unwrap();
    }

    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.yaml"))).unwrap()
    }

    pub fn cmd(&self, args: &[&str]) -> Output {
        self.cmd_env(args, &[])
    }

    pub fn cmd_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.cmd_in(&[], args, env)
    }

    /// The tool run by `wrapper` (which gets the binary and its arguments after its own).
    pub fn cmd_in(&self, wrapper: &[&str], args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = match wrapper.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        // This machine kind's engine has no docker0 bridge; the fixtures need no network.
        c.env("RDNA1_IMAGES_BUILD_NETWORK", "none");
        // Pull-or-build asks the registry first: never the public default from a test.
        let registry =
            std::env::var("RDNA1_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into());
        c.env(
            "RDNA1_IMAGES_REGISTRY",
            format!("{registry}/rdna1-images-sandbox"),
        );
        c.arg("--recipes").arg(self.dir.path()).args(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for name in &self.names {
            let tags = docker_out(&[
                "image",
                "ls",
                "--format",
                "{{.Repository}}:{{.Tag}}",
                "rdna1-images",
            ]);
            for t in tags
                .lines()
                .filter(|t| t.starts_with(&format!("rdna1-images:{name}")))
            {
                let _ = docker(&["rmi", "--no-prune", t]);
            }
            // What the tool keeps untagged on purpose (a `--smoke skip` build) goes too.
            let untagged = docker_out(&[
                "image",
                "ls",
                "-q",
                "--filter",
                "dangling=true",
                "--filter",
                &format!("label=io.github.rdna1-images.recipe={name}"),
            ]);
            for id in untagged.lines() {
                let _ = docker(&["rmi", id]);
            }
            // A `run` of the recipe keeps its MIOpen cache in a named volume (when it ran).
            let _ = docker(&["volume", "rm", &format!("rdna1-images-miopen-{name}")]);
        }
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Containers the tool created for a recipe (by label), running or not.
pub fn containers_of(recipe: &str) -> Vec<String> {
    docker_out(&[
        "ps",
        "-aq",
        "--filter",
        "label=io.github.rdna1-images.managed=true",
        "--filter",
        &format!("label=io.github.rdna1-images.recipe={recipe}"),
    ])
    .lines()
    .map(String::from)
    .collect()
}
