//! A registry on 127.0.0.1 that lives for one normalisation: the engine pushes the built
//! image to it, and the sink answers each "do you have this blob?" so that the engine hands
//! over only what we ask for. A push is the one engine API that sends only some of an
//! image's layers; `docker save` always sends all of them, base included (moby's classic
//! export even writes the whole image to a temp folder first).
//!
//! What it speaks is the part of the distribution API a push uses: `GET /v2/`, `HEAD` of a
//! blob (200 for a blob we do not want, 404 for one we do), uploads (`POST`, `PATCH`, `PUT
//! ?digest=`, monolithic or chunked, mounts refused), and manifest `PUT`s (kept in memory,
//! 4 MB each at most). Every upload is hashed and decompressed as it arrives, on a blocking
//! thread ([`crate::image_archive::receive_blob`]); a digest that does not match is refused.
//! Only the one repository name, with a random part, is served: anything else is 404.
//!
//! The engine reaches it only when it shares our loopback: a local socket, not ssh, not a
//! VM, not rootless docker's own network namespace. The caller falls back to the save then.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::hex::encode as hex;
use crate::image_archive::{receive_blob, Received};

const MANIFEST_LIMIT: usize = 4 << 20;

/// What the sink answers to `HEAD` of a blob it has not received.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Digests to ask for (404), whatever `skip_unknown` says.
    pub ask: HashSet<String>,
    /// Digests to say "have it" (200) for, whatever `skip_unknown` says.
    pub have: HashSet<String>,
    /// Say "have it" for every other digest; else ask for it.
    pub skip_unknown: bool,
    /// Keep a spool of each upload, uncompressed (the built image's added layers); else
    /// only hash it and read its tar headers (a base).
    pub spool: bool,
}

/// An upload under way: its bytes go to `task`, which hashes, decompresses and spools them.
struct Upload {
    tx: mpsc::Sender<io::Result<Bytes>>,
    task: tokio::task::JoinHandle<io::Result<Received>>,
    bytes: u64,
}

/// What the sink has been told and has received, behind one lock.
#[derive(Default)]
struct State {
    policy: Policy,
    uploads: HashMap<String, Upload>,
    blobs: HashMap<String, Received>,
    /// By reference (tag and digest): content type, bytes.
    manifests: HashMap<String, (String, Bytes)>,
    next_upload: u64,
}

/// What the accept loop and every connection share: our repository's name, where uploads
/// spool, and the state.
struct Shared {
    repo_path: String,
    scratch: PathBuf,
    state: Mutex<State>,
}

/// The running sink; it stops (connections and uploads with it) when dropped.
pub struct Sink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// 16 random bytes as hex, for a repository name nobody else guesses: from the system's
/// random source (getrandom), so a failure says so instead of falling back to the clock.
fn token() -> io::Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)?;
    Ok(hex(b))
}

impl Sink {
    /// Listens on 127.0.0.1 (a port the system picks); uploads spool into `scratch`.
    pub async fn start(scratch: PathBuf) -> io::Result<Sink> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            repo_path: format!("rdna1-images-normalise/{}", token()?),
            scratch,
            state: Mutex::new(State::default()),
        });
        let serving = shared.clone();
        let accept = tokio::spawn(async move {
            // Dropped with the accept loop: every connection goes with it.
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let shared = serving.clone();
                        conns.spawn(async move {
                            let svc = hyper::service::service_fn(move |req| {
                                let shared = shared.clone();
                                async move { Ok::<_, std::convert::Infallible>(handle(&shared, req).await) }
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                                .await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Ok(Sink {
            addr,
            shared,
            accept,
        })
    }

    /// `127.0.0.1:<port>/rdna1-images-normalise/<random>`: the name to tag and push.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.addr, self.shared.repo_path)
    }

    pub fn set_policy(&self, policy: Policy) {
        self.shared.state.lock().unwrap().policy = policy;
    }

    /// Takes the blobs received so far, by digest.
    pub fn take_blobs(&self) -> HashMap<String, Received> {
        std::mem::take(&mut self.shared.state.lock().unwrap().blobs)
    }

    /// The manifest (or index) pushed under `tag`, and every manifest by digest.
    pub fn manifests(&self, tag: &str) -> Option<(Bytes, HashMap<String, Vec<u8>>)> {
        let st = self.shared.state.lock().unwrap();
        let top = st.manifests.get(tag)?.1.clone();
        let by_digest = st
            .manifests
            .iter()
            .filter(|(k, _)| k.starts_with("sha256:"))
            .map(|(k, (_, b))| (k.clone(), b.to_vec()))
            .collect();
        Some((top, by_digest))
    }
}

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, headers: &[(&str, String)], body: impl Into<Bytes>) -> Answer {
    let mut r = Response::builder()
        .status(status)
        .header("Docker-Distribution-API-Version", "registry/2.0");
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.body(Full::new(body.into()))
        .expect("static header names and plain values")
}

fn error(status: StatusCode, code: &str, message: &str) -> Answer {
    let body = serde_json::json!({"errors": [{"code": code, "message": message}]});
    answer(
        status,
        &[("Content-Type", "application/json".into())],
        serde_json::to_vec(&body).expect("json"),
    )
}

/// `/v2/<name>/<kind>/<rest>` for our one name.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Ping,
    Blob(&'a str),
    Uploads(&'a str),
    Manifest(&'a str),
    Other,
}

fn route<'a>(path: &'a str, repo: &str) -> Route<'a> {
    if path == "/v2/" || path == "/v2" {
        return Route::Ping;
    }
    let Some(rest) = path
        .strip_prefix("/v2/")
        .and_then(|p| p.strip_prefix(repo))
        .and_then(|p| p.strip_prefix('/'))
    else {
        return Route::Other;
    };
    if let Some(u) = rest.strip_prefix("blobs/uploads/") {
        Route::Uploads(u)
    } else if rest == "blobs/uploads" {
        Route::Uploads("")
    } else if let Some(d) = rest.strip_prefix("blobs/") {
        Route::Blob(d)
    } else if let Some(r) = rest.strip_prefix("manifests/") {
        Route::Manifest(r)
    } else {
        Route::Other
    }
}

fn query(req: &Request<Incoming>, key: &str) -> Option<String> {
    url::form_urlencoded::parse(req.uri().query()?.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Answer {
    let path = req.uri().path().to_string();
    match (req.method().clone(), route(&path, &shared.repo_path)) {
        (Method::GET | Method::HEAD, Route::Ping) => answer(StatusCode::OK, &[], "{}"),
        (Method::HEAD, Route::Blob(d)) => head_blob(shared, d),
        (Method::POST, Route::Uploads("")) => {
            let id = start_upload(shared);
            match query(&req, "digest") {
                // Monolithic: the whole blob in this one request.
                Some(digest) => finish_upload(shared, &id, req, &digest).await,
                None => {
                    let location = format!("/v2/{}/blobs/uploads/{id}", shared.repo_path);
                    answer(
                        StatusCode::ACCEPTED,
                        &[
                            ("Location", location),
                            ("Range", "0-0".into()),
                            ("Docker-Upload-UUID", id),
                        ],
                        Bytes::new(),
                    )
                }
            }
        }
        (Method::PATCH, Route::Uploads(id)) if !id.is_empty() => {
            let id = id.to_string();
            match feed(shared, &id, req.into_body()).await {
                Ok(total) => answer(
                    StatusCode::ACCEPTED,
                    &[
                        (
                            "Location",
                            format!("/v2/{}/blobs/uploads/{id}", shared.repo_path),
                        ),
                        ("Range", format!("0-{}", total.saturating_sub(1))),
                        ("Docker-Upload-UUID", id),
                    ],
                    Bytes::new(),
                ),
                Err(e) => e,
            }
        }
        (Method::PUT, Route::Uploads(id)) if !id.is_empty() => {
            let id = id.to_string();
            match query(&req, "digest") {
                Some(digest) => finish_upload(shared, &id, req, &digest).await,
                None => error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "no digest"),
            }
        }
        (Method::DELETE, Route::Uploads(id)) => {
            shared.state.lock().unwrap().uploads.remove(id);
            answer(StatusCode::NO_CONTENT, &[], Bytes::new())
        }
        (Method::PUT, Route::Manifest(reference)) => put_manifest(shared, reference, req).await,
        (Method::GET | Method::HEAD, Route::Manifest(_)) => error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
        ),
        (Method::GET, Route::Blob(_)) => {
            error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown")
        }
        (_, Route::Other) => error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", "repository unknown"),
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "not supported here",
        ),
    }
}

fn head_blob(shared: &Shared, digest: &str) -> Answer {
    let st = shared.state.lock().unwrap();
    let size = match st.blobs.get(digest) {
        Some(b) => Some(b.size),
        None if st.policy.ask.contains(digest) => None,
        None if !st.policy.skip_unknown && !st.policy.have.contains(digest) => None,
        // A blob we do not want: the engine takes our word and skips it.
        None => Some(0),
    };
    match size {
        Some(n) => answer(
            StatusCode::OK,
            &[
                ("Content-Length", n.to_string()),
                ("Docker-Content-Digest", digest.to_string()),
                ("Content-Type", "application/octet-stream".into()),
            ],
            Bytes::new(),
        ),
        None => error(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", "blob unknown"),
    }
}

/// A new upload: its bytes go to a blocking thread that hashes, decompresses and spools.
fn start_upload(shared: &Shared) -> String {
    let (tx, mut rx) = mpsc::channel::<io::Result<Bytes>>(8);
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    let mut st = shared.state.lock().unwrap();
    let spool = st.policy.spool.then(|| shared.scratch.clone());
    let task = tokio::task::spawn_blocking(move || receive_blob(reader, spool.as_deref()));
    st.next_upload += 1;
    let id = format!("u{}", st.next_upload);
    st.uploads.insert(id.clone(), Upload { tx, task, bytes: 0 });
    id
}

/// Streams a request body into an upload; returns the bytes it has had in all.
async fn feed(shared: &Shared, id: &str, mut body: Incoming) -> Result<u64, Answer> {
    let tx = match shared.state.lock().unwrap().uploads.get(id) {
        Some(u) => u.tx.clone(),
        None => {
            return Err(error(
                StatusCode::NOT_FOUND,
                "BLOB_UPLOAD_UNKNOWN",
                "no such upload",
            ))
        }
    };
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                "BLOB_UPLOAD_INVALID",
                &e.to_string(),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            n += data.len() as u64;
            if tx.send(Ok(data)).await.is_err() {
                // The reader stopped: its error comes out when the upload is finished.
                break;
            }
        }
    }
    let mut st = shared.state.lock().unwrap();
    let u = st.uploads.get_mut(id).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            "no such upload",
        )
    })?;
    u.bytes += n;
    Ok(u.bytes)
}

async fn finish_upload(shared: &Shared, id: &str, req: Request<Incoming>, digest: &str) -> Answer {
    if let Err(e) = feed(shared, id, req.into_body()).await {
        return e;
    }
    let Some(upload) = shared.state.lock().unwrap().uploads.remove(id) else {
        return error(
            StatusCode::NOT_FOUND,
            "BLOB_UPLOAD_UNKNOWN",
            "no such upload",
        );
    };
    drop(upload.tx);
    let received = match upload.task.await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BLOB_UPLOAD_INVALID",
                &e.to_string(),
            )
        }
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", &e.to_string()),
    };
    if received.digest != digest {
        return error(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            &format!("the upload is {}, not {digest}", received.digest),
        );
    }
    shared
        .state
        .lock()
        .unwrap()
        .blobs
        .insert(digest.to_string(), received);
    answer(
        StatusCode::CREATED,
        &[
            (
                "Location",
                format!("/v2/{}/blobs/{digest}", shared.repo_path),
            ),
            ("Docker-Content-Digest", digest.to_string()),
        ],
        Bytes::new(),
    )
}

async fn put_manifest(shared: &Shared, reference: &str, req: Request<Incoming>) -> Answer {
    let kind = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = match http_body_util::Limited::new(req.into_body(), MANIFEST_LIMIT)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "MANIFEST_INVALID",
                &e.to_string(),
            )
        }
    };
    let digest = format!("sha256:{}", hex(Sha256::digest(&body)));
    if reference.starts_with("sha256:") && reference != digest {
        return error(StatusCode::BAD_REQUEST, "DIGEST_INVALID", "manifest digest");
    }
    {
        let mut st = shared.state.lock().unwrap();
        st.manifests
            .insert(reference.to_string(), (kind.clone(), body.clone()));
        st.manifests.insert(digest.clone(), (kind, body));
    }
    answer(
        StatusCode::CREATED,
        &[
            (
                "Location",
                format!("/v2/{}/manifests/{digest}", shared.repo_path),
            ),
            ("Docker-Content-Digest", digest),
        ],
        Bytes::new(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// One request on its own connection; the status line and the headers back.
    async fn call(sink: &Sink, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let mut c = tokio::net::TcpStream::connect(sink.addr).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        c.write_all(head.as_bytes()).await.unwrap();
        c.write_all(body).await.unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text[9..12].parse().unwrap();
        (status, text.to_lowercase())
    }

    fn digest(b: &[u8]) -> String {
        format!("sha256:{}", hex(Sha256::digest(b)))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sink_asks_for_what_it_is_told_and_checks_what_it_gets() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::start(dir.path().to_path_buf()).await.unwrap();
        let repo = sink.repository();
        let name = repo.split_once('/').unwrap().1.to_string();
        let blob = b"{\"a\":1}".to_vec();
        let d = digest(&blob);
        let at = |rest: &str| format!("/v2/{name}/{rest}");

        // What a normalise push sets: every blob but `ask` is had, `ask` is asked for.
        let asking = |ask: &[&String]| Policy {
            ask: ask.iter().map(|d| d.to_string()).collect(),
            skip_unknown: true,
            spool: true,
            ..Policy::default()
        };
        let head = |digest: &str| {
            let path = at(&format!("blobs/{digest}"));
            let sink = &sink;
            async move { call(sink, "HEAD", &path, b"").await }
        };

        assert_eq!(call(&sink, "GET", "/v2/", b"").await.0, 200);
        sink.set_policy(asking(&[]));
        assert_eq!(head(&d).await.0, 200);
        sink.set_policy(asking(&[&d]));
        assert_eq!(head(&d).await.0, 404);
        // Asked for nothing unknown: only what it is told it has is had.
        let other_digest = digest(b"x");
        sink.set_policy(Policy {
            have: HashSet::from([other_digest.clone()]),
            ..Policy::default()
        });
        assert_eq!(head(&d).await.0, 404);
        assert_eq!(head(&other_digest).await.0, 200);
        sink.set_policy(asking(&[&d]));
        // Another name, even one that starts like ours, is not served.
        let other = format!("/v2/{name}x/blobs/{d}");
        assert_eq!(call(&sink, "HEAD", &other, b"").await.0, 404);

        // A monolithic upload whose bytes are not the digest it names is refused.
        let wrong = digest(b"other");
        let (st, text) = call(
            &sink,
            "POST",
            &at(&format!("blobs/uploads/?digest={wrong}")),
            &blob,
        )
        .await;
        assert_eq!(st, 400, "{text}");
        assert!(text.contains("digest_invalid"), "{text}");
        assert!(sink.take_blobs().is_empty());

        // Chunked: POST, two PATCHes, PUT with the digest.
        let (st, text) = call(&sink, "POST", &at("blobs/uploads/"), b"").await;
        assert_eq!(st, 202);
        let location = text
            .lines()
            .find_map(|l| l.strip_prefix("location: "))
            .unwrap()
            .trim()
            .to_string();
        let (st, text) = call(&sink, "PATCH", &location, &blob[..3]).await;
        assert_eq!(st, 202);
        assert!(text.contains("range: 0-2"), "{text}");
        assert_eq!(call(&sink, "PATCH", &location, &blob[3..]).await.0, 202);
        let (st, text) = call(&sink, "PUT", &format!("{location}?digest={d}"), b"").await;
        assert_eq!(st, 201, "{text}");
        let (st, text) = call(&sink, "HEAD", &at(&format!("blobs/{d}")), b"").await;
        assert_eq!(st, 200);
        assert!(
            text.contains(&format!("content-length: {}", blob.len())),
            "{text}"
        );

        let m = br#"{"schemaVersion":2}"#;
        assert_eq!(call(&sink, "PUT", &at("manifests/built"), m).await.0, 201);
        let (top, by_digest) = sink.manifests("built").unwrap();
        assert_eq!(&top[..], m);
        assert!(by_digest.contains_key(&digest(m)));

        let blobs = sink.take_blobs();
        let got = &blobs[&d];
        assert_eq!(got.size, blob.len() as u64);
        assert_eq!(crate::image_archive::small_blob(got).unwrap(), blob);
    }

    #[test]
    fn only_our_name_is_routed() {
        let repo = "rdna1-images-normalise/abc";
        let our_repo = "/v2/rdna1-images-normalise/abc";
        for (path, want) in [
            ("/v2/".to_string(), Route::Ping),
            (
                format!("{our_repo}/blobs/sha256:1"),
                Route::Blob("sha256:1"),
            ),
            (format!("{our_repo}/blobs/uploads/"), Route::Uploads("")),
            (format!("{our_repo}/blobs/uploads/u3"), Route::Uploads("u3")),
            (format!("{our_repo}/manifests/t"), Route::Manifest("t")),
            (format!("{our_repo}d/blobs/sha256:1"), Route::Other),
            ("/v2/other/blobs/sha256:1".to_string(), Route::Other),
        ] {
            assert_eq!(route(&path, repo), want, "{path}");
        }
    }
}
