//! Apps on a passed stack, end to end on the engine with the test app of
//! tests/fixtures/apps (an HTTP service on the test base that imports torch): the build on
//! the stack's passed image, the torch guard, the health wait, the job, a failing app that
//! leaves the good one tagged, and `run` with the port reachable from the host and Ctrl-C.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn image_id(reference: &str) -> String {
    docker_out(&["image", "inspect", "--format", "{{.Id}}", reference])
}

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One HTTP request to 127.0.0.1:`port` on the host; the whole answer.
fn http(port: u16, request: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(request.as_bytes())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(answer)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes a wheel with tests/fixtures/apps/make_wheel.py; returns (file name, sha256).
fn wheel(dir: &Path, name: &str, version: &str, requires: &[&str]) -> (String, String) {
    let o = Command::new("python3")
        .arg(fixtures().join("apps/make_wheel.py"))
        .arg(dir)
        .args([name, version])
        .args(requires)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    let line = String::from_utf8(o.stdout).unwrap();
    let (path, hash) = line.trim().split_once('\t').unwrap();
    let file = Path::new(path).file_name().unwrap().to_str().unwrap();
    (file.to_string(), hash.to_string())
}

/// The pip wheel CPython bundles (ensurepip), to run pip in a stack that has none.
fn bundled_pip(dir: &Path) -> String {
    let o = Command::new("python3")
        .args(["-c", "import ensurepip, pathlib; print(next((pathlib.Path(ensurepip.__file__).parent / '_bundled').glob('pip-*.whl')))"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "python3 has no bundled pip wheel: {}",
        out(&o)
    );
    let path = String::from_utf8(o.stdout).unwrap().trim().to_string();
    let file = Path::new(&path)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    std::fs::copy(&path, dir.join(&file)).unwrap();
    file
}

fn app_recipe(app: &str, stack: &str) -> String {
    std::fs::read_to_string(fixtures().join("apps/fixture-app.yaml"))
        .unwrap()
        .replace("name: fixture-app\n", &format!("name: {app}\n"))
        .replace("stack: STACK\n", &format!("stack: {stack}\n"))
}

#[test]
fn an_app_builds_on_its_passed_stack_tests_itself_and_runs() {
    if !require_base("apps") {
        return;
    }
    let mut sb = Sandbox::new();
    let stack = sb.recipe("fixture-ok");
    // One Conv2d case: the stack's suite runs twice here (stack, then app), on a shared CPU.
    let t = sb.read(&stack);
    let cut = t.find("    - name: large").unwrap();
    let rest = &t[t.find("source_date_epoch").unwrap()..];
    let t = format!("{}{rest}", &t[..cut])
        .replace("case_timeout_s: 60\n", "case_timeout_s: 600\n")
        .replace("container_timeout_s: 300\n", "container_timeout_s: 900\n")
        // True of the test base's Debian 12 (PEP 668): the evil app's pip must be told.
        .replace(
            "  bin: python3\n",
            "  bin: python3\n  externally_managed: true\n",
        );
    sb.write(&stack, &t);
    let apps = sb.dir.path().join("apps");
    std::fs::create_dir_all(&apps).unwrap();
    std::fs::copy(fixtures().join("apps/server.py"), apps.join("server.py")).unwrap();
    let app = format!("{stack}-app");
    let evil = format!("{stack}-evil");
    // Apps first: their images go before the stack's when the sandbox cleans up.
    sb.names.insert(0, app.clone());
    sb.names.insert(0, evil.clone());
    let text = app_recipe(&app, &stack);
    sb.write(&app, &text);

    // Before its stack has passed, the app is refused, naming what to build.
    let o = sb.cmd(&["build", &app, "--smoke", "cpu"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains(&format!("rdna1-images build {stack}")),
        "{}",
        out(&o)
    );

    // One command, the app named first: the stack is built first, then the app on it. The
    // app: the stack's suite again in the app image, then start, job, stop.
    let o = sb.cmd(&["build", &app, &stack, "--smoke", "cpu"]);
    let all = out(&o);
    assert!(o.status.success(), "{all}");
    let stack_id = image_id(&format!("rdna1-images:{stack}"));
    let at = |what: String| {
        all.find(&what)
            .unwrap_or_else(|| panic!("no `{what}`:\n{all}"))
    };
    assert!(
        at(format!("building {stack} (input digest"))
            < at(format!("building app {app} on rdna1-images:{stack} (image")),
        "{all}"
    );
    assert!(all.contains("the stack's smoke test again"), "{all}");
    for check in ["start", "job", "stop"] {
        assert!(
            all.lines()
                .any(|l| l.starts_with(check) && l.contains("pass")),
            "no passed `{check}` row:\n{all}"
        );
    }
    assert!(all.contains("wrote output/job_00001.json"), "{all}");
    let good = image_id(&format!("rdna1-images:{app}"));
    assert!(good.starts_with("sha256:"), "{all}");
    let user = docker_out(&["image", "inspect", "--format", "{{.Config.User}}", &good]);
    assert_eq!(user, "1000", "the app runs as a non-root user");
    let labels = docker_out(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        &good,
    ]);
    assert!(
        labels.contains(&format!("\"io.github.rdna1-images.stack\":\"{stack}\"")),
        "{labels}"
    );
    // Nothing baked into the data folders, and the stack's torch is the app's.
    let o = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &good,
        "sh",
        "-c",
        "ls -A /data/output | wc -l; python3 -c 'import torch; print(torch.__version__)'",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "0\n1.13.0a0\n",
        "{}",
        out(&o)
    );
    assert_ne!(good, stack_id);
    // The stack image it was built on, for a puller to check.
    assert!(
        labels.contains(&format!(
            "\"io.github.rdna1-images.stack-image\":\"{stack_id}\""
        )),
        "{labels}"
    );

    channels(&sb, &app, &good);

    // A job that never finishes: the app is not tagged, the good one keeps its tag.
    sb.write(&app, &text.replace("{\"size\": 16}", "{\"fail\": true}"));
    let o = sb.cmd(&["build", &app, "--smoke", "cpu"]);
    let all = out(&o);
    assert_eq!(o.status.code(), Some(1), "{all}");
    assert!(all.contains("app check job: fail"), "{all}");
    assert_eq!(image_id(&format!("rdna1-images:{app}")), good, "{all}");
    sb.write(&app, &text);

    // A package that wants another torch: the build fails naming it; torch stays.
    let (evil_whl, evil_hash) = wheel(&apps, "evil", "1.0", &["torch==99.0"]);
    let pip = bundled_pip(&apps);
    let bad = app_recipe(&evil, &stack).replace(
        "serve:\n",
        &format!(
            "python_packages:\n  - name: evil\n    version: \"1.0\"\n    sha256: [{evil_hash}]\nwheel_files: [apps/{evil_whl}]\npip_wheel: apps/{pip}\nserve:\n"
        ),
    );
    sb.write(&evil, &bad);
    let o = sb.cmd(&["build", &evil, "--smoke", "cpu"]);
    let all = out(&o);
    assert_eq!(o.status.code(), Some(1), "{all}");
    assert!(
        all.contains("package evil requires a torch other than the stack's"),
        "{all}"
    );
    assert!(image_id(&format!("rdna1-images:{evil}")).is_empty());

    // run: the port on 127.0.0.1, reachable from the host; the data in the given folder.
    let port = free_port();
    let data = tempfile::tempdir().unwrap();
    let data_arg = data.path().to_str().unwrap().to_string();
    let port_arg = port.to_string();
    let mut run = spawn_group(
        &sb,
        &[
            "run", &app, "--cpu", "--port", &port_arg, "--data", &data_arg,
        ],
        &[],
    );
    run.wait_for(
        &format!("http://127.0.0.1:{port}/"),
        Duration::from_secs(60),
    );
    let started = Instant::now();
    let answer = loop {
        if run.child.try_wait().unwrap().is_some() {
            let (code, err) = run.finish(Duration::from_secs(10));
            let left = docker_out(&[
                "ps",
                "-aq",
                "--filter",
                &format!("label=io.github.rdna1-images.recipe={app}"),
            ]);
            assert!(left.is_empty(), "containers left: {left}");
            let _ = docker(&["volume", "rm", &format!("rdna1-images-miopen-{app}")]);
            if err.contains("published no port") {
                // An engine with no bridge network (ci/engines.sh starts the classic 28.5
                // engine with --bridge=none) starts the container and publishes nothing: `run`
                // must say so and stop (exit 3), not print an address nothing answers at.
                let bridges = docker_out(&["network", "ls", "-q", "--filter", "driver=bridge"]);
                assert!(
                    bridges.is_empty(),
                    "run found no published port on an engine with a bridge network:\n{err}"
                );
                assert_eq!(code, Some(3), "{err}");
                assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
                eprintln!("apps: the engine has no bridge network: `run` refused with exit 3 and left nothing");
                return;
            }
            if err.contains("could not find bridge docker0") {
                // The engine's default bridge is gone (a dockerd started with --bridge=none
                // deletes docker0; ci/ensure-docker.sh makes it again). `run`
                // failed and left nothing (asserted above), but the port was not proven.
                assert_ne!(code, Some(0), "run succeeded without its port:\n{err}");
                let why = "the engine's docker0 bridge is missing, so no port can be published: run `bash ci/ensure-docker.sh` as root";
                if std::env::var("RDNA1_REQUIRE_DOCKER").as_deref() == Ok("1") {
                    panic!("{why}\n{err}");
                }
                skip(why);
                return;
            }
            panic!("run ended before answering ({code:?}):\n{err}");
        }
        match http(port, "GET /system_stats HTTP/1.0\r\n\r\n") {
            Ok(a) if a.contains("\"devices\"") => break a,
            _ if started.elapsed() > Duration::from_secs(300) => {
                panic!("no answer at 127.0.0.1:{port} within 300 s")
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(answer.contains("\"type\": \"cpu\""), "{answer}");
    eprintln!("apps: the app answered at 127.0.0.1:{port} from the host");
    let body = "{\"prompt\": {\"size\": 4}}";
    let answer = http(
        port,
        &format!(
            "POST /prompt HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .unwrap();
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    let saved = data.path().join("output/job_00001.json");
    let written = std::fs::read_to_string(&saved).unwrap();
    assert!(written.contains("\"sum_inverted\": 0.0"), "{written}");
    // Ctrl-C: the app stops, the container goes.
    run.sigint_group();
    let (code, err) = run.finish(Duration::from_secs(60));
    assert!(matches!(code, Some(0) | Some(130)), "{code:?}\n{err}");
    let left = docker_out(&[
        "ps",
        "-aq",
        "--filter",
        &format!("label=io.github.rdna1-images.recipe={app}"),
    ]);
    assert!(left.is_empty(), "containers left: {left}");
    assert!(http(port, "GET / HTTP/1.0\r\n\r\n").is_err());
    let _ = docker(&["volume", "rm", &format!("rdna1-images-miopen-{app}")]);
}

/// The repository the registry tests share (its base layers are uploaded once).
const REPO: &str = "rdna1-images-test";

/// The open loopback registry (ci/registry.sh), or a failure under RDNA1_REQUIRE_DOCKER=1.
fn open_registry(test: &str) -> Option<String> {
    let reg = std::env::var("RDNA1_TEST_REGISTRY")
        .ok()
        .filter(|r| r.parse::<std::net::SocketAddr>().is_ok())
        .filter(|r| TcpStream::connect(r.as_str()).is_ok());
    if reg.is_none() {
        let why = "the test registry is not up: run `ci/registry.sh start` and `eval \"$(ci/registry.sh env)\"`";
        if std::env::var("RDNA1_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("{test}: {why}");
        }
        skip(&format!("{test}: {why}"));
    }
    reg
}

/// The local tags of `app` (ours, with its report) and any under a registry's name.
fn untag(app: &str) {
    let all = docker_out(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
    for t in all.lines().filter(|l| l.contains(&format!(":{app}"))) {
        let _ = docker(&["rmi", "--no-prune", t]);
    }
}

/// push, pull, pull-or-build and promote of the app `good` is, against the open registry:
/// the stacks' code paths, with the app's checks and its stack image checked.
fn channels(sb: &Sandbox, app: &str, good: &str) {
    let Some(reg) = open_registry("apps channels") else {
        return;
    };
    let repo = format!("{reg}/{REPO}");
    let env = [("RDNA1_IMAGES_REGISTRY", repo.as_str())];
    let o = sb.cmd_env(&["push", app, "--json"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let p = json_result(&o);
    let digest = p["input_digest"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap()
        .to_string();
    let d12 = &digest[..12];
    assert_eq!(p["image_id"], good, "{p}");
    assert_eq!(p["level"], "cpu", "{p}");
    assert_eq!(p["channels"], serde_json::json!(["nightly"]), "{p}");
    assert_eq!(
        p["tags"][0]["reference"],
        format!("{repo}:{app}-{d12}"),
        "{p}"
    );
    assert_eq!(
        p["tags"][1]["reference"],
        format!("{repo}:{app}-nightly"),
        "{p}"
    );
    let pushed = p["tags"][0]["digest"].as_str().unwrap().to_string();
    assert_eq!(
        p["report"]["reference"],
        format!("{repo}:{app}-{d12}-smoke-cpu"),
        "{p}"
    );
    // The report beside it carries the labels a stack's does: about this image, at cpu.
    let report: serde_json::Value = serde_json::from_str(&docker_out(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        &format!("rdna1-images:{app}-{d12}-smoke-cpu"),
    ]))
    .unwrap();
    assert_eq!(report["io.github.rdna1-images.recipe"], app, "{report}");
    assert_eq!(
        report["io.github.rdna1-images.input-digest"],
        digest.as_str(),
        "{report}"
    );
    assert_eq!(
        report["io.github.rdna1-images.tested-image"], good,
        "{report}"
    );
    assert_eq!(
        report["io.github.rdna1-images.smoke-level"], "cpu",
        "{report}"
    );
    assert!(
        report["io.github.rdna1-images.compat"]
            .as_str()
            .is_some_and(|c| c.contains("=pass")),
        "{report}"
    );

    // pull: the same image, its report found, the same inputs on this stack image.
    untag(app);
    let o = sb.cmd_env(&["pull", app, "--channel", "nightly", "--json"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", out(&o));
    let v = json_result(&o);
    assert_eq!(v["image_id"], good, "{v}");
    assert_eq!(v["manifest_digest"], pushed.as_str(), "{v}");
    assert_eq!(v["same_inputs"], true, "{v}");
    assert_eq!(v["tested"]["level"], "cpu", "{v}");
    assert_eq!(image_id(&format!("rdna1-images:{app}-{d12}")), good);

    // An app image of these inputs that names another stack image is not used: built here.
    let forged = format!("{reg}/{REPO}-forged");
    let c = docker_out(&["create", good, "true"]);
    let other = format!("sha256:{}", "0".repeat(64));
    let o = docker(&[
        "commit",
        "--change",
        &format!("LABEL io.github.rdna1-images.stack-image={other}"),
        &c,
        &format!("{forged}:{app}-{d12}"),
    ]);
    let _ = docker(&["rm", &c]);
    assert!(o.status.success(), "{}", out(&o));
    let o = docker(&["push", &format!("{forged}:{app}-{d12}")]);
    assert!(o.status.success(), "{}", out(&o));
    let _ = docker(&["rmi", "--no-prune", &format!("{forged}:{app}-{d12}")]);
    untag(app);
    let o = sb.cmd_env(
        &["build", app, "--smoke", "skip"],
        &[("RDNA1_IMAGES_REGISTRY", forged.as_str())],
    );
    let all = out(&o);
    assert_eq!(o.status.code(), Some(0), "{all}");
    assert!(
        all.contains(&format!("is not used: it was built on stack image {other}")),
        "{all}"
    );
    assert!(!all.contains("PULLED"), "{all}");
    assert!(image_id(&format!("rdna1-images:{app}")).is_empty(), "{all}");

    // pull-or-build: the registry's image of these inputs on this stack image, not a build.
    untag(app);
    let o = sb.cmd_env(&["build", app, "--smoke", "cpu"], &env);
    let all = out(&o);
    assert_eq!(o.status.code(), Some(0), "{all}");
    assert!(
        all.contains(&format!("{app}: PULLED from the registry")),
        "{all}"
    );
    assert_eq!(image_id(&format!("rdna1-images:{app}")), good, "{all}");

    // promote: the app's checks run again on the nightly's digest; stable moves on a pass.
    let o = sb.cmd_env(
        &[
            "promote",
            app,
            "--smoke",
            "cpu",
            "--image",
            &format!("{repo}@{pushed}"),
            "--json",
        ],
        &[env[0], ("RDNA1_IMAGES_ALLOW_CPU_PROMOTE", "1")],
    );
    let all = out(&o);
    assert_eq!(o.status.code(), Some(0), "{all}");
    assert!(all.contains("app checks (cpu)"), "{all}");
    let v = json_result(&o);
    assert_eq!(v["promoted"], true, "{v}");
    assert!(
        v["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["reference"] == format!("{repo}:{app}") && t["digest"] == pushed.as_str()),
        "{v}"
    );
}

#[test]
fn run_dry_run_publishes_on_loopback_and_says_so_when_widened() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path().to_str().unwrap();
    let o = Command::new(BIN)
        .args(["run", "comfyui", "--cpu", "--dry-run", "--data", d])
        .output()
        .unwrap();
    let text = out(&o);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("-p 127.0.0.1:8188:8188"), "{text}");
    assert!(text.contains(&format!("{d}/models:/data/models")), "{text}");
    assert!(text.contains("main.py") && text.contains("--cpu"), "{text}");
    let o = Command::new(BIN)
        .args([
            "run",
            "comfyui",
            "--cpu",
            "--dry-run",
            "--data",
            d,
            "--listen",
            "0.0.0.0",
            "--port",
            "9000",
        ])
        .output()
        .unwrap();
    let text = out(&o);
    assert!(text.contains("-p 0.0.0.0:9000:8188"), "{text}");
    assert!(text.contains("WARNING: --listen 0.0.0.0"), "{text}");
    // The host's network would put the app on every interface, past --listen; none would
    // leave it unreachable: both are refused before anything starts.
    for network in ["host", "none"] {
        let o = Command::new(BIN)
            .args(["run", "comfyui", "--cpu", "--dry-run", "--data", d])
            .args(["--network", network])
            .output()
            .unwrap();
        let text = out(&o);
        assert_eq!(o.status.code(), Some(2), "{network}: {text}");
        assert!(text.contains(&format!("--network {network}")), "{text}");
        assert!(!text.contains("docker run"), "{text}");
    }
}

#[test]
fn list_shows_comfyui_and_an_unsupported_pair_is_refused() {
    let o = Command::new(BIN).arg("list").output().unwrap();
    let text = out(&o);
    assert!(
        text.lines().any(|l| l.starts_with("comfyui ")
            && l.contains("therock")
            && l.contains("not run on an RDNA1 card")),
        "{text}"
    );
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
    std::fs::copy(src.join("rocm52.yaml"), dir.path().join("rocm52.yaml")).unwrap();
    let text = std::fs::read_to_string(src.join("comfyui.yaml"))
        .unwrap()
        .replace("stack: therock\n", "stack: rocm52\n");
    let line = text.lines().position(|l| l == "stack: rocm52").unwrap() + 1;
    std::fs::write(dir.path().join("comfyui.yaml"), text).unwrap();
    let o = Command::new(BIN)
        .arg("--recipes")
        .arg(dir.path())
        .args(["render", "comfyui"])
        .output()
        .unwrap();
    let err = out(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("comfyui.yaml:{line}:")), "{err}");
    assert!(
        err.contains("needs torch 2.4 or later, and stack `rocm52` has torch 1.13.1+rocm5.2"),
        "{err}"
    );
}
