//! A tag is a promise (issue 21): the image tagged is the image tested, runs that overlap
//! never undo each other, `clean` removes leftovers only, a skip makes the moving tag right,
//! a name that existed before a command exists after it, and a forced rebuild that gives
//! another image says so, file by file.
//!
//! Every recipe gets an ENV of its own (test name and a nonce): Docker 20.10's BuildKit
//! panics when concurrent builds share vertices and one is cancelled (moby#42414). `clean`
//! runs for real only scoped to this test's recipe (`--recipe`); unscoped it runs with
//! `--dry-run`, so other work on the shared engine is never touched.

mod common;

use std::time::Duration;

use common::*;

const LABEL_RECIPE: &str = "io.github.rdna1-images.recipe";

fn nonce() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    format!("{}-{}", std::process::id(), t.as_nanos())
}

/// A copy of `fixture` with an ENV of its own (and optional extra steps).
fn unique_recipe(sb: &mut Sandbox, fixture: &str, test: &str, steps: &[&str]) -> String {
    let name = sb.recipe(fixture);
    let mut y = sb.read(&name);
    // The smoke test is not what these tests are about: the two small cases only, with
    // room for a machine loaded by other tests (the xlarge case took over 60 s there).
    y = y
        .replace(
            "    - name: xlarge\n      in_channels: 64\n      out_channels: 128\n      size: 128\n",
            "",
        )
        .replace("case_timeout_s: 60\n", "case_timeout_s: 240\n")
        .replace("limit_s: 5\n", "limit_s: 60\n")
        .replace("limit_s: 10\n", "limit_s: 60\n");
    assert!(!y.contains("xlarge"), "{y}");
    y = y.replace(
        "env:\n",
        &format!("env:\n  RDNA1_TEST_NONCE: \"{test}-{}\"\n", nonce()),
    );
    if !steps.is_empty() {
        y.push_str("steps:\n");
        for s in steps {
            y.push_str(&format!("  - \"{s}\"\n"));
        }
    }
    sb.write(&name, &y);
    name
}

fn image_id(reference: &str) -> String {
    docker_out(&["image", "inspect", "--format", "{{.Id}}", reference])
}

fn short(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

/// Untagged images of a recipe (its label), e.g. what overlapping runs left.
fn dangling_of(recipe: &str) -> Vec<String> {
    docker_out(&[
        "images",
        "-q",
        "--no-trunc",
        "-f",
        "dangling=true",
        "-f",
        &format!("label={LABEL_RECIPE}={recipe}"),
    ])
    .lines()
    .map(String::from)
    .collect()
}

/// The pinned tag `<recipe>-<digest12>` of the recipe's current inputs, from `build --json`.
fn pinned_of(o: &std::process::Output, recipe: &str) -> String {
    let r = &json_result(o)[0];
    let d = r["input_digest"].as_str().unwrap();
    format!("rdna1-images:{recipe}-{}", &d["sha256:".len()..][..12])
}

fn spawn(sb: &Sandbox, args: &[&str]) -> Run {
    let registry = std::env::var("RDNA1_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into());
    let reg = format!("{registry}/rdna1-images-sandbox");
    spawn_group(
        sb,
        args,
        &[
            ("RDNA1_IMAGES_BUILD_NETWORK", "none"),
            ("RDNA1_IMAGES_REGISTRY", reg.as_str()),
        ],
    )
}

/// Failure 1: The container of the smoke test runs the image that then gets tagged and recorded.
#[test]
fn the_smoke_test_runs_the_image_that_gets_tagged() {
    if !require_base("the_smoke_test_runs_the_image_that_gets_tagged") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = unique_recipe(&mut sb, "fixture-ok", "tested", &[]);
    let o = sb.cmd(&["build", &name, "--smoke", "cpu", "--no-pull"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let tagged = image_id(&format!("rdna1-images:{name}"));
    let tested: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split("smoke test (cpu) of ").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(tested.len(), 1, "one smoke test: {out}");
    assert_eq!(
        tested[0],
        short(&tagged),
        "the smoke test ran {}, but rdna1-images:{name} is {}:\n{out}",
        tested[0],
        short(&tagged)
    );
}

/// Failure 2: Two and four builds of one recipe at once: every one passes, the later ones say whom
/// they wait for, and nothing of the recipe is left untagged.
#[test]
fn concurrent_builds_of_one_recipe_leave_nothing_and_agree() {
    if !require_base("concurrent_builds_of_one_recipe_leave_nothing_and_agree") {
        return;
    }
    for n in [2, 4] {
        let mut sb = Sandbox::new();
        let name = unique_recipe(&mut sb, "fixture-ok", &format!("concurrent{n}"), &[]);
        let args = [
            "build",
            name.as_str(),
            "--smoke",
            "cpu",
            "--force",
            "--no-pull",
        ];
        let runs: Vec<Run> = (0..n).map(|_| spawn(&sb, &args)).collect();
        let mut outs = vec![];
        for r in runs {
            let (code, out) = r.finish(Duration::from_secs(600));
            assert_eq!(code, Some(0), "{n} at once:\n{out}");
            outs.push(out);
        }
        let all = outs.join("\n-----\n");
        assert_eq!(
            dangling_of(&name),
            Vec::<String>::new(),
            "{n} at once:\n{all}"
        );
        assert!(containers_of(&name).is_empty(), "{all}");
        let o = sb.cmd(&["build", &name, "--smoke", "cpu", "--no-pull", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let pinned = pinned_of(&o, &name);
        assert_eq!(image_id(&pinned), image_id(&format!("rdna1-images:{name}")));
    }
}

/// Failure 2b: A second run of a recipe while the first holds it (paused in its smoke test) waits and
/// names the holder; when the first is interrupted, the second goes on and passes.
#[test]
fn a_second_run_of_a_recipe_waits_and_names_the_first() {
    if !require_base("a_second_run_of_a_recipe_waits_and_names_the_first") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = unique_recipe(&mut sb, "fixture-ok", "waits", &[]);
    let mut first = spawn_group(
        &sb,
        &["build", &name, "--smoke", "cpu", "--no-pull"],
        &[
            ("RDNA1_IMAGES_BUILD_NETWORK", "none"),
            ("RDNA1_IMAGES_PAUSE_AT", "smoke"),
        ],
    );
    first.wait_for("paused at smoke", Duration::from_secs(600));
    let mut second = spawn(&sb, &["build", &name, "--smoke", "cpu", "--no-pull"]);
    second.wait_for(
        &format!("waiting for pid {}", first.child.id()),
        Duration::from_secs(180),
    );
    first.sigint_group();
    let (code, out) = first.finish(Duration::from_secs(120));
    assert_eq!(code, Some(130), "{out}");
    let (code, out) = second.finish(Duration::from_secs(600));
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(dangling_of(&name), Vec::<String>::new(), "{out}");
}

/// Failure 2c: Builds of different recipes at once work side by side.
#[test]
fn concurrent_builds_of_different_recipes_both_pass() {
    if !require_base("concurrent_builds_of_different_recipes_both_pass") {
        return;
    }
    let mut sb = Sandbox::new();
    let a = unique_recipe(&mut sb, "fixture-ok", "diff-a", &[]);
    let b = unique_recipe(&mut sb, "fixture-ok", "diff-b", &[]);
    let ra = spawn(
        &sb,
        &["build", &a, "--smoke", "cpu", "--force", "--no-pull"],
    );
    let rb = spawn(
        &sb,
        &["build", &b, "--smoke", "cpu", "--force", "--no-pull"],
    );
    let (ca, oa) = ra.finish(Duration::from_secs(600));
    let (cb, ob) = rb.finish(Duration::from_secs(600));
    assert_eq!(ca, Some(0), "{oa}");
    assert_eq!(cb, Some(0), "{ob}");
    assert!(!oa.contains("waiting for pid"), "{oa}");
    assert!(!ob.contains("waiting for pid"), "{ob}");
    for n in [&a, &b] {
        assert_eq!(dangling_of(n), Vec::<String>::new(), "{oa}\n{ob}");
        docker_out(&["image", "inspect", &format!("rdna1-images:{n}")]);
    }
}

/// The containers `clean --dry-run` would remove.
fn clean_would_remove(sb: &Sandbox) -> String {
    let o = sb.cmd(&["clean", "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Failure 3: `clean` during a live `run`: the run's container is not a leftover.
#[test]
fn clean_spares_a_live_run() {
    if !require_base("clean_spares_a_live_run") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = unique_recipe(&mut sb, "fixture-ok", "clean-run", &[]);
    let o = sb.cmd(&["build", &name, "--smoke", "cpu", "--no-pull"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut run = spawn(
        &sb,
        &[
            "run",
            &name,
            "--cpu",
            // No network needed (and 20.10 here may have lost its docker0 bridge).
            "--network",
            "none",
            "--",
            "sh",
            "-c",
            "echo started >&2; sleep 8; echo still-alive >&2",
        ],
    );
    run.wait_for("started", Duration::from_secs(60));
    let live = containers_of(&name);
    assert_eq!(live.len(), 1, "{live:?}");
    let listed = clean_would_remove(&sb);
    assert!(
        !listed.contains(&live[0]),
        "clean --dry-run would remove the live run's container {}:\n{listed}",
        live[0]
    );
    let o = sb.cmd(&["clean", "--recipe", &name]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (code, out) = run.finish(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("still-alive"), "{out}");
}

/// Failure 3b: `clean` during a build's smoke test: neither the smoke container nor the candidate go.
#[test]
fn clean_spares_a_build_in_its_smoke_test() {
    if !require_base("clean_spares_a_build_in_its_smoke_test") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = unique_recipe(&mut sb, "fixture-ok", "clean-smoke", &[]);
    let mut build = spawn_group(
        &sb,
        &["build", &name, "--smoke", "cpu", "--no-pull"],
        &[
            ("RDNA1_IMAGES_BUILD_NETWORK", "none"),
            ("RDNA1_IMAGES_PAUSE_AT", "smoke"),
        ],
    );
    build.wait_for("paused at smoke", Duration::from_secs(300));
    let live = containers_of(&name);
    assert_eq!(live.len(), 1, "{live:?}");
    let candidate = docker_out(&["inspect", "--format", "{{.Image}}", &live[0]]);
    let listed = clean_would_remove(&sb);
    assert!(
        !listed.contains(&live[0]) && !listed.contains(&short(&candidate)),
        "clean --dry-run would remove the smoke container {} or its image {}:\n{listed}",
        live[0],
        short(&candidate)
    );
    let o = sb.cmd(&["clean", "--recipe", &name]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(containers_of(&name), live, "{}", text(&o));
    build.sigint_group();
    let (code, out) = build.finish(Duration::from_secs(120));
    assert_eq!(code, Some(130), "{out}");
    assert!(containers_of(&name).is_empty(), "{out}");
    assert_eq!(dangling_of(&name), Vec::<String>::new(), "{out}");
}

/// Failure 3c: A leftover is still removed: a stopped container of the tool whose owner is gone.
#[test]
fn clean_removes_a_dead_owners_container() {
    if !require_base("clean_removes_a_dead_owners_container") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = unique_recipe(&mut sb, "fixture-ok", "clean-dead", &[]);
    let created = docker_out(&[
        "create",
        "--label",
        "io.github.rdna1-images.managed=true",
        "--label",
        &format!("{LABEL_RECIPE}={name}"),
        "--label",
        "io.github.rdna1-images.owner=some-other-host:1:1",
        "rdna1-test-tiny:latest",
        "true",
    ]);
    let o = sb.cmd(&["clean", "--recipe", &name, "--dry-run"]);
    let out = text(&o);
    assert!(out.contains(&short(&created)), "{out}");
    assert_eq!(containers_of(&name).len(), 1);
    let o = sb.cmd(&["clean", "--recipe", &name]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(containers_of(&name).is_empty(), "{}", text(&o));
}

/// Failure 4: Build v1, change and build v2, revert and build: the skip moves the moving tag back.
#[test]
fn a_skip_moves_the_moving_tag_to_todays_inputs() {
    if !require_base("a_skip_moves_the_moving_tag_to_todays_inputs") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = unique_recipe(&mut sb, "fixture-ok", "revert", &[]);
    let v1 = sb.read(&name);
    let build = |sb: &Sandbox| {
        let o = sb.cmd(&["build", &name, "--smoke", "cpu", "--no-pull", "--json"]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        o
    };
    let pinned1 = pinned_of(&build(&sb), &name);
    sb.write(
        &name,
        &v1.replace("env:\n", "env:\n  RDNA1_TEST_V2: \"yes\"\n"),
    );
    let pinned2 = pinned_of(&build(&sb), &name);
    assert_ne!(pinned1, pinned2);
    let moving = format!("rdna1-images:{name}");
    assert_eq!(image_id(&moving), image_id(&pinned2));
    sb.write(&name, &v1);
    let o = build(&sb);
    let out = text(&o);
    assert!(out.contains("nothing to build"), "{out}");
    assert_eq!(
        image_id(&moving),
        image_id(&pinned1),
        "after the skip, {moving} still names v2's image:\n{out}"
    );
    assert!(out.contains(&format!("moved {moving}")), "{out}");
}

/// Failure 5: A registry name the user pulled is still there after a second push.
#[test]
fn push_keeps_a_name_the_user_had() {
    if !require_base("push_keeps_a_name_the_user_had") {
        return;
    }
    let Ok(registry) = std::env::var("RDNA1_TEST_REGISTRY") else {
        if std::env::var("RDNA1_REQUIRE_DOCKER").as_deref() == Ok("1") {
            panic!("push_keeps_a_name_the_user_had: RDNA1_TEST_REGISTRY is not set");
        }
        skip("push_keeps_a_name_the_user_had: no test registry");
        return;
    };
    let mut sb = Sandbox::new();
    let name = unique_recipe(&mut sb, "fixture-ok", "push-pull", &[]);
    let repo = format!("{registry}/rdna1-images-test");
    let env = [("RDNA1_IMAGES_REGISTRY", repo.as_str())];
    let o = sb.cmd_env(&["build", &name, "--smoke", "cpu", "--no-pull"], &env);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = sb.cmd_env(&["push", &name], &env);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let theirs = format!("{repo}:{name}-nightly");
    assert!(docker(&["pull", "-q", &theirs]).status.success());
    let o = sb.cmd_env(&["push", &name], &env);
    let out = text(&o);
    let still = docker(&["image", "inspect", &theirs]).status.success();
    let _ = docker(&["rmi", "--no-prune", &theirs]);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        still,
        "push removed {theirs}, which the user had pulled:\n{out}"
    );
}

/// Failure 6: A forced rebuild whose floating input changed gives another image: the output says so,
/// names the file that differs, and leaves the replaced image neither tagged nor dangling.
#[test]
fn a_forced_rebuild_that_drifts_reports_it_file_by_file() {
    if !require_base("a_forced_rebuild_that_drifts_reports_it_file_by_file") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = unique_recipe(&mut sb, "fixture-nonrepro", "drift", &[]);
    let o = sb.cmd(&["build", &name, "--smoke", "cpu", "--no-pull", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let pinned = pinned_of(&o, &name);
    let before = image_id(&pinned);
    // --no-cache: the RUN that writes the time runs again, as an apt package that moved.
    let o = sb.cmd(&[
        "build",
        &name,
        "--smoke",
        "cpu",
        "--no-pull",
        "--force",
        "--no-cache",
        "--json",
    ]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let after = image_id(&pinned);
    assert_ne!(before, after, "{out}");
    // --json says the same: what the tag named before, and the file that differs.
    let drift = &json_result(&o)[0]["drift"];
    assert_eq!(drift["replaced_image"], before.as_str(), "{out}");
    let files: Vec<&str> = drift["comparison"]["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("no comparison in --json's drift: {drift}\n{out}"))
        .iter()
        .flat_map(|l| l["files"].as_array().into_iter().flatten())
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert!(
        files
            .iter()
            .any(|p| p.ends_with("etc/rdna1-fixture/build-date")),
        "--json's drift names {files:?}, not the build date file:\n{out}"
    );
    assert!(
        !files
            .iter()
            .any(|p| p.ends_with("etc/rdna1-fixture/stable.conf")),
        "--json's drift names the file that did not change: {files:?}"
    );
    // The person's view (stderr) names it, not only the JSON on stdout.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("drift") && err.contains("etc/rdna1-fixture/build-date"),
        "the rebuild moved {pinned} from {} to {} without naming what differs:\n{out}",
        short(&before),
        short(&after)
    );
    // The RUN line names both files; no file line names the one that did not change.
    assert!(!err.contains("etc/rdna1-fixture/stable.conf:"), "{out}");
    assert!(
        !dangling_of(&name).contains(&before),
        "the replaced image {before} is left dangling:\n{out}"
    );
}
