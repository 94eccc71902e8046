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

/// A proxy in front of the engine's unix socket that hides every kill from it, as a process
/// stuck in the GPU driver (uninterruptible sleep) does: `POST /containers/<id>/kill` and a
/// forced `DELETE /containers/<id>` (which kills first) are never answered, as the engine
/// answers neither until the process exits. Everything else passes through, one request a
/// connection (`Connection: close` is added), so the head of each request is seen.
struct KillHidingProxy {
    dir: tempfile::TempDir,
    hidden: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl KillHidingProxy {
    fn start() -> Self {
        use std::io::{BufRead, BufReader, Write};
        use std::os::unix::net::{UnixListener, UnixStream};
        let upstream = match std::env::var("DOCKER_HOST") {
            Ok(h) if h.starts_with("unix://") => h["unix://".len()..].to_string(),
            Ok(h) if !h.is_empty() => {
                panic!("the kill-hiding proxy needs a unix DOCKER_HOST, not {h}")
            }
            _ => "/var/run/docker.sock".to_string(),
        };
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("docker.sock")).unwrap();
        let hidden = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = hidden.clone();
        std::thread::spawn(move || {
            // The hidden requests' connections, held open and unanswered.
            let mut held: Vec<UnixStream> = vec![];
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let mut reader = BufReader::new(client.try_clone().unwrap());
                let mut head: Vec<Vec<u8>> = vec![];
                loop {
                    let mut line = vec![];
                    if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let end = line == b"\r\n";
                    head.push(line);
                    if end {
                        break;
                    }
                }
                let Some(first) = head.first() else { continue };
                let first = String::from_utf8_lossy(first).trim_end().to_string();
                let mut parts = first.split(' ');
                let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let path = target.split('?').next().unwrap_or("");
                let kill =
                    method == "POST" && path.contains("/containers/") && path.ends_with("/kill");
                let forced_remove = method == "DELETE"
                    && path.contains("/containers/")
                    && (target.contains("force=true") || target.contains("force=1"));
                if kill || forced_remove {
                    seen.lock().unwrap().push(first);
                    held.push(client);
                    continue;
                }
                let upstream = upstream.clone();
                std::thread::spawn(move || {
                    let Ok(mut up) = UnixStream::connect(&upstream) else {
                        return;
                    };
                    let has_connection = head
                        .iter()
                        .any(|l| l.to_ascii_lowercase().starts_with(b"connection:"));
                    let last = head.len() - 1;
                    for (i, l) in head.iter().enumerate() {
                        if i == last && !has_connection {
                            let _ = up.write_all(b"Connection: close\r\n");
                        }
                        let _ = up.write_all(l);
                    }
                    let _ = up.write_all(reader.buffer());
                    let mut client_w = client;
                    let mut up_r = up.try_clone().unwrap();
                    let back = std::thread::spawn(move || {
                        let _ = std::io::copy(&mut up_r, &mut client_w);
                        let _ = client_w.shutdown(std::net::Shutdown::Both);
                    });
                    let mut client_r = reader.into_inner();
                    let _ = std::io::copy(&mut client_r, &mut up);
                    let _ = up.shutdown(std::net::Shutdown::Write);
                    let _ = back.join();
                });
            }
        });
        KillHidingProxy { dir, hidden }
    }

    fn docker_host(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }
}

/// A smoke container that outlives its SIGKILL (the kill hidden from the engine, as for a
/// process stuck in the driver) does not hold the run: past its hard limit and the kill's
/// grace, the run ends with exit 1 and a message naming the container, which stays,
/// labelled, for `clean`.
#[test]
fn a_container_that_ignores_sigkill_ends_the_run_with_exit_1_naming_it() {
    if !require_base("container_ignores_sigkill") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = sb.recipe("fixture-container-timeout");
    // The smoke test runs beside the normalise, and the run ends when both have: the first
    // normalise of a base on an engine hands the whole base over (minutes), so that is done
    // first, without the proxy, to time only the container here.
    let o = sb.cmd(&["build", &name, "--smoke", "skip", "--no-pull"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let proxy = KillHidingProxy::start();
    let mut c = std::process::Command::new(BIN);
    c.env("RDNA1_IMAGES_BUILD_NETWORK", "none")
        .env("RDNA1_IMAGES_REGISTRY", "127.0.0.1:9/rdna1-images-none")
        .env("DOCKER_HOST", proxy.docker_host())
        .arg("--recipes")
        .arg(sb.dir.path())
        .args(["build", &name, "--smoke", "cpu", "--no-pull"]);
    let mut child = c
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Stderr line by line, with the moment the smoke container starts.
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send((std::time::Instant::now(), l));
        }
    });
    // Bounded whatever the tool does: a hang is this test's failure, not CI's.
    let started = std::time::Instant::now();
    let mut lines: Vec<String> = vec![];
    let mut smoke_started = None;
    // The hard limit (10 s), the kill's grace (15 s), and slack for a loaded machine.
    let after_smoke = std::time::Duration::from_secs(10 + 15 + 45);
    let hung = loop {
        while let Ok((at, l)) = rx.try_recv() {
            if smoke_started.is_none() && l.contains("smoke test (cpu)") {
                smoke_started = Some(at);
            }
            lines.push(l);
        }
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        let late = match smoke_started {
            Some(at) => at.elapsed() > after_smoke,
            None => started.elapsed() > std::time::Duration::from_secs(900),
        };
        if late {
            let _ = child.kill();
            break true;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let status = child.wait().unwrap();
    let ended = std::time::Instant::now();
    while let Ok((_, l)) = rx.recv_timeout(std::time::Duration::from_millis(500)) {
        lines.push(l);
    }
    let out = format!("exit {:?}\n{}", status.code(), lines.join("\n"));
    let left = containers_of(&name);
    for id in &left {
        let _ = docker(&["rm", "-f", id]);
    }
    let since_smoke = smoke_started.map(|s| ended - s);
    eprintln!(
        "ended {since_smoke:?} after the smoke container started ({:?} in all); it said:\n{}",
        ended - started,
        lines[lines.len().saturating_sub(4)..].join("\n")
    );
    let hidden = proxy.hidden.lock().unwrap().clone();
    assert!(
        !hung,
        "still running {since_smoke:?} after the smoke container started (kills hidden: {hidden:?}):\n{out}"
    );
    assert!(
        !hidden.is_empty(),
        "no kill was hidden: the test did not test it:\n{out}"
    );
    assert_eq!(status.code(), Some(1), "{out}");
    assert_eq!(
        left.len(),
        1,
        "the stuck container stays, labelled: {left:?}\n{out}"
    );
    let id = &left[0];
    assert!(
        out.contains(&id[..12]),
        "the message names container {id}:\n{out}"
    );
    assert!(out.contains("after SIGKILL"), "{out}");
    assert!(
        !docker(&["image", "inspect", &format!("rdna1-images:{name}")])
            .status
            .success(),
        "tagged although its smoke test never ended"
    );
}

/// A base the engine cannot fetch (its registry refuses the connection, as an engine
/// without DNS or behind a missing proxy fails) is the environment: exit 3, with what to
/// do, not "the job failed" with BuildKit's raw dial error.
#[test]
fn a_base_the_engine_cannot_fetch_exits_3_with_advice() {
    if !require_docker("base_cannot_be_fetched") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = sb.recipe("fixture-unreachable-base");
    let o = sb.cmd(&["build", &name, "--smoke", "cpu", "--no-pull"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert!(out.contains("could not fetch the base image"), "{out}");
    assert!(out.contains("127.0.0.1:9/rdna1-unreachable/base"), "{out}");
    assert!(
        out.contains("registry-mirrors") && out.contains("docker pull"),
        "{out}"
    );
    // The cause stays in the message.
    assert!(out.contains("connection refused"), "{out}");
    let o = sb.cmd(&["build", &name, "--smoke", "cpu", "--no-pull", "--json"]);
    let doc = json_document(&o);
    assert_eq!(doc["error"]["class"], "environment", "{doc:#}");
}
