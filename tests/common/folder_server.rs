//! A folder served over HTTP on 127.0.0.1 by `python3 -m http.server`: the loopback package
//! index of the lock tests and the wheel folder of the reproducibility tests. The port is
//! the one the server bound and printed (port 0: no race with another test), and the server
//! is killed on drop, a panicking test included.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct FolderServer {
    child: Child,
    pub port: u16,
}

impl FolderServer {
    pub fn start(root: &Path) -> FolderServer {
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(root)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs (the tests serve their loopback index and wheels with it)");
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok());
        // Owned before any panic below, so the child is killed either way.
        let mut server = FolderServer { child, port: 0 };
        match port {
            Some(p) => server.port = p,
            None => panic!(
                "python3 -m http.server printed no port ({read:?}): {line:?}; is python3 3.7 or newer?"
            ),
        }
        server
    }

    /// `http://127.0.0.1:<port>/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }
}

impl Drop for FolderServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
