//! Registry answers are read by status and by the distribution spec's error codes, through
//! the real engines: a stub registry on loopback answers as GHCR does (a Bearer token from
//! the realm its WWW-Authenticate names, `DENIED` for a package that does not exist yet,
//! 404 `MANIFEST_UNKNOWN` for a tag not pushed, 401 for bad credentials, 429
//! `TOOMANYREQUESTS`), each engine (the machine's 20.10, 28.5 classic and containerd) talks
//! to it over plain HTTP (127.0.0.0/8 is insecure by default), and each answer must give its
//! exit code and advice: a first `pull` or `promote` of a fresh package is "not there yet"
//! (exit 1), never a login error; ci/nightly-has-tag.sh calls the same package absent.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;

const TOKEN: &str = "stub-token";
const USER: &str = "octocat";
const PASSWORD: &str = "right";

fn base64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A GHCR-like registry on 127.0.0.1: anonymous and good credentials get a token from
/// `/token`, bad ones a 401 `UNAUTHORIZED`; with a token, a repository under `fresh/` is a
/// package that does not exist (403 `DENIED`, as GHCR answers), under `busy/` rate-limited
/// (429 `TOOMANYREQUESTS`), anything else an empty package (404 `MANIFEST_UNKNOWN`).
struct Stub {
    host: String,
    /// Manifest requests that carried the token: proof the engine got that far.
    manifest_asks: Arc<AtomicUsize>,
}

impl Stub {
    fn start() -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let manifest_asks = Arc::new(AtomicUsize::new(0));
        let (h, asks) = (host.clone(), manifest_asks.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (h, asks) = (h.clone(), asks.clone());
                std::thread::spawn(move || serve(stream, &h, &asks));
            }
        });
        Stub {
            host,
            manifest_asks,
        }
    }
}

fn serve(stream: TcpStream, host: &str, asks: &AtomicUsize) {
    let mut first = [0u8; 1];
    // A TLS ClientHello (the containerd resolver tries https first): answer in plain HTTP,
    // as a plain-HTTP registry does, which tells the client to fall back to http.
    if stream.peek(&mut first).is_ok_and(|n| n == 1) && first[0] == 0x16 {
        let mut s = stream;
        let _ = s.write_all(
            b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
        );
        return;
    }
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request).unwrap_or(0) == 0 {
            return;
        }
        let (mut auth, mut length) = (String::new(), 0usize);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            let (k, v) = line.split_once(':').unwrap_or((&line, ""));
            match k.to_ascii_lowercase().as_str() {
                "authorization" => auth = v.trim().to_string(),
                "content-length" => length = v.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        let mut words = request.split_whitespace();
        let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let path = target.split('?').next().unwrap_or("");
        let form = String::from_utf8_lossy(&body).into_owned();
        let (status, headers, body) = answer(path, &auth, &form, host, asks);
        let mut reply = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for h in headers {
            reply.push_str(&h);
            reply.push_str("\r\n");
        }
        reply.push_str("\r\n");
        if method != "HEAD" {
            reply.push_str(&body);
        }
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

fn error(code: &str, message: &str) -> String {
    format!(r#"{{"errors":[{{"code":"{code}","message":"{message}"}}]}}"#)
}

fn answer(
    path: &str,
    auth: &str,
    form: &str,
    host: &str,
    asks: &AtomicUsize,
) -> (u16, Vec<String>, String) {
    let challenge = |scope: Option<&str>| {
        let mut c =
            format!(r#"WWW-Authenticate: Bearer realm="http://{host}/token",service="stub""#);
        if let Some(s) = scope {
            c.push_str(&format!(r#",scope="{s}""#));
        }
        vec![c]
    };
    if path == "/token" {
        // Credentials come as Basic auth on a GET (Docker), or as an OAuth2 password grant
        // in a POSTed form (containerd tries that first).
        let good = format!("Basic {}", base64(format!("{USER}:{PASSWORD}").as_bytes()));
        let password = form.split('&').find_map(|kv| kv.strip_prefix("password="));
        let anonymous = auth.is_empty() && password.is_none();
        return if anonymous || auth == good || password == Some(PASSWORD) {
            (
                200,
                vec![],
                format!(r#"{{"token":"{TOKEN}","access_token":"{TOKEN}"}}"#),
            )
        } else {
            (
                401,
                vec![],
                error("UNAUTHORIZED", "authentication required"),
            )
        };
    }
    let authorised = auth == format!("Bearer {TOKEN}");
    if path == "/v2/" || path == "/v2" {
        return if authorised {
            (200, vec![], "{}".into())
        } else {
            (
                401,
                challenge(None),
                error("UNAUTHORIZED", "authentication required"),
            )
        };
    }
    let Some((name, _)) = path
        .strip_prefix("/v2/")
        .and_then(|p| p.split_once("/manifests/"))
    else {
        return (
            404,
            vec![],
            error("NAME_UNKNOWN", "repository name not known to registry"),
        );
    };
    if !authorised {
        return (
            401,
            challenge(Some(&format!("repository:{name}:pull"))),
            error("UNAUTHORIZED", "authentication required"),
        );
    }
    asks.fetch_add(1, Ordering::SeqCst);
    if name.starts_with("fresh/") {
        (
            403,
            vec![],
            error("DENIED", "requested access to the resource is denied"),
        )
    } else if name.starts_with("busy/") {
        (429, vec![], error("TOOMANYREQUESTS", "retry later"))
    } else {
        (404, vec![], error("MANIFEST_UNKNOWN", "manifest unknown"))
    }
}

/// The machine's engine and the 28.5 engines of ci/engines.sh.
fn engines(test: &str) -> Vec<(String, String)> {
    engines_for(test, "20.10", |h| {
        Command::new("docker")
            .env("DOCKER_HOST", h)
            .args(["version"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn tool(sb: &Sandbox, host: &str, args: &[&str], repo: &str, creds: Option<&str>) -> Output {
    let mut env = vec![("DOCKER_HOST", host), ("RDNA1_IMAGES_REGISTRY", repo)];
    if let Some(password) = creds {
        env.push(("RDNA1_IMAGES_REGISTRY_USER", USER));
        env.push(("RDNA1_IMAGES_REGISTRY_PASSWORD", password));
    }
    // No Docker config of the machine's: the test's credentials or none.
    let config = tempfile::tempdir().unwrap();
    let config = config.path().to_str().unwrap().to_string();
    env.push(("DOCKER_CONFIG", &config));
    sb.cmd_env(args, &env)
}

#[test]
fn each_registry_answer_gets_its_exit_code_and_advice_on_every_engine() {
    const T: &str = "registry_answers";
    if !require_docker(T) {
        return;
    }
    let stub = Stub::start();
    let mut sb = Sandbox::new();
    let name = sb.recipe("fixture-ok");
    for (label, host) in engines(T) {
        let repo = |path: &str| format!("{}/{path}", stub.host);
        let asked = stub.manifest_asks.load(Ordering::SeqCst);

        // A package that does not exist yet (GHCR: DENIED): not there yet, exit 1, and no
        // word of a login, anonymous or with good credentials.
        for creds in [None, Some(PASSWORD)] {
            let o = tool(&sb, &host, &["pull", &name], &repo("fresh/pkg"), creds);
            let out = text(&o);
            assert_eq!(o.status.code(), Some(1), "{label} {creds:?}: {out}");
            assert!(out.contains("not there yet"), "{label}: {out}");
            assert!(!out.contains("check the credentials"), "{label}: {out}");
        }
        // promote looks the nightly up first: the same answer is "not in the registry".
        let o = sb.cmd_env(
            &["promote", &name, "--smoke", "cpu"],
            &[
                ("DOCKER_HOST", host.as_str()),
                ("RDNA1_IMAGES_REGISTRY", &repo("fresh/pkg")),
                ("RDNA1_IMAGES_ALLOW_CPU_PROMOTE", "1"),
            ],
        );
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{label}: {out}");
        assert!(out.contains("is not in the registry"), "{label}: {out}");

        // An empty package (404 MANIFEST_UNKNOWN): not there yet, exit 1.
        let o = tool(&sb, &host, &["pull", &name], &repo("empty/pkg"), None);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(1), "{label}: {out}");
        assert!(
            out.contains("not there yet") && out.contains("was pushed"),
            "{label}: {out}"
        );

        // Bad credentials (401 from the token realm): the environment, exit 3.
        let o = tool(
            &sb,
            &host,
            &["pull", &name],
            &repo("empty/pkg"),
            Some("wrong"),
        );
        let out = text(&o);
        assert_eq!(o.status.code(), Some(3), "{label}: {out}");
        assert!(out.contains("check the credentials"), "{label}: {out}");

        // Rate-limited (429 TOOMANYREQUESTS): exit 3, wait and retry.
        let o = tool(&sb, &host, &["pull", &name], &repo("busy/pkg"), None);
        let out = text(&o);
        assert_eq!(o.status.code(), Some(3), "{label}: {out}");
        assert!(out.contains("wait and try again"), "{label}: {out}");

        assert!(
            stub.manifest_asks.load(Ordering::SeqCst) > asked,
            "{label}: the engine never asked the stub for a manifest with its token"
        );
    }

    // The nightly's presence check on the same stub: a fresh or empty package is absent
    // (exit 1, so the nightly builds and pushes), a rate limit an error (exit 3).
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/nightly-has-tag.sh");
    for (path, code) in [("fresh/pkg", 1), ("empty/pkg", 1), ("busy/pkg", 3)] {
        let o = Command::new("bash")
            .arg(&script)
            .arg(format!("{}/{path}:{name}-0123456789ab", stub.host))
            .env("RDNA1_REGISTRY_KIND", "ghcr")
            .env("RDNA1_REGISTRY_USER", USER)
            .env("RDNA1_REGISTRY_PASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(code), "{path}: {}", text(&o));
    }
}
