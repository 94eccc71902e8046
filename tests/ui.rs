//! What people see: the progress of a fixture build on stderr, plain (CI logs, snapshot)
//! and on a terminal (tmux), and a failed step's tail and saved log.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A fixture-ok copy with an ENV of its own (so no concurrent build shares its vertices:
/// moby#42414) and extra steps.
fn recipe_with_steps(sb: &mut Sandbox, test: &str, steps: &[&str]) -> String {
    let name = sb.recipe("fixture-ok");
    let nonce = format!(
        "{test}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut text = sb.read(&name).replace(
        "env:\n",
        &format!("env:\n  RDNA1_TEST_NONCE: \"{nonce}\"\n"),
    );
    let mut block = String::from("steps:\n");
    for s in steps {
        block.push_str(&format!("  - '{s}'\n"));
    }
    text = text.replace("smoke:\n", &format!("{block}smoke:\n"));
    sb.write(&name, &text);
    name
}

/// 300 lines of "compiler output", over a few seconds.
const NOISY: &str = "for i in $(seq 1 300); do echo \"compiler line $i\"; sleep 0.01; done";

/// The plain progress with what changes from run to run masked: the recipe name, times,
/// digests and ids, the smoke numbers; BuildKit's `[internal]` steps run side by side, so
/// their order is not fixed: they are checked apart and left out.
fn masked(stderr: &str, name: &str) -> String {
    let mut out = Vec::new();
    for line in stderr.lines() {
        if line.contains("[internal]") {
            continue;
        }
        let l = mask_hex(&line.replace(name, "NAME"));
        let l = if let Some(rest) = l.strip_prefix("   smoke: ") {
            // Timings change unit (us, ms) from run to run.
            let rest = mask_all_numbers(rest)
                .replace("N us", "N time")
                .replace("N ms", "N time");
            format!("   smoke: {rest}")
        } else if let Some((head, rest)) = l.split_once(": reproducible image ") {
            format!("{head}: reproducible image {}", mask_all_numbers(rest))
        } else {
            mask_times(&l)
        };
        out.push(l);
    }
    out.join("\n")
}

fn mask_hex(l: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for c in l.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        if run.len() >= 12 {
            out.push_str("HEX");
        } else {
            out.push_str(&run);
        }
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}

/// `12.3 s` -> `T s`.
fn mask_times(l: &str) -> String {
    let words: Vec<&str> = l.split(' ').collect();
    let mut out = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let next_is_s = words.get(i + 1).is_some_and(|n| n.starts_with('s'));
        let num = w.trim_end_matches(':');
        if next_is_s && !num.is_empty() && num.chars().all(|c| c.is_ascii_digit() || c == '.') {
            out.push("T".to_string());
        } else {
            out.push(w.to_string());
        }
    }
    out.join(" ")
}

fn mask_all_numbers(l: &str) -> String {
    let mut out = String::new();
    let mut in_num = false;
    for c in l.chars() {
        if c.is_ascii_digit() || (in_num && (c == '.' || c == 'e' || c == '-')) {
            if !in_num {
                out.push('N');
                in_num = true;
            }
        } else {
            in_num = false;
            out.push(c);
        }
    }
    out
}

#[test]
fn plain_progress_of_a_fixture_build_is_one_line_per_step_start_and_end() {
    if !require_base("plain_progress") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = recipe_with_steps(&mut sb, "plain", &[NOISY]);
    let state = tempfile::tempdir().unwrap();
    let o = sb.cmd_env(
        &["build", &name, "--smoke", "cpu", "--no-pull", "--json"],
        &[("XDG_STATE_HOME", state.path().to_str().unwrap())],
    );
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v = json_result(&o);
    assert_eq!(v[0]["status"], "passed");
    assert!(
        !err.contains('\x1b'),
        "escape codes in plain output:\n{err}"
    );
    assert!(
        !err.contains("| compiler line") && !err.contains("compiler line 150"),
        "build output without -v:\n{err}"
    );
    // Each step: a start line and an end line with its time.
    let starts = err.lines().filter(|l| l.starts_with("=> [")).count();
    let ends = err
        .lines()
        .filter(|l| l.starts_with("=> [") && (l.contains(": done in ") || l.contains(": CACHED")))
        .count();
    assert!(ends >= 3 && starts >= 2 * ends - 2, "{err}");
    assert!(err.contains("=> [internal] load metadata for "), "{err}");
    // The summary line says where the time went.
    let summary = err
        .lines()
        .find(|l| l.starts_with(&format!("{name}: ")) && l.contains(" in total: "))
        .unwrap_or_else(|| panic!("no summary line:\n{err}"));
    for stage in ["build", "normalise", "smoke", "tag"] {
        assert!(summary.contains(&format!("{stage} ")), "{summary}");
    }
    // A successful build keeps no log.
    let logs = state.path().join("rdna1-images/logs");
    assert_eq!(
        std::fs::read_dir(&logs).map(|d| d.count()).unwrap_or(0),
        0,
        "a log was left after a success"
    );
    insta::assert_snapshot!(masked(&err, &name));
}

#[test]
fn a_failed_step_shows_its_last_40_lines_and_keeps_the_whole_log() {
    if !require_base("failed_step") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = recipe_with_steps(
        &mut sb,
        "failed",
        &["for i in $(seq 1 100); do echo \"out $i\"; done; exit 7"],
    );
    let state = tempfile::tempdir().unwrap();
    let o = sb.cmd_env(
        &["build", &name, "--smoke", "cpu", "--no-pull", "--json"],
        &[("XDG_STATE_HOME", state.path().to_str().unwrap())],
    );
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let doc = json_document(&o);
    assert_eq!(doc["error"]["class"], "job", "{doc}");
    assert!(err.contains(": FAILED"), "{err}");
    assert!(
        err.contains("| out 100\n") && err.contains("| out 61\n"),
        "{err}"
    );
    assert!(!err.contains("| out 60\n"), "more than 40 lines:\n{err}");
    let path = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("the whole build log: "))
        .unwrap_or_else(|| panic!("no log path:\n{err}"));
    assert!(path.starts_with(state.path().to_str().unwrap()), "{path}");
    let log = std::fs::read_to_string(path).unwrap();
    for i in [1, 50, 100] {
        assert!(log.contains(&format!("out {i}\n")), "{log}");
    }
}

#[test]
fn verbose_shows_the_build_output() {
    if !require_base("verbose_output") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = recipe_with_steps(&mut sb, "verbose", &["echo hello-from-the-build"]);
    let o = sb.cmd(&["-v", "build", &name, "--smoke", "skip", "--no-pull"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("| hello-from-the-build"),
        "{}",
        text(&o)
    );
}

/// A tmux server of its own, killed when dropped.
struct Tmux(String);

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.0])
            .args(args)
            .output()
            .expect("tmux runs")
    }
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "s"]).stdout).into_owned()
    }
    fn history(&self) -> usize {
        let o = self.cmd(&["display-message", "-p", "-t", "s", "#{history_size}"]);
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .unwrap_or(usize::MAX)
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["send-keys", "-t", "s", "C-c"]);
        let start = Instant::now();
        while self.cmd(&["has-session", "-t", "s"]).status.success()
            && start.elapsed() < Duration::from_secs(20)
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = self.cmd(&["kill-server"]);
    }
}

#[test]
fn on_a_terminal_a_build_shows_a_step_counter_within_one_screen() {
    if !require_base("terminal_progress") {
        return;
    }
    if Command::new("tmux").arg("-V").output().is_err() {
        skip("terminal_progress: tmux is not installed (ci/test.sh installs it)");
        return;
    }
    let mut sb = Sandbox::new();
    // Slow and noisy: the live line has time to show, and 300 lines would fill the screen.
    let name = recipe_with_steps(
        &mut sb,
        "tty",
        &["for i in $(seq 1 300); do echo \"compiler line $i\"; sleep 0.02; done"],
    );
    let tmux = Tmux(format!("rdna1-ui-test-{}", std::process::id()));
    let dir = sb.dir.path().display().to_string();
    let registry = std::env::var("RDNA1_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into());
    // stdout (the smoke table) to a file: the screen is the progress alone.
    let script = format!(
        "RDNA1_IMAGES_BUILD_NETWORK=none RDNA1_IMAGES_REGISTRY={registry}/rdna1-images-sandbox \
         {BIN} --recipes {dir} build {name} --smoke cpu --no-pull > {dir}/stdout.txt; \
         echo \"exit=$?\"; sleep 600"
    );
    const ROWS: usize = 30;
    let o = tmux.cmd(&[
        "new-session",
        "-d",
        "-x",
        "120",
        "-y",
        "30",
        "-s",
        "s",
        "sh",
        "-c",
        &script,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let start = Instant::now();
    let mut saw_counter = None;
    let mut most_lines = 0;
    let end_screen = loop {
        let screen = self_screen(&tmux);
        let lines = screen.lines().filter(|l| !l.trim().is_empty()).count();
        most_lines = most_lines.max(lines);
        if saw_counter.is_none() {
            saw_counter = screen
                .lines()
                .find(|l| l.contains("[3/4] RUN") && !l.starts_with("=> ") && has_counter(l))
                .map(String::from);
        }
        if screen.contains("exit=") {
            break screen;
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "the build did not end:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(end_screen.contains("exit=0"), "{end_screen}");
    saw_counter.unwrap_or_else(|| panic!("no live line with a step counter seen:\n{end_screen}"));
    assert!(!end_screen.contains("compiler line 150"), "{end_screen}");
    assert_eq!(
        tmux.history(),
        0,
        "the output scrolled off one screen:\n{end_screen}"
    );
    assert!(most_lines <= ROWS, "{most_lines} lines:\n{end_screen}");
    assert!(end_screen.contains(" in total: "), "{end_screen}");
    // Finished steps collapse to one line that keeps its time.
    let run = end_screen
        .lines()
        .find(|l| l.starts_with("=> [3/4] RUN"))
        .unwrap_or_else(|| panic!("{end_screen}"));
    assert!(run.contains(": done in ") && run.ends_with(" s"), "{run}");
}

fn self_screen(t: &Tmux) -> String {
    t.screen()
}

/// The line has a BuildKit step counter such as `[3/7]`.
fn has_counter(l: &str) -> bool {
    l.match_indices('[').any(|(i, _)| {
        let rest = &l[i + 1..];
        let Some(end) = rest.find(']') else {
            return false;
        };
        let inner = &rest[..end];
        inner.split_once('/').is_some_and(|(a, b)| {
            !a.is_empty()
                && !b.is_empty()
                && a.chars().all(|c| c.is_ascii_digit())
                && b.chars().all(|c| c.is_ascii_digit())
        })
    })
}
