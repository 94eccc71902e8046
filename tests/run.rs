//! `run` as a terminal user expects it: piped stdin reaches the program, a window resize
//! reaches its terminal, and a folder with `:` in its path is mounted. The recipe's image is
//! the test base tagged under the fixture's unique name (building it is the engine tests' job).

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A fixture recipe whose `rdna1-images:<name>` is the test base image; the Sandbox untags it.
fn recipe_on_base(sb: &mut Sandbox) -> String {
    let name = sb.recipe("fixture-ok");
    let base =
        std::env::var("RDNA1_TEST_BASE").unwrap_or_else(|_| "rdna1-test-base:bookworm".into());
    let o = docker(&["tag", &base, &format!("rdna1-images:{name}")]);
    assert!(o.status.success(), "{}", text(&o));
    name
}

fn run_command(sb: &Sandbox, name: &str, cwd: &Path, cmd: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--recipes")
        .arg(sb.dir.path())
        .args(["run", name, "--cpu", "--network", "none", "--"])
        .args(cmd)
        .current_dir(cwd);
    c
}

fn cleanup(name: &str) {
    let _ = docker(&["volume", "rm", &format!("rdna1-images-miopen-{name}")]);
}

#[test]
fn piped_stdin_reaches_the_container_and_its_streams_stay_apart() {
    if !require_base("run_stdin") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = recipe_on_base(&mut sb);
    let mut child = run_command(
        &sb,
        &name,
        sb.dir.path(),
        &["sh", "-c", "cat; echo to-stderr >&2; exit 3"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"x from the pipe\nsecond line\n")
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(3), "{out}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "x from the pipe\nsecond line\n",
        "{out}"
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("to-stderr"),
        "{out}"
    );
    assert!(containers_of(&name).is_empty(), "container left behind");
    cleanup(&name);
}

#[test]
fn run_works_from_a_folder_with_a_colon_in_its_path() {
    if !require_base("run_colon") {
        return;
    }
    let mut sb = Sandbox::new();
    let name = recipe_on_base(&mut sb);
    let folder = sb.dir.path().join("data:2026,v1");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("marker.txt"), "seen from inside\n").unwrap();
    let o = run_command(
        &sb,
        &name,
        &folder,
        &["sh", "-c", "pwd; cat marker.txt; echo written > back.txt"],
    )
    .output()
    .unwrap();
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "/workspace\nseen from inside\n",
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(folder.join("back.txt")).unwrap(),
        "written\n"
    );
    assert!(containers_of(&name).is_empty(), "container left behind");
    cleanup(&name);
}

/// A tmux server of its own (socket name unique to this test), killed when dropped.
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

    /// Waits until the pane shows `want`; the screen when it does not in time.
    fn wait_for(&self, want: &str, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(want) {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(screen);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Ctrl-C first, so a failed test still lets `run` end and remove its container: a
        // killed terminal (SIGHUP) would leave it running.
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
fn a_window_resize_reaches_the_container_terminal() {
    if !require_base("run_resize") {
        return;
    }
    if Command::new("tmux").arg("-V").output().is_err() {
        skip("tmux is not installed (ci/test.sh installs it)");
        return;
    }
    let mut sb = Sandbox::new();
    let name = recipe_on_base(&mut sb);
    let tmux = Tmux(format!("rdna1-run-test-{}", std::process::id()));
    // The program prints its terminal size as it changes; the trap shows the SIGWINCH.
    let script = "trap 'echo got-winch' WINCH; last=; \
                  while :; do s=$(stty size); [ \"$s\" = \"$last\" ] || echo \"size=$s\"; last=$s; \
                  sleep 0.2 & wait; done";
    let recipes = sb.dir.path().display().to_string();
    let o = tmux.cmd(&[
        "new-session",
        "-d",
        "-x",
        "100",
        "-y",
        "30",
        "-s",
        "s",
        "-c",
        &recipes,
        BIN,
        "--recipes",
        &recipes,
        "run",
        &name,
        "--cpu",
        "--network",
        "none",
        "--",
        "sh",
        "-c",
        script,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    tmux.wait_for("size=30 100", Duration::from_secs(60))
        .unwrap_or_else(|s| panic!("the first size never showed:\n{s}"));
    let o = tmux.cmd(&["resize-window", "-t", "s", "-x", "120", "-y", "40"]);
    assert!(o.status.success(), "{}", text(&o));
    tmux.wait_for("size=40 120", Duration::from_secs(20))
        .unwrap_or_else(|s| panic!("the resize did not reach the container:\n{s}"));
    assert!(tmux.screen().contains("got-winch"), "{}", tmux.screen());
    // Ctrl-C is a key for the program on a terminal: the shell ends, and so does run.
    // Once: a second press while `run` removes the container (raw mode already off) would
    // interrupt the tool itself.
    tmux.cmd(&["send-keys", "-t", "s", "C-c"]);
    let start = Instant::now();
    while tmux.cmd(&["has-session", "-t", "s"]).status.success() {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "run did not end after Ctrl-C:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(containers_of(&name).is_empty(), "container left behind");
    cleanup(&name);
}
