//! `lock` against a package index on loopback: the therock recipe as it ships (versions in
//! the recipe, an empty lock) gets a lock file with every missing file and sha256 from a
//! PEP 503 index served by `python3 -m http.server`, chosen as pip would for CPython 3.13 and
//! glibc 2.41; `build` without a lock resolves it itself, `--locked` refuses, and
//! `lock --verify` catches a file replaced under the same version. The recipe file is never
//! written, even by a `lock` killed mid-write. No Docker: the engine is pointed at a socket
//! that does not exist, so the base digest is reported as left, not resolved.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use sha2::{Digest, Sha256};

/// The real recipe, so the test locks exactly what ships.
fn therock_text() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/therock.yaml"))
        .unwrap()
}

fn canonical(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

fn sha(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// One package the index serves: its files (name -> bytes) and whether the page publishes
/// each file's hash (lock must download and hash the others itself).
struct Project {
    files: Vec<(String, Vec<u8>)>,
    publish_hash: bool,
}

fn write_index(root: &Path, projects: &BTreeMap<String, Project>) {
    for (name, p) in projects {
        let dir = root.join("simple").join(canonical(name));
        std::fs::create_dir_all(&dir).unwrap();
        let mut html = format!("<!DOCTYPE html>\n<html><body><h1>Links for {name}</h1>\n");
        for (file, data) in &p.files {
            std::fs::create_dir_all(root.join("files")).unwrap();
            std::fs::write(root.join("files").join(file), data).unwrap();
            let href = format!("../../files/{}", file.replace('+', "%2B"));
            let frag = if p.publish_hash {
                format!("#sha256={}", sha(data))
            } else {
                String::new()
            };
            html.push_str(&format!("<a href=\"{href}{frag}\">{file}</a><br/>\n"));
        }
        html.push_str("</body></html>\n");
        std::fs::write(dir.join("index.html"), html).unwrap();
    }
}

/// The packages of the recipe still to be locked, as (name, version, sdist).
fn pending(text: &str) -> Vec<(String, String, bool)> {
    let v: serde_yaml::Value = serde_yaml::from_str(text).unwrap();
    v["pytorch"]["wheels"]["packages"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|p| p.get("sha256").is_none())
        .map(|p| {
            let version = match &p["version"] {
                serde_yaml::Value::String(s) => s.clone(),
                other => serde_yaml::to_string(other).unwrap().trim().to_string(),
            };
            (
                p["name"].as_str().unwrap().to_string(),
                version,
                p.get("sdist").and_then(|s| s.as_bool()).unwrap_or(false),
            )
        })
        .collect()
}

/// A generated file for each pending package: the one pip would take on Debian 13 (cp313,
/// manylinux_2_28 x86_64, or the sdist), plus decoys lock must not pick: a manylinux floor
/// above glibc 2.41 (pip would rank it first if it could install it), a pure wheel and an
/// older floor (ranked below), other CPython, other version, Windows.
fn projects(
    text: &str,
) -> (
    BTreeMap<String, Project>,
    BTreeMap<String, (String, String)>,
) {
    let mut projects = BTreeMap::new();
    let mut expect = BTreeMap::new();
    for (i, (name, version, sdist)) in pending(text).into_iter().enumerate() {
        let dist = name.replace('-', "_");
        let right = if sdist {
            format!("{dist}-{version}.tar.gz")
        } else if name.starts_with("amd-") || name.starts_with("rocm-sdk") {
            format!("{dist}-{version}-py3-none-linux_x86_64.whl")
        } else {
            format!("{dist}-{version}-cp313-cp313-manylinux_2_28_x86_64.whl")
        };
        let data = format!("generated {right}\n").into_bytes();
        expect.insert(name.clone(), (right.replace('+', "%2B"), sha(&data)));
        let mut files = vec![(right.clone(), data)];
        if !sdist {
            for decoy in [
                format!("{dist}-{version}-cp313-cp313-manylinux_2_42_x86_64.whl"),
                // Ranked below a cp313 manylinux_2_28 wheel (not below a pure device wheel:
                // the device packages get a pure decoy only).
                if right.contains("-cp313-") {
                    format!("{dist}-{version}-cp313-cp313-manylinux2014_x86_64.whl")
                } else {
                    format!("{dist}-{version}-cp312-abi3-linux_aarch64.whl")
                },
                format!("{dist}-{version}-py3-none-any.whl"),
                format!("{dist}-{version}-cp312-cp312-linux_x86_64.whl"),
                format!("{dist}-0.0.1-cp313-cp313-linux_x86_64.whl"),
                format!("{dist}-{version}-cp313-cp313-win_amd64.whl"),
            ] {
                let d = format!("decoy {decoy}\n").into_bytes();
                files.push((decoy, d));
            }
        }
        projects.insert(
            name,
            Project {
                files,
                publish_hash: i % 2 == 0,
            },
        );
    }
    (projects, expect)
}

/// No engine: the base digest cannot be asked for, everything else needs none.
const NO_ENGINE: (&str, &str) = ("DOCKER_HOST", "unix:///nonexistent/rdna1-images-test.sock");

/// The lock file's entries: name -> (url, sha256, file).
fn lock_entries(text: &str) -> BTreeMap<String, (String, String, String)> {
    let mut out = BTreeMap::new();
    let mut cur: Option<(String, BTreeMap<String, String>)> = None;
    for line in text.lines().chain(std::iter::once("package end 0")) {
        let Some((k, v)) = line.split_once(' ') else {
            continue;
        };
        if k == "package" {
            if let Some((n, f)) = cur.take() {
                out.insert(
                    n,
                    (f["url"].clone(), f["sha256"].clone(), f["file"].clone()),
                );
            }
            cur = Some((v.split(' ').next().unwrap().to_string(), BTreeMap::new()));
        } else if let Some((_, f)) = cur.as_mut() {
            f.insert(k.to_string(), v.to_string());
        }
    }
    out
}

#[test]
fn lock_writes_a_lock_file_as_pip_would_choose_and_verify_catches_a_swap() {
    let original = therock_text();
    assert!(
        original.contains("lock_pending:"),
        "the shipped recipe pins versions only"
    );
    let root = tempfile::tempdir().unwrap();
    let (projects, expect) = projects(&original);
    assert!(expect.len() >= 15, "{expect:?}");
    write_index(root.path(), &projects);
    let server = FolderServer::start(root.path());
    let index = server.url("simple/");

    let sb = Sandbox::new();
    let recipe = original.replace(
        "index: https://stable.repo.amd.com/rocm/whl-next/",
        &format!("index: {index}"),
    );
    assert_ne!(recipe, original);
    sb.write("therock", &recipe);
    let lock_path = sb.dir.path().join("therock.lock");

    // Before: check accepts it, --strict names the packages the lock lacks, a --locked
    // build refuses them (exit 2, before any engine is asked).
    let o = sb.cmd(&["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = sb.cmd(&["check", "--strict"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    for name in expect.keys() {
        assert!(
            out.contains(&format!("`{name}` ")) && out.contains("hash is still to be locked"),
            "{name}: {out}"
        );
    }
    let o = sb.cmd_env(
        &["build", "therock", "--smoke", "skip", "--locked"],
        &[NO_ENGINE],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--locked forbids resolving") && err.contains("torch 2.12.0+rocm10.1.0"),
        "{err}"
    );
    assert!(!lock_path.exists(), "--locked wrote nothing");

    let o = sb.cmd_env(&["lock", "therock"], &[NO_ENGINE]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        stdout.contains("left") && stdout.contains("base"),
        "{stdout}"
    );
    assert_eq!(sb.read("therock"), recipe, "the recipe is never written");
    let locked = std::fs::read_to_string(&lock_path).unwrap();
    let entries = lock_entries(&locked);
    assert_eq!(entries.len(), expect.len(), "{locked}");
    for (name, (file, hash)) in &expect {
        let (url, sha, fname) = &entries[name];
        assert_eq!(
            url,
            &server.url(&format!("files/{file}")),
            "{name}: {locked}"
        );
        assert_eq!(fname, &file.replace("%2B", "+"), "{name}");
        assert_eq!(sha, hash, "{name}");
    }
    // Hashed in the recipe: not in the lock.
    assert!(!locked.contains("package setuptools"), "{locked}");

    // After: fully pinned, the Dockerfile has no guard and labels the lock's digest.
    let o = sb.cmd(&["check", "--strict"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = sb.cmd(&["render", "therock"]);
    let df = String::from_utf8_lossy(&o.stdout);
    assert!(!df.contains("is not locked"), "{df}");
    let lock_digest = sha(locked.as_bytes());
    assert!(
        df.contains(&format!(
            "io.github.rdna1-images.lock=\"sha256:{lock_digest}\""
        )),
        "{df}"
    );

    // Nothing changed on the index: --verify passes, says what it checked and what not.
    let o = sb.cmd_env(&["lock", "therock", "--verify"], &[NO_ENGINE]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("same   ") && out.contains("torch 2.12.0"),
        "{out}"
    );
    assert!(
        out.contains("skip   ")
            && out.contains("numpy 2.5.5: hashed in the recipe, from pip's default index"),
        "{out}"
    );

    // A lock killed half-way through writing: the recipe and the old lock stay whole.
    let partial = locked.replacen("package torch ", "package torch-gone ", 1);
    std::fs::write(&lock_path, &partial).unwrap();
    let o = sb.cmd_env(
        &["lock", "therock"],
        &[NO_ENGINE, ("RDNA1_IMAGES_TEST_ABORT_MID_WRITE", "1")],
    );
    assert_eq!(o.status.code(), None, "killed by the hook: {}", text(&o));
    assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), partial);
    assert_eq!(sb.read("therock"), recipe);
    let o = sb.cmd_env(&["lock", "therock"], &[NO_ENGINE]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), locked);

    // The same version rebuilt under the same name: --verify fails, names it, writes nothing.
    let torch = &projects["torch"].files[0].0;
    let mut swapped = BTreeMap::new();
    swapped.insert(
        "torch".to_string(),
        Project {
            files: vec![(torch.clone(), b"rebuilt torch, same version\n".to_vec())],
            publish_hash: true,
        },
    );
    write_index(root.path(), &swapped);
    let o = sb.cmd_env(&["lock", "therock", "--verify"], &[NO_ENGINE]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("torch 2.12.0+rocm10.1.0"), "{err}");
    assert!(
        err.contains(&sha(b"rebuilt torch, same version\n")),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&lock_path).unwrap(),
        locked,
        "nothing written"
    );
}

/// `build` with no lock resolves it first and says so, loudly, before it needs an engine.
#[test]
fn build_without_a_lock_resolves_and_writes_it_first() {
    let original = therock_text();
    let root = tempfile::tempdir().unwrap();
    let (projects, expect) = projects(&original);
    write_index(root.path(), &projects);
    let server = FolderServer::start(root.path());
    let sb = Sandbox::new();
    sb.write(
        "therock",
        &original.replace(
            "index: https://stable.repo.amd.com/rocm/whl-next/",
            &format!("index: {}", server.url("simple/")),
        ),
    );
    let o = sb.cmd_env(&["build", "therock", "--smoke", "skip"], &[NO_ENGINE]);
    // The engine is missing (exit 3), after the lock was written.
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("LOCK: therock pins") && err.contains("LOCK: pinned torch 2.12.0+rocm10.1.0"),
        "{err}"
    );
    let lock = std::fs::read_to_string(sb.dir.path().join("therock.lock")).unwrap();
    assert_eq!(lock_entries(&lock).len(), expect.len(), "{lock}");
}

#[test]
fn lock_says_which_version_is_missing_and_an_unreachable_index_is_the_environment() {
    let root = tempfile::tempdir().unwrap();
    let original = therock_text();
    let (mut projects, _) = projects(&original);
    // The index has torch, but only another version.
    projects.insert(
        "torch".into(),
        Project {
            files: vec![(
                "torch-2.11.0+rocm10.1.0-cp313-cp313-linux_x86_64.whl".into(),
                b"old".to_vec(),
            )],
            publish_hash: true,
        },
    );
    write_index(root.path(), &projects);
    let server = FolderServer::start(root.path());
    let sb = Sandbox::new();
    let with_index = |index: &str| {
        original.replace(
            "index: https://stable.repo.amd.com/rocm/whl-next/",
            &format!("index: {index}"),
        )
    };
    let recipe = with_index(&server.url("simple/"));
    sb.write("therock", &recipe);
    let o = sb.cmd_env(&["lock", "therock"], &[NO_ENGINE]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no wheel for CPython 3.13 on linux x86_64 with glibc 2.41 of `torch` 2.12.0+rocm10.1.0")
            && err.contains("versions listed: 2.11.0+rocm10.1.0"),
        "{err}"
    );
    assert_eq!(sb.read("therock"), recipe, "nothing written");

    // A closed port: exit 3, the environment, not the recipe.
    drop(server);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    sb.write(
        "therock",
        &with_index(&format!("http://127.0.0.1:{port}/simple/")),
    );
    let o = sb.cmd_env(&["lock", "therock"], &[NO_ENGINE]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot reach it"),
        "{}",
        text(&o)
    );
}

/// An app is locked like a stack: the fixture app on the shipped therock stack, its two
/// packages pinned by version only, resolved on pip's configured index (PIP_INDEX_URL on
/// loopback here) for the stack's CPython 3.13 and glibc. Before the lock, render and a
/// `--locked` build refuse it naming the lock and the command to run; the lock records file
/// and hash (no index host), round-trips, `--verify` catches a swap, and a hostile lock
/// value is refused with file, line and key.
#[test]
fn an_app_is_locked_from_pips_index_and_refused_without_its_lock() {
    let root = tempfile::tempdir().unwrap();
    let mut projects = BTreeMap::new();
    for (name, version) in [("tiny_dep", "1.2.0"), ("other-dep", "0.3.1")] {
        let file = format!("{}-{version}-py3-none-any.whl", name.replace('-', "_"));
        projects.insert(
            name.to_string(),
            Project {
                files: vec![(file, format!("{name} {version}\n").into_bytes())],
                publish_hash: name == "tiny_dep",
            },
        );
    }
    write_index(root.path(), &projects);
    let server = FolderServer::start(root.path());
    let pip_index = ("PIP_INDEX_URL", server.url("simple"));
    let env = [NO_ENGINE, (pip_index.0, pip_index.1.as_str())];

    let sb = Sandbox::new();
    sb.write("therock", &therock_text());
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/apps");
    std::fs::create_dir_all(sb.dir.path().join("apps")).unwrap();
    std::fs::copy(
        fixtures.join("server.py"),
        sb.dir.path().join("apps/server.py"),
    )
    .unwrap();
    let app = std::fs::read_to_string(fixtures.join("fixture-app.yaml"))
        .unwrap()
        .replace("stack: STACK", "stack: therock")
        .replace(
            "source_date_epoch:",
            "python_packages:\n  - name: tiny_dep\n    version: \"1.2.0\"\n  - name: other-dep\n    version: \"0.3.1\"\nsource_date_epoch:",
        );
    sb.write("fixture-app", &app);
    let lock_path = sb.dir.path().join("fixture-app.lock");
    let dir = sb.dir.path().display().to_string();

    // No lock: render and a --locked build refuse, naming the lock and what to run.
    for args in [
        &["render", "fixture-app"][..],
        &["build", "fixture-app", "--smoke", "skip", "--locked"][..],
        // --all takes the apps too (after the stacks), each checked before any build.
        &["build", "--all", "--smoke", "skip", "--locked"][..],
    ] {
        let o = sb.cmd_env(args, &env);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("{dir}/fixture-app.lock"))
                && err.contains(&format!("rdna1-images --recipes {dir} lock fixture-app"))
                && err.contains("tiny_dep 1.2.0"),
            "{args:?}: {err}"
        );
    }
    let o = sb.cmd_env(&["lock", "fixture-app", "--locked"], &env);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(!lock_path.exists(), "--locked wrote nothing");

    let o = sb.cmd_env(&["lock", "fixture-app"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let locked = std::fs::read_to_string(&lock_path).unwrap();
    for (name, p) in &projects {
        let (file, data) = &p.files[0];
        assert!(
            locked.contains(&format!("file {file}\n"))
                && locked.contains(&format!("sha256 {}\n", sha(data))),
            "{name}: {locked}"
        );
    }
    assert!(
        !locked.contains("127.0.0.1") && !locked.contains("\nurl ") && !locked.contains("\nindex "),
        "no index host in an app's lock: {locked}"
    );
    assert!(sb.read("fixture-app") == app, "the recipe is never written");

    // Round trip: a second lock changes nothing; render and the --locked check accept it.
    let o = sb.cmd_env(&["lock", "fixture-app"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("nothing to pin"));
    assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), locked);
    let o = sb.cmd_env(&["render", "fixture-app"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = sb.cmd_env(&["list"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = sb.cmd_env(&["lock", "fixture-app", "--verify", "--locked"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("same   ") && out.contains("tiny_dep 1.2.0"),
        "{out}"
    );
    let hash = sha(&projects["tiny_dep"].files[0].1);

    // The same version rebuilt on the index: --verify fails (1), names it, writes nothing.
    let mut swapped = BTreeMap::new();
    swapped.insert(
        "other-dep".to_string(),
        Project {
            files: vec![(
                projects["other-dep"].files[0].0.clone(),
                b"rebuilt\n".to_vec(),
            )],
            publish_hash: true,
        },
    );
    write_index(root.path(), &swapped);
    let o = sb.cmd_env(&["lock", "fixture-app", "--verify"], &env);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("other-dep 0.3.1") && err.contains(&sha(b"rebuilt\n")),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), locked);

    // Hostile values: a bad hash, a bad name, an unknown key; each names file, line and key.
    for (from, to, want) in [
        (
            format!("sha256 {hash}"),
            "sha256 xyz".to_string(),
            "`sha256`",
        ),
        (
            "package tiny_dep 1.2.0".to_string(),
            "package tiny$dep 1.2.0".to_string(),
            "tiny$dep",
        ),
        (
            format!("sha256 {hash}"),
            format!("sha256 {hash}\ncolour red"),
            "unknown key `colour`",
        ),
    ] {
        let bad = locked.replacen(&from, &to, 1);
        assert_ne!(bad, locked, "{from}");
        std::fs::write(&lock_path, &bad).unwrap();
        let line = bad
            .lines()
            .position(|l| l.starts_with(to.lines().last().unwrap()))
            .unwrap()
            + 1;
        let o = sb.cmd_env(&["render", "fixture-app"], &env);
        assert_eq!(o.status.code(), Some(2), "{to}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("{dir}/fixture-app.lock:{line}:")) && err.contains(want),
            "{to}: {err}"
        );
    }
}
