//! The pipeline against the real Docker engine: build, smoke, tag, on the local base image.

mod common;

use common::*;

fn json(o: &std::process::Output) -> serde_json::Value {
    json_result(o)
}

fn image_id(reference: &str) -> String {
    docker_out(&["image", "inspect", "--format", "{{.Id}}", reference])
}

#[test]
fn passing_fixture_is_tagged_with_labels_then_skipped_then_forced() {
    if !require_base("passing_fixture") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = sb.recipe("fixture-ok");
    let o = sb.cmd(&["build", &name, "--smoke", "cpu", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json(&o);
    let b = &v[0];
    assert_eq!(b["status"], "passed", "{}", text(&o));
    let digest = b["input_digest"].as_str().unwrap();
    let digest = digest.strip_prefix("sha256:").unwrap().to_string();
    let pinned = format!("rdna1-images:{name}-{}", &digest[..12]);
    let moving = format!("rdna1-images:{name}");
    let tags: Vec<&str> = b["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tags, vec![pinned.as_str(), moving.as_str()]);
    assert_eq!(image_id(&pinned), image_id(&moving));
    assert_eq!(b["smoke"]["passed"], true);
    assert_eq!(b["smoke"]["level"], "cpu");
    // Labels: ours and the OCI ones, `created` from SOURCE_DATE_EPOCH, not the clock.
    let labels: serde_json::Value = serde_json::from_str(&docker_out(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        &moving,
    ]))
    .unwrap();
    assert_eq!(labels["io.github.rdna1-images.recipe"], name.as_str());
    assert_eq!(
        labels["io.github.rdna1-images.input-digest"],
        digest.as_str()
    );
    assert_eq!(labels["io.github.rdna1-images.pytorch"], "1.13.0a0");
    assert_eq!(labels["io.github.rdna1-images.gfx-target"], "gfx1010");
    assert_eq!(labels["io.github.rdna1-images.hsa-override"], "10.3.0");
    assert_eq!(
        labels["org.opencontainers.image.created"],
        "2025-11-25T00:00:00Z"
    );
    assert!(
        containers_of(&name).is_empty(),
        "smoke container left behind"
    );

    // Same inputs: nothing is built, the existing tag is reported.
    let o = sb.cmd(&["build", &name, "--smoke", "cpu"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("SKIPPED") && out.contains(&pinned), "{out}");
    assert!(out.contains("already exists"), "{out}");
    assert!(
        !out.contains("smoke test (cpu)"),
        "a skipped build must not run the smoke test:\n{out}"
    );

    // --force builds and tests again.
    let o = sb.cmd(&["build", &name, "--smoke", "cpu", "--force", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(json(&o)[0]["status"], "passed");
    assert!(text(&o).contains("smoke test (cpu)"), "{}", text(&o));
    // The retest replaced the smoke report image; the old one is gone, not dangling.
    let dangling = docker_out(&[
        "images",
        "-q",
        "--filter",
        "dangling=true",
        "--filter",
        &format!("label=io.github.rdna1-images.recipe={name}"),
    ]);
    assert!(
        dangling.is_empty(),
        "dangling images of {name} left: {dangling}"
    );

    // `smoke` on the tagged image, by recipe name.
    let o = sb.cmd(&["smoke", &name, "--level", "cpu"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("PASSED"),
        "{}",
        text(&o)
    );
}

#[test]
fn failing_smoke_test_tags_nothing_and_keeps_the_good_tag() {
    if !require_base("failing_smoke") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = sb.recipe("fixture-ok");
    let o = sb.cmd(&["build", &name, "--smoke", "cpu", "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let good = image_id(&format!("rdna1-images:{name}"));
    assert!(good.starts_with("sha256:"));

    // The recipe now expects another torch: built, fails, not tagged.
    let changed = sb
        .read(&name)
        .replace("torch: \"1.13.0a0\"", "torch: \"9.9\"");
    sb.write(&name, &changed);
    let o = sb.cmd(&["build", &name, "--smoke", "cpu", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let v = json(&o);
    assert_eq!(v[0]["status"], "failed");
    assert!(v[0]["tags"].as_array().unwrap().is_empty());
    let findings = v[0]["smoke"]["findings"].to_string();
    assert!(
        findings.contains("9.9") && findings.contains("1.13.0a0"),
        "{findings}"
    );
    let digest = v[0]["input_digest"].as_str().unwrap();
    let digest = digest.strip_prefix("sha256:").unwrap();
    assert!(
        !docker(&[
            "image",
            "inspect",
            &format!("rdna1-images:{name}-{}", &digest[..12])
        ])
        .status
        .success(),
        "a failed image must not get the digest tag"
    );
    assert_eq!(
        image_id(&format!("rdna1-images:{name}")),
        good,
        "the good tag moved"
    );
    assert!(containers_of(&name).is_empty());
}

#[test]
fn hung_case_is_killed_by_its_watchdog_and_named() {
    if !require_base("hung_case") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = sb.recipe("fixture-hang");
    let o = sb.cmd(&["build", &name, "--smoke", "cpu"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("`huge`") && out.contains("4 s"), "{out}");
    assert!(out.contains("timed out"), "{out}");
    assert!(
        !docker(&["image", "inspect", &format!("rdna1-images:{name}")])
            .status
            .success()
    );
    assert!(containers_of(&name).is_empty(), "container left behind");
}

#[test]
fn container_past_its_hard_timeout_is_killed_and_removed() {
    if !require_base("container_timeout") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = sb.recipe("fixture-container-timeout");
    let started = std::time::Instant::now();
    let o = sb.cmd(&["build", &name, "--smoke", "cpu"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("timed out after 10 s"), "{out}");
    assert!(containers_of(&name).is_empty(), "container left behind");
    // Killed at the limit, not after the hour the stuck interpreter sleeps.
    assert!(started.elapsed().as_secs() < 300, "{:?}", started.elapsed());
}

#[test]
fn unreachable_engine_exits_3_and_says_so() {
    let mut sb = Sandbox::new();
    let name = sb.recipe("fixture-ok");
    let o = sb.cmd_env(
        &["build", &name, "--smoke", "cpu"],
        &[("DOCKER_HOST", "unix:///nonexistent/docker.sock")],
    );
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(
        out.contains("cannot reach the Docker engine at unix:///nonexistent/docker.sock"),
        "{out}"
    );
}

#[test]
fn run_in_cpu_mode_returns_output_and_exit_code_and_cleans_up() {
    if !require_base("run_cpu") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = sb.recipe("fixture-ok");
    let o = sb.cmd(&["build", &name, "--smoke", "cpu", "-q"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let volume = format!("rdna1-images-miopen-{name}");
    let o = sb.cmd(&[
        "run",
        &name,
        "--cpu",
        "--network",
        "none",
        "--",
        "sh",
        "-c",
        "echo hello from $(pwd); ls -d /var/cache/miopen/db; exit 7",
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(7), "{out}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("hello from /workspace"),
        "{out}"
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("/var/cache/miopen/db"),
        "{out}"
    );
    assert!(containers_of(&name).is_empty(), "run container left behind");
    assert!(
        docker(&["volume", "inspect", &volume]).status.success(),
        "MIOpen volume not created"
    );
    let _ = docker(&["volume", "rm", &volume]);
    // Without /dev/kfd and without --cpu: exit 3 and the way out.
    let o = sb.cmd(&["run", &name, "--", "true"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("--cpu"), "{}", text(&o));
}
