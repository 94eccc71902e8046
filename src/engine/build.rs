//! BuildKit builds through the Engine API, with progress as it happens.

use std::collections::{BTreeMap, HashMap};

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

/// Per-vertex state, so each step is announced once and its output is attributed.
#[derive(Default)]
struct Vertices {
    names: HashMap<String, String>,
    started: std::collections::HashSet<String>,
    finished: std::collections::HashSet<String>,
    partial: HashMap<String, String>,
    /// Last lines of each step's output, for the error message.
    tails: HashMap<String, Vec<String>>,
}

const TAIL_LINES: usize = 30;

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
            let tail = self.tails.entry(vertex.to_string()).or_default();
            tail.push(line.clone());
            if tail.len() > TAIL_LINES {
                tail.remove(0);
            }
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
                .map(|(_, t)| t.join("\n    "))
                .unwrap_or_default();
            let message = if tail.is_empty() {
                message
            } else {
                format!("{message}\n  last output:\n    {tail}")
            };
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
                    return Err(EngineError::Interrupted { what: format!("build of {}", req.what) });
                }
            };
            let Some(item) = item else { break };
            let info = match item {
                Ok(i) => i,
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
