//! A recipe with versions only builds from a fresh state against a PEP 503 index on
//! loopback: the first `build` resolves and writes the lock (choosing the wheel pip would on
//! the base: CPython 3.11, glibc 2.36), installs with `--require-hashes` and labels the
//! image with the lock's digest; a rebuild with the index stopped never asks it; `--locked`
//! refuses a lock with an entry missing. Against the engine in DOCKER_HOST (run once per
//! engine: 20.10, 28.5 classic, 28.5 containerd).
//!
//! The test base has no pip, so the test derives one with the machine's own pip wheel
//! (Debian's python3-pip-whl), built with --network none. The build reaches the loopback
//! index through `--network host` (these engines run in the host's network namespace).

mod common;

use std::process::Command;

use common::*;
use sha2::{Digest, Sha256};

/// Makes installable wheels and a PEP 503 index of them under `root`: `lockdemo` 1.0 in
/// several builds (the right one says so when imported), `puredemo` 2.0 pure, its page
/// without hashes (lock downloads and hashes it).
const MAKE_INDEX: &str = r##"
import base64, hashlib, os, sys, zipfile
root = sys.argv[1]
os.makedirs(f"{root}/files", exist_ok=True)
def wheel(name, version, tag, chosen):
    fn = f"{name}-{version}-{tag}.whl"
    di = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"CHOSEN = {chosen!r}\n",
        f"{di}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{di}/WHEEL": "Wheel-Version: 1.0\nGenerator: rdna1-test\nRoot-Is-Purelib: true\n"
            + "".join(f"Tag: {t}\n" for t in [tag]),
    }
    record = ""
    for p, d in files.items():
        h = base64.urlsafe_b64encode(hashlib.sha256(d.encode()).digest()).rstrip(b"=").decode()
        record += f"{p},sha256={h},{len(d)}\n"
    record += f"{di}/RECORD,,\n"
    files[f"{di}/RECORD"] = record
    with zipfile.ZipFile(f"{root}/files/{fn}", "w") as z:
        for p, d in files.items():
            z.writestr(zipfile.ZipInfo(p, (2025, 1, 1, 0, 0, 0)), d)
    return fn
def page(name, fns, hashes):
    os.makedirs(f"{root}/simple/{name}", exist_ok=True)
    with open(f"{root}/simple/{name}/index.html", "w") as f:
        f.write(f"<!DOCTYPE html><html><body><h1>Links for {name}</h1>\n")
        for fn in fns:
            frag = ""
            if hashes:
                frag = "#sha256=" + hashlib.sha256(open(f"{root}/files/{fn}", "rb").read()).hexdigest()
            f.write(f'<a href="../../files/{fn}{frag}">{fn}</a><br/>\n')
        f.write("</body></html>\n")
page("lockdemo", [
    wheel("lockdemo", "1.0", "cp311-cp311-manylinux_2_39_x86_64", "manylinux_2_39 (above glibc 2.36)"),
    wheel("lockdemo", "1.0", "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64", "right"),
    wheel("lockdemo", "1.0", "cp311-cp311-manylinux1_x86_64", "manylinux1 (older floor)"),
    wheel("lockdemo", "1.0", "cp312-cp312-manylinux_2_17_x86_64", "cp312"),
    wheel("lockdemo", "1.0", "py3-none-any", "pure"),
    wheel("lockdemo", "0.9", "cp311-cp311-manylinux_2_17_x86_64", "0.9"),
], True)
page("puredemo", [wheel("puredemo", "2.0", "py3-none-any", "right")], False)
"##;

/// A derived base with pip, removed on drop.
struct PipBase(String);

impl PipBase {
    fn make() -> Option<PipBase> {
        let whl = std::fs::read_dir("/usr/share/python-wheels")
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("pip-") && n.ends_with(".whl"))
            })?;
        let name = whl.file_name().unwrap().to_str().unwrap().to_string();
        let ctx = tempfile::tempdir().unwrap();
        std::fs::copy(&whl, ctx.path().join(&name)).unwrap();
        std::fs::write(
            ctx.path().join("Dockerfile"),
            format!(
                "FROM rdna1-test-base:bookworm\nCOPY {name} /tmp/{name}\n\
                 RUN python3 /tmp/{name}/pip install --no-index --break-system-packages /tmp/{name} && rm /tmp/{name}\n"
            ),
        )
        .unwrap();
        let tag = format!("rdna1-test-pip-{}:latest", std::process::id());
        let o = Command::new("docker")
            .args(["build", "-q", "--network", "none", "-t", &tag])
            .arg(ctx.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "derived pip base: {}", text(&o));
        Some(PipBase(tag))
    }
}

impl Drop for PipBase {
    fn drop(&mut self) {
        let _ = docker(&["rmi", &self.0]);
    }
}

fn recipe(name: &str, base: &str, index: &str) -> String {
    let ok = std::fs::read_to_string(fixtures().join("recipes/fixture-ok.yaml")).unwrap();
    let smoke = &ok[ok.find("smoke:\n").unwrap()..];
    format!(
        "name: {name}\n\
         description: wheels locked from a loopback index\n\
         status: experimental\n\
         rocm: none\n\
         base:\n  image: {base}\n  unpinned_reason: local test image, never pulled\n  glibc: \"2.36\"\n\
         gpu:\n  target: gfx1010\n  targets:\n    gfx1010: \"10.3.0\"\n\
         python:\n  version: \"3.11\"\n  bin: python3\n  externally_managed: true\n\
         pytorch:\n  wheels:\n    torch_version: 1.13.0a0\n    index: {index}\n\
         \x20   lock_pending: the test's index\n    packages:\n\
         \x20     - name: lockdemo\n        version: \"1.0\"\n\
         \x20     - name: puredemo\n        version: \"2.0\"\n\
         steps:\n  - \"python3 -c 'import lockdemo, puredemo; print(lockdemo.CHOSEN); assert lockdemo.CHOSEN == puredemo.CHOSEN == \\\"right\\\"'\"\n\
         {smoke}"
    )
}

fn sha(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

#[test]
fn a_versions_only_recipe_builds_from_a_fresh_state_and_then_from_its_lock() {
    if !require_base("a_versions_only_recipe_builds_from_a_fresh_state_and_then_from_its_lock") {
        return;
    }
    let Some(base) = PipBase::make() else {
        panic!("no pip wheel in /usr/share/python-wheels (Debian's python3-pip-whl)");
    };
    let root = tempfile::tempdir().unwrap();
    let o = Command::new("python3")
        .args(["-c", MAKE_INDEX])
        .arg(root.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let server = FolderServer::start(root.path());
    let index = server.url("simple/");

    let mut sb = Sandbox::new();
    let name = sb.recipe("fixture-ok");
    sb.write(&name, &recipe(&name, &base.0, &index));
    let state = tempfile::tempdir().unwrap();
    let env = [
        ("XDG_STATE_HOME", state.path().to_str().unwrap()),
        ("XDG_CACHE_HOME", state.path().to_str().unwrap()),
    ];
    let lock_path = sb.dir.path().join(format!("{name}.lock"));
    let build = |extra: &[&str]| {
        let mut args = vec![
            "build",
            name.as_str(),
            "--smoke",
            "skip",
            "--network",
            "host",
            "--json",
        ];
        args.extend_from_slice(extra);
        sb.cmd_env(&args, &env)
    };

    // Fresh: no lock. The build resolves it, says so, and installs what it pinned.
    let o = build(&[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.contains(&format!("LOCK: {name} pins 2 package(s)"))
            && err.contains("LOCK: pinned lockdemo 1.0: lockdemo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
            && err.contains(&format!("from {index}")),
        "{err}"
    );
    let lock = std::fs::read_to_string(&lock_path).unwrap();
    assert!(
        lock.contains(
            "file lockdemo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
        ) && lock.contains("file puredemo-2.0-py3-none-any.whl"),
        "{lock}"
    );
    let puredemo = std::fs::read(root.path().join("files/puredemo-2.0-py3-none-any.whl")).unwrap();
    assert!(
        lock.contains(&format!("sha256 {}", sha(&puredemo))),
        "{lock}"
    );
    let doc = json_result(&o);
    let id = doc[0]["image_id"].as_str().unwrap().to_string();
    let label = docker_out(&[
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"io.github.rdna1-images.lock\"}}",
        &id,
    ]);
    assert_eq!(label, format!("sha256:{}", sha(lock.as_bytes())));

    // The index stopped: the lock is complete, the tool asks nothing, the same inputs give
    // the same image (from the engine's cache).
    drop(server);
    let o = build(&["--locked"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("LOCK:"),
        "{}",
        text(&o)
    );
    assert_eq!(json_result(&o)[0]["image_id"].as_str(), Some(id.as_str()));

    // An entry missing: --locked names it and builds nothing.
    let cut = lock.find("\npackage puredemo").unwrap();
    std::fs::write(&lock_path, &lock[..cut + 1]).unwrap();
    let o = build(&["--locked"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("puredemo 2.0")
            || String::from_utf8_lossy(&o.stderr).contains("puredemo 2.0"),
        "{}",
        text(&o)
    );
    let _ = docker(&["rmi", &id]);
}
