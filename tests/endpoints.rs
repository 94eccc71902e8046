//! Reaching engines the way users point at them: a Docker context (DOCKER_CONTEXT and
//! `docker context use`), `ssh://` to an sshd this test starts on loopback, and tcp with
//! TLS through a stunnel bridge that verifies client certificates. `doctor --json` must
//! report each endpoint and how it was chosen; a build over ssh runs end to end.
//!
//! Needs (ci/test.sh installs them): openssh-server, openssh-client, stunnel4, openssl; the
//! 28.5 engine of ci/engines.sh for the context tests (RDNA1_ENGINE_CLASSIC).

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const MACHINE_SOCKET: &str = "/var/run/docker.sock";

fn json(o: &std::process::Output) -> serde_json::Value {
    json_result(o)
}

fn required() -> bool {
    std::env::var("RDNA1_REQUIRE_DOCKER").as_deref() == Ok("1")
}

/// A program the test needs; missing it fails under RDNA1_REQUIRE_DOCKER=1.
fn require_tool(test: &str, tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
        || Path::new(tool).is_file();
    if !found {
        if required() {
            panic!("{test}: `{tool}` is required (RDNA1_REQUIRE_DOCKER=1): run ci/test.sh, which installs it");
        }
        skip(&format!("{test}: `{tool}` is not installed"));
    }
    found
}

/// The classic-store 28.5 engine of ci/engines.sh, as a unix:// address.
fn engine_28(test: &str) -> Option<String> {
    let host = std::env::var("RDNA1_ENGINE_CLASSIC")
        .unwrap_or_else(|_| "unix:///tmp/rdna1-engines/classic/docker.sock".into());
    let ok = Command::new("docker")
        .env("DOCKER_HOST", &host)
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(host);
    }
    if required() {
        panic!("{test}: the 28.5 engine at {host} does not answer (RDNA1_REQUIRE_DOCKER=1): `bash ci/engines.sh start`");
    }
    skip(&format!(
        "{test}: no engine at {host} (bash ci/engines.sh start)"
    ));
    None
}

/// The binary with the engine chosen only by what the test gives it.
fn tool(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut c = Command::new(BIN);
    for k in [
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
    ] {
        c.env_remove(k);
    }
    c.envs(env.iter().copied()).args(args);
    c.output().unwrap()
}

fn doctor(env: &[(&str, &str)]) -> serde_json::Value {
    let o = tool(env, &["doctor", "--for", "build", "--json"]);
    json(&o)["engine"].clone()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, child: &mut Child, what: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("{what} exited during start-up: {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not listen on 127.0.0.1:{port} within 20 s");
}

/// A process this test started, killed and reaped when the test ends, pass or fail.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_ok(cmd: &mut Command) {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{cmd:?}: {}", text(&o));
}

#[test]
fn a_docker_context_reaches_its_engine_by_docker_context_and_by_current_context() {
    const T: &str = "context_reaches_engine";
    if !require_docker(T) {
        return;
    }
    let Some(host) = engine_28(T) else { return };
    let config = tempfile::tempdir().unwrap();
    let cfg = config.path().to_str().unwrap();
    // The real CLI writes the store, so the test checks our reading of its format.
    run_ok(Command::new("docker").env("DOCKER_CONFIG", cfg).args([
        "context",
        "create",
        "builder",
        "--docker",
        &format!("host={host}"),
    ]));

    let e = doctor(&[("DOCKER_CONFIG", cfg), ("DOCKER_CONTEXT", "builder")]);
    assert_eq!(e["reachable"], true, "{e}");
    assert_eq!(e["endpoint"]["host"], host.as_str(), "{e}");
    assert_eq!(e["endpoint"]["source"]["kind"], "docker_context", "{e}");
    assert_eq!(
        e["chosen_by"], "context `builder` from DOCKER_CONTEXT",
        "{e}"
    );
    // The 28.5 engine, not the machine's 20.10 behind the default socket.
    assert!(e["version"].as_str().unwrap().starts_with("28."), "{e}");
    assert_eq!(e["store"]["kind"], "classic", "{e}");
    // The driver the engine itself reports (ci/engines.sh picks it), not a copy of it.
    let driver = String::from_utf8(
        Command::new("docker")
            .env("DOCKER_HOST", &host)
            .args(["info", "--format", "{{.Driver}}"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(e["store"]["driver"], driver.trim(), "{e}");

    run_ok(
        Command::new("docker")
            .env("DOCKER_CONFIG", cfg)
            .args(["context", "use", "builder"]),
    );
    let e = doctor(&[("DOCKER_CONFIG", cfg)]);
    assert_eq!(e["reachable"], true, "{e}");
    assert_eq!(e["endpoint"]["source"]["kind"], "current_context", "{e}");
    let file = config.path().join("config.json");
    assert_eq!(
        e["chosen_by"],
        format!("context `builder` from {}", file.display()).as_str()
    );
    assert!(e["version"].as_str().unwrap().starts_with("28."), "{e}");

    // DOCKER_HOST still wins, as in the CLI.
    let e = doctor(&[
        ("DOCKER_CONFIG", cfg),
        ("DOCKER_HOST", &format!("unix://{MACHINE_SOCKET}")),
    ]);
    assert_eq!(e["chosen_by"], "DOCKER_HOST", "{e}");

    // A context whose engine is gone: named, with advice for a context, not systemctl.
    run_ok(Command::new("docker").env("DOCKER_CONFIG", cfg).args([
        "context",
        "create",
        "gone",
        "--docker",
        "host=unix:///nonexistent/docker.sock",
    ]));
    let o = tool(
        &[("DOCKER_CONFIG", cfg), ("DOCKER_CONTEXT", "gone")],
        &["clean"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        err.contains("unix:///nonexistent/docker.sock (context `gone` from DOCKER_CONTEXT)"),
        "{err}"
    );
    assert!(err.contains("docker context inspect gone"), "{err}");
    assert!(!err.contains("systemctl start docker"), "{err}");

    let o = tool(
        &[("DOCKER_CONFIG", cfg), ("DOCKER_CONTEXT", "nosuch")],
        &["clean"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no context `nosuch`"),
        "{}",
        text(&o)
    );
}

/// An sshd on a loopback port with generated keys, and an `ssh` wrapper that makes the
/// client read this test's config (ssh takes ~/.ssh/config from the passwd home, not $HOME).
struct Sshd {
    dir: tempfile::TempDir,
    _daemon: Daemon,
    port: u16,
    user: String,
}

impl Sshd {
    fn start() -> Sshd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for key in ["host_key", "id"] {
            run_ok(Command::new("ssh-keygen").args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-f",
                d.join(key).to_str().unwrap(),
            ]));
        }
        std::fs::copy(d.join("id.pub"), d.join("authorized_keys")).unwrap();
        let port = free_port();
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nListenAddress [::1]\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
                 PidFile {d}/sshd.pid\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nAllowUsers {user}\n",
                d = d.display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("ssh_config"),
            format!(
                "Host builder\n  HostName 127.0.0.1\n  Port {port}\n\
                 Host builder 127.0.0.1 ::1\n  User {user}\n  IdentityFile {d}/id\n  \
                 IdentitiesOnly yes\n  UserKnownHostsFile {d}/known_hosts\n  StrictHostKeyChecking accept-new\n",
                d = d.display()
            ),
        )
        .unwrap();
        let bin = d.join("bin");
        std::fs::create_dir(&bin).unwrap();
        let wrapper = bin.join("ssh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec /usr/bin/ssh -F {} \"$@\"\n",
                d.join("ssh_config").display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all("/run/sshd").ok(); // sshd's privilege-separation folder
        let mut child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(port, &mut child, "sshd");
        Sshd {
            dir,
            _daemon: Daemon(child),
            port,
            user,
        }
    }

    fn path(&self) -> String {
        format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    /// openssh's control sockets go under $XDG_STATE_HOME: a folder of the test's, so it can
    /// check that none is left behind.
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("PATH".into(), self.path()),
            ("XDG_STATE_HOME".into(), self.state().display().to_string()),
            ("DOCKER_HOST".into(), "ssh://builder".into()),
        ]
    }

    /// ssh processes still running for this sshd (the wrapper's `-F <this test's config>`
    /// is on their command line): one left behind after a command would be a leak.
    fn live_masters(&self) -> Vec<String> {
        let config = self.dir.path().join("ssh_config").display().to_string();
        std::fs::read_dir("/proc")
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
                    .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                    .filter(|c| c.contains(&config))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(self.state())
            .map(|r| {
                r.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn ssh_reaches_the_engine_and_a_build_runs_end_to_end_over_it() {
    const T: &str = "ssh_endpoint";
    if !require_base(T) || !require_tool(T, "/usr/sbin/sshd") || !require_tool(T, "ssh-keygen") {
        return;
    }
    let sshd = Sshd::start();
    let env = sshd.env();

    let e = doctor(&borrowed(&env));
    assert_eq!(
        e["reachable"],
        true,
        "{e}\nsshd log:\n{}",
        std::fs::read_to_string(sshd.dir.path().join("sshd.log")).unwrap_or_default()
    );
    assert_eq!(e["endpoint"]["host"], "ssh://builder", "{e}");
    assert_eq!(e["chosen_by"], "DOCKER_HOST", "{e}");
    assert_eq!(
        e["version"],
        docker_out(&["version", "--format", "{{.Server.Version}}"]).as_str()
    );
    // A remote engine's disk is not this machine's: no free-space figure from here.
    assert!(e["free_disk_bytes"].is_null(), "{e}");

    // The whole pipeline over ssh: BuildKit session, smoke container, tags.
    let mut sb = Sandbox::new();
    let name = sb.recipe("fixture-ok");
    let started = Instant::now();
    let o = sb.cmd_env(
        &["build", &name, "--smoke", "cpu", "--json"],
        &borrowed(&env),
    );
    eprintln!(
        "cold build+smoke+tag over ssh: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let b = &json(&o)[0];
    assert_eq!(b["status"], "passed", "{}", text(&o));
    assert_eq!(b["smoke"]["level"], "cpu");
    // The remote user's engine is the machine's here: the tag is where ssh led.
    let moving = format!("rdna1-images:{name}");
    assert!(
        docker(&["image", "inspect", &moving]).status.success(),
        "{moving} missing after a build over ssh: {}",
        text(&o)
    );
    assert!(containers_of(&name).is_empty());
    // No ssh may outlive the command, and nothing is left under the state folder (bollard's
    // own ssh transport, used before, left `.ssh-connection*` control folders there).
    assert!(
        sshd.live_masters().is_empty(),
        "ssh masters still running: {:?}",
        sshd.live_masters()
    );
    let left: Vec<String> = sshd
        .leftovers()
        .into_iter()
        .filter(|n| n.starts_with(".ssh-connection"))
        .collect();
    assert!(left.is_empty(), "ssh control folders left: {left:?}");

    // This host's GPU is not the remote engine's: a gpu smoke test there is refused.
    let o = sb.cmd_env(&["build", &name, "--smoke", "gpu"], &borrowed(&env));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("ssh://builder (DOCKER_HOST) is not on this machine"),
        "{err}"
    );
    assert!(err.contains("promote"), "{err}");

    // Every form of address the CLI takes, a port in it included (no ssh config names this
    // port for these hosts: it reaches ssh only from the address).
    let version = docker_out(&["version", "--format", "{{.Server.Version}}"]);
    for host in [
        format!("ssh://{}@127.0.0.1:{}", sshd.user, sshd.port),
        format!("ssh://[::1]:{}", sshd.port),
    ] {
        let mut env = sshd.env();
        env.retain(|(k, _)| k != "DOCKER_HOST");
        env.push(("DOCKER_HOST".into(), host.clone()));
        let e = doctor(&borrowed(&env));
        assert_eq!(e["reachable"], true, "{host}: {e}");
        assert_eq!(e["endpoint"]["host"], host.as_str(), "{e}");
        assert_eq!(e["version"], version.as_str(), "{host}: {e}");
        // More than a ping: the listing of the tool's labelled containers and images.
        let o = tool(&borrowed(&env), &["clean", "--dry-run"]);
        assert_eq!(o.status.code(), Some(0), "{host}: {}", text(&o));
        assert!(sshd.live_masters().is_empty(), "{:?}", sshd.live_masters());
    }
    // A port where no sshd listens: exit 3, ssh's own reason, and the command to try.
    let closed = free_port();
    let o = tool(
        &[
            ("PATH", &sshd.path()),
            (
                "DOCKER_HOST",
                &format!("ssh://{}@127.0.0.1:{closed}", sshd.user),
            ),
        ],
        &["doctor", "--for", "build"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("Connection refused"), "{out}");
    assert!(
        out.contains(&format!(
            "ssh -p {closed} {}@127.0.0.1 docker system dial-stdio",
            sshd.user
        )),
        "{out}"
    );

    // An ssh host that refuses: named, with ssh advice, not systemctl.
    let o = tool(
        &[
            ("PATH", &sshd.path()),
            ("DOCKER_HOST", "ssh://nobody@builder"),
        ],
        &["clean"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ssh://nobody@builder (DOCKER_HOST)"), "{err}");
    assert!(
        err.contains("ssh nobody@builder docker system dial-stdio"),
        "{err}"
    );
    assert!(!err.contains("systemctl"), "{err}");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, made by openssl.
fn make_certs(d: &Path) {
    let sh = format!(
        r#"set -e
cd {d}
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=rdna1-test-ca -keyout ca-key.pem -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server-key.pem -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile server.ext -out server-cert.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=client -keyout key.pem -out client.csr 2>/dev/null
printf 'extendedKeyUsage=clientAuth\n' >client.ext
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile client.ext -out cert.pem 2>/dev/null
mkdir other && cd other
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca -keyout ca-key.pem -out ca.pem 2>/dev/null
cp ../cert.pem ../key.pem .
"#,
        d = d.display()
    );
    run_ok(Command::new("sh").args(["-c", &sh]));
}

#[test]
fn tcp_with_tls_reaches_the_engine_by_docker_tls_verify_and_by_a_context() {
    const T: &str = "tls_endpoint";
    if !require_docker(T) || !require_tool(T, "stunnel") || !require_tool(T, "openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_certs(d);
    let port = free_port();
    // stunnel requires and verifies the client certificate and forwards to the machine's
    // engine: the TLS handshake is the part under test, and no second daemon or data root
    // is needed. (socat 1.7.4 sets no TLS session id context, so its OpenSSL refuses
    // rustls clients under verify=1 with "session id context uninitialized".)
    let conf = d.join("stunnel.conf");
    std::fs::write(
        &conf,
        format!(
            "foreground = yes\npid =\n[docker]\naccept = 127.0.0.1:{port}\nconnect = {MACHINE_SOCKET}\n\
             cert = {d}/server-cert.pem\nkey = {d}/server-key.pem\nCAfile = {d}/ca.pem\n\
             requireCert = yes\nverifyChain = yes\n",
            d = d.display()
        ),
    )
    .unwrap();
    let mut child = Command::new("stunnel")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("stunnel.log")).unwrap())
        .spawn()
        .unwrap();
    wait_for_port(port, &mut child, "stunnel");
    let _tunnel = Daemon(child);
    let host = format!("tcp://127.0.0.1:{port}");
    let certs = d.to_str().unwrap();

    let e = doctor(&[
        ("DOCKER_HOST", &host),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", certs),
    ]);
    assert_eq!(e["reachable"], true, "{e}");
    assert_eq!(e["endpoint"]["host"], host.as_str(), "{e}");
    assert_eq!(
        e["endpoint"]["tls"]["ca"],
        d.join("ca.pem").to_str().unwrap(),
        "{e}"
    );
    assert_eq!(
        e["version"],
        docker_out(&["version", "--format", "{{.Server.Version}}"]).as_str()
    );

    // A CA that did not sign the server: refused, and the advice is about TLS.
    let other = d.join("other");
    let o = tool(
        &[
            ("DOCKER_HOST", &host),
            ("DOCKER_TLS_VERIFY", "1"),
            ("DOCKER_CERT_PATH", other.to_str().unwrap()),
        ],
        &["clean"],
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{host} (DOCKER_HOST)")), "{err}");
    assert!(err.contains("ca.pem"), "{err}");

    // Without TLS the bridge answers nothing useful: plain HTTP is not silently used for TLS.
    let o = tool(&[("DOCKER_HOST", &host)], &["clean"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));

    // A context made by the CLI keeps its own copy of the TLS material in the store.
    let config = tempfile::tempdir().unwrap();
    let cfg = config.path().to_str().unwrap();
    run_ok(Command::new("docker").env("DOCKER_CONFIG", cfg).args([
        "context",
        "create",
        "tls",
        "--docker",
        &format!("host={host},ca={certs}/ca.pem,cert={certs}/cert.pem,key={certs}/key.pem"),
    ]));
    let e = doctor(&[("DOCKER_CONFIG", cfg), ("DOCKER_CONTEXT", "tls")]);
    assert_eq!(e["reachable"], true, "{e}");
    assert_eq!(e["chosen_by"], "context `tls` from DOCKER_CONTEXT", "{e}");
    let ca = e["endpoint"]["tls"]["ca"].as_str().unwrap().to_string();
    assert!(
        ca.starts_with(&format!("{cfg}/contexts/tls/")) && ca.ends_with("/docker/ca.pem"),
        "{ca}"
    );
}
