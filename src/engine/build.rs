//! BuildKit builds through the Engine API, with progress as it happens.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bollard::models::BuildInfoAux;
use bollard::query_parameters::{BuildImageOptionsBuilder, BuilderVersion};
use futures_util::StreamExt;

use super::{describe, Engine, EngineError};

/// What to build.
pub struct BuildRequest<'a> {
    /// For messages: the recipe name.
    pub what: &'a str,
    pub tar: Vec<u8>,
    pub dockerfile: &'a str,
    pub build_args: &'a BTreeMap<String, String>,
    pub labels: &'a BTreeMap<String, String>,
    pub no_cache: bool,
    /// `networkmode` for RUN steps; None = the engine's default.
    pub network: Option<&'a str>,
}

/// Progress of a build, for the caller to show.
#[derive(Debug, Clone, PartialEq)]
pub enum BuildEvent {
    /// A step started (`[2/7] RUN ...`).
    Step { name: String },
    /// A step was taken from the cache.
    Cached { name: String },
    /// A step finished, with its wall time when the engine reported it.
    Done { name: String, seconds: Option<f64> },
    /// A line of a step's output.
    Output { step: String, line: String },
    /// A step failed (its error follows as the build's `Err`).
    Failed { name: String },
    /// Anything else the engine said (classic builder streams, statuses).
    Message(String),
}

/// What the engine says when it cannot reach a registry: Go's dialer and resolver, TLS
/// and proxy errors, as BuildKit passes them on. Read from text because that is all the
/// build stream gives (`errorDetail.message`, `DockerStreamError`): no code, no type.
const NETWORK_FAILURES: [&str; 10] = [
    "dial tcp",
    "no such host",
    "connection refused",
    "i/o timeout",
    "network is unreachable",
    "TLS handshake timeout",
    "connection reset by peer",
    "server misbehaving",
    "proxyconnect",
    "Client.Timeout exceeded",
];

/// Whether a build failed because the engine could not fetch the base image: the failing
/// step is the base's (BuildKit's `[internal] load metadata for <base>`, or a `FROM` step
/// pulling it) and the cause is the network. Returns the base reference when the message
/// names it. A RUN step's own network failure is the recipe's job, and stays exit 1.
pub(crate) fn base_fetch_failure(message: &str) -> Option<Option<String>> {
    const METADATA: &str = "load metadata for ";
    let step = message.split(": ").next().unwrap_or_default();
    let about_base = step.contains(METADATA)
        || step
            .split_once("] ")
            .is_some_and(|(_, rest)| rest.starts_with("FROM "))
        || message.contains("failed to resolve source metadata")
        || message.contains("failed to create LLB definition");
    if !about_base || !NETWORK_FAILURES.iter().any(|n| message.contains(n)) {
        return None;
    }
    Some(
        step.split_once(METADATA)
            .map(|(_, base)| base.trim().to_string())
            .filter(|b| !b.is_empty()),
    )
}

/// What to do when the engine cannot fetch the base.
pub(crate) fn base_fetch_advice(base: Option<&str>) -> String {
    let pull = match base {
        Some(b) => format!("`docker pull {b}`"),
        None => {
            "`docker pull` the recipe's pinned base (`rdna1-images render <recipe>` shows its FROM)"
                .into()
        }
    };
    format!(
        "This is the engine's network, not the recipe: check that the Docker daemon can resolve and reach the registry (its own proxy settings, not this shell's: HTTP(S)_PROXY in the daemon's environment or `proxies` in daemon.json), configure a registry mirror (`registry-mirrors` in daemon.json), or fetch the base first where it can be fetched: {pull}, then build again."
    )
}

/// Per-vertex state, so each step is announced once and its output is attributed.
#[derive(Default)]
struct Vertices {
    names: HashMap<String, String>,
    started: std::collections::HashSet<String>,
    finished: std::collections::HashSet<String>,
    partial: HashMap<String, String>,
    /// Last lines of each step's output, for the error message.
    tails: HashMap<String, StepTail>,
}

/// The last lines of one build step's output: what a failed step shows, in its error and on
/// the console (one length for both, so the two never disagree on what "the tail" is).
#[derive(Debug, Clone, Default)]
pub struct StepTail(VecDeque<String>);

impl StepTail {
    /// How many lines a failed step shows.
    pub const LINES: usize = 40;

    /// Keeps `line`, dropping the oldest beyond [`StepTail::LINES`].
    pub fn push(&mut self, line: String) {
        self.0.push_back(line);
        if self.0.len() > Self::LINES {
            self.0.pop_front();
        }
    }

    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Vertices {
    fn output(&mut self, vertex: &str, bytes: &[u8], emit: &mut dyn FnMut(BuildEvent)) {
        let name = self.names.get(vertex).cloned().unwrap_or_default();
        let buf = self.partial.entry(vertex.to_string()).or_default();
        buf.push_str(&String::from_utf8_lossy(bytes));
        // Output arrives in fragments: emit whole lines only, keep the rest.
        while let Some(i) = buf.find(['\n', '\r']) {
            let line: String = buf.drain(..=i).collect();
            let line = line.trim_end_matches(['\n', '\r']).to_string();
            if line.is_empty() {
                continue;
            }
            self.tails
                .entry(vertex.to_string())
                .or_default()
                .push(line.clone());
            emit(BuildEvent::Output {
                step: name.clone(),
                line,
            });
        }
    }
}

impl Engine {
    /// Builds with BuildKit and returns the image id. The image is left untagged: tags are
    /// the pipeline's to set, after the smoke test.
    pub async fn build(
        &self,
        req: BuildRequest<'_>,
        emit: &mut dyn FnMut(BuildEvent),
    ) -> Result<String, EngineError> {
        let session = format!("rdna1-images-{}", std::process::id());
        let labels: HashMap<String, String> = req
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let args: HashMap<String, String> = req
            .build_args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut options = BuildImageOptionsBuilder::default()
            .dockerfile(req.dockerfile)
            .version(BuilderVersion::BuilderBuildKit)
            .session(&session)
            .labels(&labels)
            .buildargs(&args)
            .nocache(req.no_cache)
            .rm(true)
            .forcerm(true);
        if let Some(n) = req.network {
            options = options.networkmode(n);
        }
        let options = options.build();
        let mut stream =
            self.docker
                .build_image(options, None, Some(bollard::body_full(req.tar.into())));
        let mut v = Vertices::default();
        let mut image_id = None;
        let mut classic = String::new();
        let failed = |v: &Vertices, message: String| -> EngineError {
            // The failing step's last lines say why; BuildKit's message alone rarely does.
            let tail = v
                .tails
                .iter()
                .find(|(d, _)| {
                    v.names
                        .get(*d)
                        .is_some_and(|n| message.contains(n.as_str()))
                })
                .or_else(|| v.tails.iter().max_by_key(|(_, t)| t.len()))
                .map(|(_, t)| t.lines().collect::<Vec<_>>().join("\n    "))
                .unwrap_or_default();
            let message = if tail.is_empty() {
                message
            } else {
                format!("{message}\n  last output:\n    {tail}")
            };
            if let Some(base) = base_fetch_failure(&message) {
                return EngineError::BaseUnreachable {
                    what: req.what.to_string(),
                    base,
                    message,
                };
            }
            EngineError::Build {
                what: req.what.to_string(),
                message,
            }
        };
        // Cancelled: the stream (the /build request and its BuildKit session) is dropped on
        // return, which closes both connections; the daemon then cancels the solve, and no
        // image is exported.
        let cancel = crate::signals::token();
        let mut paused = false;
        loop {
            let item = tokio::select! {
                item = stream.next() => item,
                _ = cancel.cancelled() => {
                    return Err(EngineError::interrupted(format!("build of {}", req.what)));
                }
            };
            let Some(item) = item else { break };
            let info = match item {
                Ok(i) => i,
                Err(e) if image_id.is_some() && super::stray_end_of_stream(&e) => {
                    tracing::debug!("build stream of {} ended with a stray \\r: done", req.what);
                    break;
                }
                Err(e) => {
                    // The steps still running are the ones the error is about.
                    for d in v.started.difference(&v.finished) {
                        if let Some(name) = v.names.get(d) {
                            emit(BuildEvent::Failed { name: name.clone() });
                        }
                    }
                    return Err(failed(&v, describe(&e)));
                }
            };
            if let Some(s) = info.stream.as_deref() {
                // Classic-builder fragments are partial lines: buffer them.
                classic.push_str(s);
                while let Some(i) = classic.find('\n') {
                    let line: String = classic.drain(..=i).collect();
                    let line = line.trim_end().to_string();
                    if !line.is_empty() {
                        emit(BuildEvent::Message(line));
                    }
                }
            }
            match info.aux {
                Some(BuildInfoAux::Default(id)) => {
                    if let Some(id) = id.id {
                        image_id = Some(id);
                        super::guard::export_finished();
                    }
                }
                Some(BuildInfoAux::BuildKit(status)) => {
                    for vx in status.vertexes {
                        if !vx.name.is_empty() {
                            v.names.insert(vx.digest.clone(), vx.name.clone());
                        }
                        let name = vx.name.clone();
                        if vx.cached && v.finished.insert(vx.digest.clone()) {
                            emit(BuildEvent::Cached { name });
                            continue;
                        }
                        if vx.started.is_some() && v.started.insert(vx.digest.clone()) {
                            if name.starts_with("exporting to image") {
                                // From here on an image may exist before its id reaches us.
                                super::guard::export_started();
                            }
                            emit(BuildEvent::Step { name: name.clone() });
                            // The test hook: a RUN step is under way on the daemon.
                            if !paused && name.contains("RUN") {
                                paused = true;
                                crate::signals::pause_at("build").await;
                            }
                        }
                        if !vx.error.is_empty() {
                            // Its output may still be in this status: keep it for the tail.
                            for log in status.logs.iter().filter(|l| l.vertex == vx.digest) {
                                v.output(&log.vertex, &log.msg, emit);
                            }
                            emit(BuildEvent::Failed {
                                name: vx.name.clone(),
                            });
                            return Err(failed(&v, format!("{}: {}", vx.name, vx.error)));
                        }
                        if let Some(done) = vx.completed {
                            if v.finished.insert(vx.digest.clone()) {
                                let seconds = vx.started.map(|s| {
                                    (done.seconds - s.seconds) as f64
                                        + (done.nanos - s.nanos) as f64 / 1e9
                                });
                                emit(BuildEvent::Done { name, seconds });
                            }
                        }
                    }
                    for log in status.logs {
                        v.output(&log.vertex, &log.msg, emit);
                    }
                }
                None => {}
            }
        }
        image_id.ok_or_else(|| EngineError::Build {
            what: req.what.to_string(),
            message: "the engine finished without reporting an image id".into(),
        })
    }
}

#[cfg(test)]
mod base_fetch_tests {
    use super::*;

    #[test]
    fn a_step_tail_keeps_the_last_lines_only() {
        let mut t = StepTail::default();
        for i in 0..StepTail::LINES + 5 {
            t.push(format!("line {i}"));
        }
        assert_eq!(t.len(), StepTail::LINES);
        assert_eq!(t.lines().next(), Some("line 5"));
        assert_eq!(
            t.lines().last().map(str::to_string),
            Some(format!("line {}", StepTail::LINES + 4))
        );
    }

    #[test]
    fn a_base_the_engine_cannot_reach_is_the_environment_and_a_failing_run_step_is_not() {
        // Docker 20.10 and 28.5 (classic and containerd stores), on a closed loopback port.
        let refused = r#"[internal] load metadata for 127.0.0.1:9/x/base:pinned@sha256:0123: failed to do request: Head "https://127.0.0.1:9/v2/x/base/manifests/sha256:0123": dial tcp 127.0.0.1:9: connect: connection refused"#;
        assert_eq!(
            base_fetch_failure(refused),
            Some(Some("127.0.0.1:9/x/base:pinned@sha256:0123".into()))
        );
        // The issue's report: an engine without DNS.
        let dns = r#"failed to solve with frontend dockerfile.v0: failed to create LLB definition: failed to do request: Head "https://registry.example/v2/library/ubuntu/manifests/sha256:ab": dial tcp: lookup registry.example on 10.0.0.1:53: no such host"#;
        assert_eq!(base_fetch_failure(dns), Some(None));
        let from = r#"[1/4] FROM registry.example/library/ubuntu:jammy@sha256:ab: failed to copy: httpReadSeeker: failed open: failed to do request: Get "https://blobs.example/x": net/http: TLS handshake timeout"#;
        assert!(base_fetch_failure(from).is_some());
        // A RUN step whose own download fails is the job's failure.
        let run = r#"[2/4] RUN pip download torch: process "/bin/sh -c pip download torch" did not complete successfully: exit code: 1
  last output:
    dial tcp: lookup files.example on 127.0.0.53:53: no such host"#;
        assert_eq!(base_fetch_failure(run), None);
        // A base that does not exist is not the network.
        let missing = "[internal] load metadata for registry.example/library/nosuch:1: registry.example/library/nosuch:1: not found";
        assert_eq!(base_fetch_failure(missing), None);
        let advice = base_fetch_advice(Some("127.0.0.1:9/x/base:pinned@sha256:0123"));
        assert!(
            advice.contains("proxy") && advice.contains("registry-mirrors"),
            "{advice}"
        );
        assert!(
            advice.contains("`docker pull 127.0.0.1:9/x/base:pinned@sha256:0123`"),
            "{advice}"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::net::UnixListener;

    use super::*;
    use crate::endpoint::{Endpoint, Source};

    /// An engine that answers one build with `chunks`, each sent as its own HTTP chunk and
    /// flushed after a pause, so the client reads them one by one.
    fn fake_engine(chunks: Vec<&'static str>) -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            r.read_exact(&mut body).unwrap();
            let mut w = conn;
            w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap();
            for c in chunks {
                write!(w, "{:x}\r\n{c}\r\n", c.len()).unwrap();
                w.flush().unwrap();
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            w.write_all(b"0\r\n\r\n").unwrap();
        });
        let host = format!("unix://{}", sock.display());
        let docker =
            bollard::Docker::connect_with_unix(&host, 10, bollard::API_DEFAULT_VERSION).unwrap();
        let engine = Engine {
            docker,
            host: host.clone(),
            endpoint: Endpoint {
                host,
                source: Source::Default,
                tls: None,
            },
        };
        (dir, engine)
    }

    async fn build(engine: &Engine) -> Result<String, EngineError> {
        let none = BTreeMap::new();
        engine
            .build(
                BuildRequest {
                    what: "fake",
                    tar: vec![0; 1024],
                    dockerfile: "Dockerfile",
                    build_args: &none,
                    labels: &none,
                    no_cache: false,
                    network: None,
                },
                &mut |_| {},
            )
            .await
    }

    const ID: &str = r#"{"aux":{"ID":"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}}"#;

    #[tokio::test]
    async fn a_last_message_whose_crlf_comes_in_the_next_read_still_ends_the_build() {
        // The engine's framing: `}` of the last message in one read, its "\r\n" in the next.
        let (_dir, engine) = fake_engine(vec!["{\"stream\":\"Step 1\\n\"}\r\n", ID, "\r\n"]);
        let id = build(&engine).await.expect("the build's image id");
        assert!(id.ends_with("abcdef"), "{id}");
    }

    #[tokio::test]
    async fn a_stream_that_ends_before_the_image_id_is_still_a_failure() {
        // The same stray "\r" with no image id yet: the build did not finish.
        let (_dir, engine) = fake_engine(vec!["{\"stream\":\"Step 1\\n\"}", "\r\n"]);
        let e = build(&engine).await.expect_err("no image id");
        assert!(e.to_string().contains("bytes remaining on stream"), "{e}");
    }
}
