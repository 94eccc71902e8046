//! The binary in a process group of its own, its stderr read line by line, and SIGINT sent
//! to the group as a terminal's Ctrl-C does: for the tests that interrupt a run.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Sandbox, BIN};

pub struct Run {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

/// Starts `rdna1-images --recipes <sandbox> <args>` with `env`, stdout discarded.
pub fn spawn_group(sb: &Sandbox, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut c = Command::new(BIN);
    c.arg("--recipes")
        .arg(sb.dir.path())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // A group of its own: the signal goes to the process group, as a terminal's Ctrl-C.
        .process_group(0);
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    Run {
        child,
        lines: rx,
        seen: vec![],
    }
}

impl Run {
    pub fn wait_for(&mut self, marker: &str, limit: Duration) {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            match self.lines.recv_timeout(Duration::from_millis(200)) {
                Ok(l) => {
                    let hit = l.contains(marker);
                    self.seen.push(l);
                    if hit {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(s)) = self.child.try_wait() {
                        panic!("exited ({s}) before `{marker}`:\n{}", self.seen.join("\n"));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("no `{marker}` within {limit:?}:\n{}", self.seen.join("\n"));
    }

    pub fn sigint_group(&self) {
        let pgid = self.child.id();
        let ok = Command::new("kill")
            .args(["-INT", "--", &format!("-{pgid}")])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -INT -{pgid}");
    }

    pub fn finish(mut self, limit: Duration) -> (Option<i32>, String) {
        let until = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(300)) {
                    self.seen.push(l);
                }
                return (s.code(), self.seen.join("\n"));
            }
            while let Ok(l) = self.lines.try_recv() {
                self.seen.push(l);
            }
            if Instant::now() > until {
                let _ = self.child.kill();
                panic!(
                    "did not exit within {limit:?} of the signal:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
