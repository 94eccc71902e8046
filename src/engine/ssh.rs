//! The `ssh://` transport, owned here rather than taken from bollard: bollard 0.21's drops the
//! port of `ssh://user@host:2222`. Like the docker CLI, each connection is one
//! `ssh ... docker system dial-stdio` process, and HTTP goes over its stdin and stdout; hyper's
//! pool keeps a connection (and its ssh) for the next request, and the process is killed
//! when the connection is dropped.
//!
//! ssh runs in a process group of its own, so a Ctrl-C on the terminal reaches the tool
//! (which then removes what it made, over this very connection) and not ssh.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bollard::Docker;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::endpoint::SshTarget;

/// Starts `ssh ... docker system dial-stdio` for each new connection.
#[derive(Clone)]
struct DialStdio {
    target: Arc<SshTarget>,
}

/// One connection: ssh's stdout to read, its stdin to write, and what it said on stderr,
/// which becomes the error when it ends before answering (a refused key, an unknown host).
struct SshStream {
    _child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_done: Option<tokio::sync::oneshot::Receiver<()>>,
    answered: bool,
    target: Arc<SshTarget>,
}

impl tower_service::Service<hyper::Uri> for DialStdio {
    type Response = TokioIo<SshStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: hyper::Uri) -> Self::Future {
        let target = self.target.clone();
        Box::pin(async move {
            let mut child = tokio::process::Command::new("ssh")
                .args(target.argv())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| io::Error::new(e.kind(), format!("cannot run ssh: {e}")))?;
            let (stdin, stdout, mut err) =
                match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
                    (Some(i), Some(o), Some(e)) => (i, o, e),
                    _ => return Err(io::Error::other("ssh started without its pipes")),
                };
            let stderr = Arc::new(Mutex::new(Vec::new()));
            let (done, stderr_done) = tokio::sync::oneshot::channel();
            let sink = stderr.clone();
            tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = err.read(&mut buf).await {
                    let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
                    // Enough for ssh's own messages; never unbounded.
                    if s.len() < 8192 {
                        s.extend_from_slice(&buf[..n]);
                    }
                }
                let _ = done.send(());
            });
            Ok(TokioIo::new(SshStream {
                _child: child,
                stdin: Some(stdin),
                stdout,
                stderr,
                stderr_done: Some(stderr_done),
                answered: false,
                target,
            }))
        })
    }
}

impl SshStream {
    fn ssh_said(&self) -> String {
        let s = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&s).trim().to_string()
    }
}

impl AsyncRead for SshStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.stdout).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                this.answered = true;
                Poll::Ready(Ok(()))
            }
            // ssh ended before the engine said anything: what ssh printed is the reason.
            Poll::Ready(Ok(())) if !this.answered => {
                if let Some(rx) = this.stderr_done.as_mut() {
                    if Pin::new(rx).poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    this.stderr_done = None;
                }
                let said = this.ssh_said();
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!(
                        "`{}` ended without an answer{}",
                        this.target,
                        if said.is_empty() {
                            String::new()
                        } else {
                            format!(": {said}")
                        }
                    ),
                )))
            }
            other => other,
        }
    }
}

impl AsyncWrite for SshStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.stdin.as_mut() {
            Some(w) => Pin::new(w).poll_write(cx, buf),
            None => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stdin.as_mut() {
            Some(w) => Pin::new(w).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    /// Closing ssh's stdin is how the remote `dial-stdio` learns the write half is done.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(w) = self.stdin.as_mut() {
            std::task::ready!(Pin::new(w).poll_shutdown(cx))?;
        }
        self.stdin = None;
        Poll::Ready(Ok(()))
    }
}

impl Connection for SshStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// A bollard client whose every connection is an ssh to `target`.
pub(super) fn connect(
    target: SshTarget,
    timeout_s: u64,
    version: &bollard::ClientVersion,
) -> Result<Docker, bollard::errors::Error> {
    // The body type is bollard's own (private; inferred from the requests below).
    let client = Arc::new(Client::builder(TokioExecutor::new()).build(DialStdio {
        target: Arc::new(target),
    }));
    Docker::connect_with_custom_transport(
        move |req: bollard::BollardRequest| {
            let client = client.clone();
            async move {
                client
                    .request(req)
                    .await
                    .map_err(bollard::errors::Error::from)
            }
        },
        // Only the request URIs' host: every connection goes where `target` says.
        Some("http://docker.ssh"),
        timeout_s,
        version,
    )
}
