//! Reproducible images against the real engine: two no-cache builds give the same image id
//! and layer digests, a second push uploads no layer, and a build that writes the date is
//! caught and named. Plus `check --strict` on each kind of unpinned input.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn json(o: &std::process::Output) -> serde_json::Value {
    json_result(o)
}

/// A minimal wheel (a zip with fixed timestamps), written by the host's Python.
fn write_wheel(dest: &Path, value: u32) {
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let script = r#"
import sys, zipfile, hashlib, base64
dest, value = sys.argv[1], sys.argv[2]
files = {
    "rdna1_fixture/__init__.py": f"VALUE = {value}\n",
    "rdna1_fixture-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: rdna1-fixture\nVersion: 0.1\n",
    "rdna1_fixture-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: rdna1-images-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
with zipfile.ZipFile(dest, "w") as z:
    for name, text in files.items():
        data = text.encode()
        z.writestr(zipfile.ZipInfo(name, (2025, 11, 25, 0, 0, 0)), data)
        h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={h},{len(data)}")
    record.append("rdna1_fixture-0.1.dist-info/RECORD,,")
    z.writestr(zipfile.ZipInfo("rdna1_fixture-0.1.dist-info/RECORD", (2025, 11, 25, 0, 0, 0)), "\n".join(record) + "\n")
"#;
    let o = Command::new("python3")
        .args(["-c", script, dest.to_str().unwrap(), &value.to_string()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

/// The repro fixture with its wheel and config beside it.
fn repro_sandbox() -> (Sandbox, String) {
    let mut sb = Sandbox::new();
    let name = sb.recipe("fixture-repro");
    write_wheel(
        &sb.dir
            .path()
            .join("wheels/rdna1_fixture-0.1-py3-none-any.whl"),
        42,
    );
    std::fs::create_dir_all(sb.dir.path().join("etc")).unwrap();
    std::fs::write(sb.dir.path().join("etc/fixture.conf"), "mode=test\n").unwrap();
    (sb, name)
}

/// The loopback registry of ci/registry.sh: required under RDNA1_REQUIRE_DOCKER=1.
fn registry(test: &str) -> Option<String> {
    let reg = std::env::var("RDNA1_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let up = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5"])
        .arg(format!("http://{reg}/v2/"))
        .output()
        .map(|o| o.stdout == b"200")
        .unwrap_or(false);
    if up {
        return Some(reg);
    }
    if std::env::var("RDNA1_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("{test}: no registry answers at {reg}: run `ci/registry.sh start`");
    }
    skip(&format!(
        "{test}: no registry at {reg} (ci/registry.sh start)"
    ));
    None
}

/// Pushes with the docker CLI; returns (layers pushed, layers already there).
fn push(reference: &str) -> (usize, usize, String) {
    let o = docker(&["push", reference]);
    let out = text(&o);
    assert!(o.status.success(), "docker push {reference}: {out}");
    let pushed = out.lines().filter(|l| l.ends_with(": Pushed")).count();
    let existed = out
        .lines()
        .filter(|l| l.ends_with(": Layer already exists"))
        .count();
    (pushed, existed, out)
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn two_no_cache_builds_give_the_same_image_and_the_second_push_uploads_nothing() {
    if !require_base("reproducible_builds") {
        return;
    }
    let Some(reg) = registry("reproducible_builds") else {
        return;
    };
    let (sb, name) = repro_sandbox();

    // Build, build again without cache, compare; then the smoke test, then the tags.
    let o = sb.cmd(&[
        "build",
        &name,
        "--smoke",
        "cpu",
        "--no-cache",
        "--verify-reproducible",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let b = &json(&o)[0];
    assert_eq!(b["status"], "passed", "{}", text(&o));
    let c = &b["reproducible"];
    assert_eq!(c["reproducible"], true, "{}", text(&o));
    let id = b["image_id"].as_str().unwrap().to_string();
    assert_eq!(c["first_image"], id.as_str());
    assert_eq!(c["second_image"], id.as_str());
    let layers = strings(&b["layers"]);
    assert_eq!(strings(&c["first_layers"]), layers);
    assert_eq!(strings(&c["second_layers"]), layers);
    eprintln!(
        "REPORT first build:  {id}\nREPORT second build: {}",
        c["second_image"]
    );
    for l in &layers {
        eprintln!("REPORT   layer {l}");
    }
    // The base layer is shared with the base image, untouched.
    let base_layers = docker_out(&[
        "image",
        "inspect",
        "--format",
        "{{json .RootFS.Layers}}",
        "rdna1-test-base:bookworm",
    ]);
    let base_layers: Vec<String> = serde_json::from_str(&base_layers).unwrap();
    assert_eq!(layers[..base_layers.len()], base_layers[..]);
    assert!(layers.len() > base_layers.len() + 2, "{layers:?}");
    // The config carries SOURCE_DATE_EPOCH, not the clock.
    let created = docker_out(&["image", "inspect", "--format", "{{.Created}}", &id]);
    assert!(created.starts_with("2025-11-25T00:00:00"), "{created}");
    // What the RUN made is there and works.
    let o = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &id,
        "python3",
        "-c",
        "import rdna1_fixture; print(rdna1_fixture.VALUE, open('/etc/rdna1-fixture/fixture.conf').read())",
    ]);
    assert!(text(&o).contains("42 mode=test\nthreads=1"), "{}", text(&o));

    // First push: the new layers go up.
    let repo = format!("{reg}/rdna1-repro/{name}");
    let first = format!("{repo}:first");
    assert!(docker(&["tag", &id, &first]).status.success());
    let (pushed, _, out) = push(&first);
    // Layers other tests pushed to this registry (the same bytes: that is the point) are
    // mounted from their repository instead of uploaded.
    let mounted = out.matches("Mounted from").count();
    assert!(
        pushed + mounted >= layers.len() - base_layers.len(),
        "{out}"
    );
    eprintln!(
        "REPORT first push: {pushed} layer(s) pushed, {mounted} mounted from another repository"
    );

    // Remove the image completely, rebuild from nothing, push again: nothing to upload.
    assert!(docker(&["rmi", &first]).status.success());
    drop(sb);
    let _ = docker(&["rmi", &id]);
    assert!(
        !docker(&["image", "inspect", &id]).status.success(),
        "the image must be gone before the rebuild"
    );
    let (sb, name2) = repro_sandbox();
    let again = sb.read(&name2).replace(&name2, &name);
    sb.write(&name, &again);
    std::fs::remove_file(sb.dir.path().join(format!("{name2}.yaml"))).unwrap();
    let o = sb.cmd(&["build", &name, "--smoke", "skip", "--no-cache", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let b = &json(&o)[0];
    assert_eq!(b["image_id"], id.as_str(), "{}", text(&o));
    assert_eq!(strings(&b["layers"]), layers);
    let second = format!("{repo}:second");
    assert!(docker(&["tag", &id, &second]).status.success());
    let (pushed, existed, out) = push(&second);
    eprintln!("REPORT second push: {pushed} layer(s) pushed, {existed} already in the registry");
    assert_eq!(pushed, 0, "the second push uploaded layers:\n{out}");
    assert_eq!(existed, layers.len(), "{out}");
    let _ = docker(&["rmi", &second]);
    let _ = docker(&["rmi", &id]);
}

#[test]
fn a_build_that_writes_the_date_is_caught_and_the_file_named() {
    if !require_base("nonreproducible_build") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = sb.recipe("fixture-nonrepro");
    let o = sb.cmd(&[
        "build",
        &name,
        "--smoke",
        "cpu",
        "--verify-reproducible",
        "--json",
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let b = &json(&o)[0];
    assert_eq!(b["status"], "not_reproducible", "{out}");
    assert!(b["tags"].as_array().unwrap().is_empty(), "{out}");
    let c = &b["reproducible"];
    assert_eq!(c["reproducible"], false);
    let layers = c["layers"].as_array().unwrap();
    assert_eq!(
        layers.len(),
        1,
        "only the RUN that writes the date differs: {c}"
    );
    assert!(
        layers[0]["created_by"]
            .as_str()
            .unwrap()
            .contains("date +%s%N > /etc/rdna1-fixture/build-date"),
        "{c}"
    );
    let files: Vec<&str> = layers[0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["etc/rdna1-fixture/build-date"], "{c}");
    // The human report says the same.
    let o = sb.cmd(&["build", &name, "--smoke", "skip", "--verify-reproducible"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("NOT REPRODUCIBLE"), "{out}");
    assert!(
        out.contains("etc/rdna1-fixture/build-date: content sha256"),
        "{out}"
    );
    // The file that is the same in both builds is not listed.
    assert!(!out.contains("stable.conf:"), "{out}");
}

/// `check --strict` output for one recipe text.
fn strict(text_of: &str) -> (Option<i32>, String) {
    let sb = Sandbox::new();
    let name = "strict-fixture";
    sb.write(
        name,
        &text_of.replace("name: fixture-ok\n", &format!("name: {name}\n")),
    );
    let o = sb.cmd(&["check", "--strict"]);
    (o.status.code(), text(&o))
}

fn fixture_ok() -> String {
    std::fs::read_to_string(fixtures().join("recipes/fixture-ok.yaml")).unwrap()
}

#[test]
fn check_strict_names_each_kind_of_unpinned_input() {
    let ok = fixture_ok();
    // The fixture's exemption is explicit and reasoned: it passes.
    let (code, out) = strict(&ok);
    assert_eq!(code, Some(0), "{out}");

    // A base without digest or reason.
    let t = ok.replace(
        "  unpinned_reason: local test image made by ci/test-base.sh, never pulled\n",
        "",
    );
    let (code, out) = strict(&t);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("field `base.digest`"), "{out}");

    // apt packages without versions and without a reason.
    let t = ok.replace(
        "pytorch:\n",
        "system_packages:\n  apt:\n    - curl\n    - git=1:2.39.5-0+deb12u2\npytorch:\n",
    );
    let (code, out) = strict(&t);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("system_packages.apt[0]") && out.contains("`curl` has no version"),
        "{out}"
    );
    assert!(!out.contains("apt[1]"), "{out}");

    // A wheel without sha256.
    let t = ok.replace(
        "pytorch:\n  preinstalled:\n    version: 1.13.0a0  # Debian python3-torch 1.13.1+dfsg reports 1.13.0a0\n",
        "pytorch:\n  wheels:\n    torch_version: 1.13.0a0\n    index: https://example.invalid/whl\n    packages:\n      - name: torch\n        version: 1.13.0a0\n        url: https://example.invalid/whl/torch-1.13.0a0-py3-none-any.whl\n",
    );
    let (code, out) = strict(&t);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("pytorch.wheels.packages[0].sha256") && out.contains("`torch` has no sha256"),
        "{out}"
    );

    // A source ref that is a tag, not a commit.
    let t = ok.replace(
        "pytorch:\n  preinstalled:\n    version: 1.13.0a0  # Debian python3-torch 1.13.1+dfsg reports 1.13.0a0\n",
        "pytorch:\n  source:\n    version: 2.4.1\n    repository: https://github.com/pytorch/pytorch\n    ref: v2.4.1\n    commit: v2.4.1\n    arch: [gfx1010]\n",
    );
    let (code, out) = strict(&t);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains("pytorch.source.commit")
            && out.contains("`v2.4.1` must be a full 40-hex commit id"),
        "{out}"
    );
}

#[test]
fn the_shipped_recipes_pass_check_strict_but_for_hashes_still_to_be_locked() {
    let o = Command::new(BIN)
        .args(["check", "--strict"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    // A recipe in the state "versions pinned, hashes to be locked" (therock, until someone
    // who reaches AMD's index runs `lock` and commits it) is listed, package by package,
    // and nothing else may be.
    let pending: Vec<&str> = out.lines().filter(|l| l.starts_with("unpinned ")).collect();
    let therock =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/therock.yaml"))
            .unwrap();
    if therock.contains("\n    lock_pending:") {
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(!pending.is_empty(), "{out}");
        for l in &pending {
            assert!(
                l.contains("recipes/therock.yaml:")
                    && l.contains("field `pytorch.wheels.")
                    && l.contains("hash is still to be locked"),
                "{l}"
            );
        }
    } else {
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    for r in ["rocm52", "rocm62"] {
        assert!(out.contains(&format!("ok    {r}")), "{out}");
    }
}

#[test]
fn lock_pins_the_base_digest_and_wheel_hashes_in_the_lock_leaving_the_recipe() {
    if !require_docker("lock") {
        return;
    }
    let Some(reg) = registry("lock") else {
        return;
    };
    // The base: the tiny test image, pushed to the loopback registry under a tag.
    let tiny = "rdna1-test-tiny:latest";
    if !docker(&["image", "inspect", tiny]).status.success() {
        assert!(
            std::env::var("RDNA1_REQUIRE_DOCKER").as_deref() != Ok("1"),
            "{tiny} is missing: run ci/test-base.sh"
        );
        skip(&format!("lock: {tiny} missing"));
        return;
    }
    let base = format!("{reg}/rdna1-lock/tiny-{}:v1", std::process::id());
    assert!(docker(&["tag", tiny, &base]).status.success());
    let (_, _, out) = push(&base);
    let digest = out
        .split_whitespace()
        .skip_while(|w| *w != "digest:")
        .nth(1)
        .unwrap_or_else(|| panic!("no digest in the push output: {out}"))
        .to_string();
    let _ = docker(&["rmi", &base]);

    // The wheels: a folder served on loopback.
    let wheels = tempfile::tempdir().unwrap();
    let whl = wheels.path().join("rdna1_fixture-0.1-py3-none-any.whl");
    write_wheel(&whl, 7);
    let want = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(std::fs::read(&whl).unwrap());
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let server = FolderServer::start(wheels.path());

    let sb = Sandbox::new();
    let name = "lock-fixture";
    let recipe = fixture_ok()
        .replace("name: fixture-ok\n", &format!("name: {name}\n"))
        .replace(
            "  image: rdna1-test-base:bookworm\n  unpinned_reason: local test image made by ci/test-base.sh, never pulled\n",
            // The digest is the lock's (`<name>.lock`, issue 23): a recipe that loads needs a
            // digest or a reason, and `lock` pins it there, never in the recipe.
            &format!("  # pinned by `lock`\n  image: {base}  # the tag people read\n  unpinned_reason: its digest is in lock-fixture.lock\n  glibc: \"2.36\"\n"),
        )
        .replace(
            "pytorch:\n  preinstalled:\n    version: 1.13.0a0  # Debian python3-torch 1.13.1+dfsg reports 1.13.0a0\n",
            &format!(
                "pytorch:\n  wheels:\n    torch_version: 1.13.0a0\n    index: http://127.0.0.1:{0}/\n    lock_pending: resolved by the test's loopback index\n    packages:\n      # the fixture wheel\n      - name: rdna1-fixture\n        version: \"0.1\"\n        url: http://127.0.0.1:{0}/rdna1_fixture-0.1-py3-none-any.whl\n",
                server.port
            ),
        );
    sb.write(name, &recipe);
    // Unpinned: check --strict fails and names both.
    let o = sb.cmd(&["check", "--strict"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    // `lock` writes the lock beside the recipe and never the recipe itself (issue 23): the
    // base's digest and the wheel's file and hash go into `<name>.lock`.
    let o = sb.cmd(&["lock", name]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(sb.read(name), recipe, "lock changed the recipe");
    let lock_path = sb.dir.path().join(format!("{name}.lock"));
    let locked = std::fs::read_to_string(&lock_path)
        .unwrap_or_else(|e| panic!("no {}: {e}\n{}", lock_path.display(), text(&o)));
    assert!(
        locked.contains(&format!("\nbase {base}@{digest}\n")),
        "{locked}"
    );
    assert!(
        locked.contains(&format!(
            "\npackage rdna1-fixture 0.1\nindex http://127.0.0.1:{0}/\nfile rdna1_fixture-0.1-py3-none-any.whl\nurl http://127.0.0.1:{0}/rdna1_fixture-0.1-py3-none-any.whl\n",
            server.port
        )),
        "{locked}"
    );
    assert!(locked.contains(&format!("\nsha256 {want}\n")), "{locked}");
    // With its lock the recipe is pinned: the base by the locked digest, the wheel by hash.
    let o = sb.cmd(&["check", "--strict"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = sb.cmd(&["render", name]);
    assert!(
        text(&o).contains(&format!("{base}@{digest}")),
        "the FROM line does not use the locked digest: {}",
        text(&o)
    );
    // Locked already: nothing changes.
    let o = sb.cmd(&["lock", name]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("nothing to pin"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), locked);
    assert_eq!(sb.read(name), recipe);
}

/// The engines to compare, each once: the machine's (DOCKER_HOST, else the default socket)
/// and the two of ci/engines.sh (Docker 28.5, classic and containerd stores), from the
/// environment, else asked of the script. An engine reached by two addresses (DOCKER_HOST at
/// a 28.5 engine, as ci/test.sh's step 11 sets it) counts once, by the ID `docker info`
/// gives. A 28.5 engine that is not running fails the test under RDNA1_REQUIRE_DOCKER=1, else
/// is a recorded skip (src/test_skip.rs) of its part of the comparison.
fn engines(test: &str) -> Vec<(String, String)> {
    let mut candidates = vec![("machine".to_string(), machine_engine())];
    for (label, var, host) in engines_28() {
        let up = host.as_ref().is_some_and(|h| {
            Command::new("docker")
                .env("DOCKER_HOST", h)
                .args(["image", "inspect", "rdna1-test-base:bookworm"])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        });
        match host {
            Some(h) if up => candidates.push((label.to_string(), h)),
            _ if std::env::var("RDNA1_REQUIRE_DOCKER").as_deref() == Ok("1") => panic!(
                "{test}: the {label} engine ({var}) is not running with the test base: `bash ci/engines.sh start`"
            ),
            _ => skip(&format!(
                "{test} on {label}: {var} is not running with the test base, so this engine is not compared (bash ci/engines.sh start; RDNA1_REQUIRE_DOCKER=1 makes this a failure)"
            )),
        }
    }
    let mut seen_ids: Vec<String> = vec![];
    let mut hosts = vec![];
    for (label, host) in candidates {
        let id = docker_at(&host, &["info", "--format", "{{.ID}}"]);
        assert!(
            !id.is_empty(),
            "{test}: the {label} engine at {host} gives no ID in `docker info`"
        );
        if seen_ids.contains(&id) {
            eprintln!("REPORT {label} ({host}) is an engine already listed: compared once");
            continue;
        }
        seen_ids.push(id);
        hosts.push((label, host));
    }
    hosts
}

fn docker_at(host: &str, args: &[&str]) -> String {
    let o = Command::new("docker")
        .env("DOCKER_HOST", host)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn the_same_inputs_give_the_same_layers_and_config_on_every_engine() {
    if !require_base("canonical_across_engines") {
        return;
    }
    let engines = engines("canonical_across_engines");
    // One engine compared with itself proves nothing.
    if engines.len() < 2 {
        assert_ne!(
            std::env::var("RDNA1_REQUIRE_DOCKER").as_deref(),
            Ok("1"),
            "canonical_across_engines: one engine only ({engines:?}): `bash ci/engines.sh start`"
        );
        skip(&format!(
            "canonical_across_engines: one engine only ({}), nothing to compare it with (bash ci/engines.sh start)",
            engines[0].1
        ));
        return;
    }
    let (sb, name) = repro_sandbox();
    // An ENV of its own makes every RUN of this recipe a vertex no concurrent test shares:
    // Docker 20.10's BuildKit merges equal vertices of concurrent builds (moby/buildkit#2303),
    // and the layers compared here must come from this build alone.
    let recipe =
        sb.read(&name)
            .replacen("env:\n", &format!("env:\n  RDNA1_TEST_UNIQUE: {name}\n"), 1);
    assert!(
        recipe.contains("RDNA1_TEST_UNIQUE"),
        "fixture-repro has an env: block"
    );
    sb.write(&name, &recipe);
    let mut seen: Vec<(String, Vec<String>, String)> = vec![];
    for (label, host) in &engines {
        let o = sb.cmd_env(
            &["build", &name, "--smoke", "skip", "--no-cache", "--json"],
            &[("DOCKER_HOST", host)],
        );
        assert_eq!(o.status.code(), Some(0), "{label}: {}", text(&o));
        let b = &json(&o)[0];
        let id = b["image_id"].as_str().unwrap().to_string();
        let layers = strings(&b["layers"]);
        let inspected: Vec<String> = serde_json::from_str(&docker_at(
            host,
            &[
                "image",
                "inspect",
                "--format",
                "{{json .RootFS.Layers}}",
                &id,
            ],
        ))
        .unwrap();
        assert_eq!(inspected, layers, "{label}: the engine's view of {id}");
        let config = docker_at(
            host,
            &[
                "image",
                "inspect",
                "--format",
                "{{json .Config}} {{.Created}}",
                &id,
            ],
        );
        eprintln!("REPORT {label}: image {id}\nREPORT   layers {layers:?}");
        // The push way (the default here) and the save way make the same image.
        let o = sb.cmd_env(
            &["build", &name, "--smoke", "skip", "--no-cache", "--json"],
            &[("DOCKER_HOST", host), ("RDNA1_IMAGES_NORMALISE", "save")],
        );
        assert_eq!(o.status.code(), Some(0), "{label}, save: {}", text(&o));
        assert_eq!(
            json(&o)[0]["image_id"].as_str(),
            Some(id.as_str()),
            "{label}: the save way made another image than the push way"
        );
        // An untested build is left untagged: remove it, it was only for this comparison.
        docker_at(host, &["rmi", &id]);
        assert!(
            docker_at(host, &["image", "ls", "-q", "--no-trunc"])
                .lines()
                .all(|l| l != id),
            "{label}: {id} is still there"
        );
        seen.push((label.clone(), layers, config));
    }
    let (first, layers, config) = &seen[0];
    for (label, l, c) in &seen[1..] {
        assert_eq!(l, layers, "layers on {label} differ from those on {first}");
        assert_eq!(c, config, "config on {label} differs from that on {first}");
    }
}

/// The tool in a network namespace of its own: its 127.0.0.1 is not the engine's, as with an
/// engine in a VM or rootless docker's namespace. None when `unshare` cannot do that here.
fn own_loopback() -> Option<[&'static str; 5]> {
    let ok = Command::new("unshare")
        .args(["-n", "sh", "-c", "ip link set lo up"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then_some([
        "unshare",
        "-n",
        "sh",
        "-c",
        "ip link set lo up && exec \"$0\" \"$@\"",
    ])
}

#[test]
fn an_engine_that_cannot_reach_our_loopback_gets_the_save_way_and_the_same_image() {
    let test = "normalise_fallback";
    if !require_base(test) {
        return;
    }
    let Some(wrap) = own_loopback() else {
        assert_ne!(
            std::env::var("RDNA1_REQUIRE_DOCKER").as_deref(),
            Ok("1"),
            "{test}: `unshare -n` with `ip` is needed (root, util-linux, iproute2)"
        );
        skip(&format!(
            "{test}: no `unshare -n` with `ip` here (root, util-linux, iproute2)"
        ));
        return;
    };
    let (sb, name) = unique_fixture_ok();
    let args = [
        "build",
        name.as_str(),
        "--smoke",
        "skip",
        "--no-cache",
        "--json",
    ];
    let o = sb.cmd_env(&args, &[("RDNA1_IMAGES_NORMALISE", "push")]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let id = json(&o)[0]["image_id"].as_str().unwrap().to_string();
    docker_at(&machine_engine(), &["rmi", &id]);

    let o = sb.cmd_in(&wrap, &args, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("reading the whole image from a save instead"),
        "the fallback is said: {err}"
    );
    assert_eq!(json(&o)[0]["image_id"].as_str(), Some(id.as_str()));
    docker_at(&machine_engine(), &["rmi", &id]);

    // Forced, the push way fails, says why, and leaves no name or image behind.
    let o = sb.cmd_in(&wrap, &args, &[("RDNA1_IMAGES_NORMALISE", "push")]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("127.0.0.1") && err.contains("normalising"),
        "{err}"
    );
    let names = docker_at(
        &machine_engine(),
        &["image", "ls", "--format", "{{.Repository}}"],
    );
    assert!(
        !names.contains("rdna1-images-normalise"),
        "a sink name is left: {names}"
    );
    let left = docker_at(
        &machine_engine(),
        &[
            "image",
            "ls",
            "-q",
            "--filter",
            &format!("label=io.github.rdna1-images.recipe={name}"),
        ],
    );
    assert!(left.is_empty(), "images of {name} left: {left}");

    let o = sb.cmd_env(&args, &[("RDNA1_IMAGES_NORMALISE", "sideways")]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("RDNA1_IMAGES_NORMALISE is \"sideways\""),
        "{}",
        text(&o)
    );
}

#[test]
fn a_cached_rebuild_takes_its_layers_in_a_second_push_and_makes_the_same_image() {
    let test = "normalise_second_push";
    if !require_base(test) {
        return;
    }
    let (sb, name) = unique_fixture_ok();
    let push = [("RDNA1_IMAGES_NORMALISE", "push")];
    let o = sb.cmd_env(
        &[
            "-v",
            "build",
            &name,
            "--smoke",
            "skip",
            "--no-cache",
            "--json",
        ],
        &push,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let first = json(&o)[0]["image_id"].as_str().unwrap().to_string();
    // The same layers from BuildKit's cache: the engine pushed them once (to the first
    // run's registry), so the classic store asks about them instead of sending them, and
    // the containerd store always does. Either way a second push fetches them.
    let o = sb.cmd_env(
        &["-v", "build", &name, "--smoke", "skip", "--force", "--json"],
        &push,
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("2 push(es) of the built image") && err.contains("0 MB of base layers read"),
        "{err}"
    );
    assert_eq!(json(&o)[0]["image_id"].as_str(), Some(first.as_str()));
    docker_at(&machine_engine(), &["rmi", &first]);
}

/// fixture-ok under a fresh name, with steps no concurrent test shares (moby/buildkit#2303:
/// Docker 20.10 panics merging equal vertices of concurrent builds).
fn unique_fixture_ok() -> (Sandbox, String) {
    let mut sb = Sandbox::new();
    let name = sb.recipe("fixture-ok");
    let recipe =
        sb.read(&name)
            .replacen("env:\n", &format!("env:\n  RDNA1_TEST_UNIQUE: {name}\n"), 1);
    assert!(
        recipe.contains("RDNA1_TEST_UNIQUE"),
        "fixture-ok has an env: block"
    );
    sb.write(&name, &recipe);
    (sb, name)
}
