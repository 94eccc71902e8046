//! Which Docker engine to talk to, chosen the way the docker CLI chooses it, so that the
//! tool and the user's `docker` never talk to two different engines.
//!
//! Pure: it reads only the environment values it is given and files under the Docker
//! config folder (the context store), so it is tested with temp dirs and no daemon.
//! `engine` connects to the result.
//!
//! Order (docker/cli `resolveContextName`): `DOCKER_HOST`; `DOCKER_CONTEXT`;
//! `currentContext` in `$DOCKER_CONFIG/config.json` (default `~/.docker`); the context's
//! endpoint from the store (`contexts/meta/<sha256 of the name>/meta.json`, TLS material in
//! `contexts/tls/<sha256 of the name>/docker/`); else the local socket. The context named
//! `default` is the local socket (or `DOCKER_HOST`), as in the CLI.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

mod ssh;

pub use ssh::SshTarget;

pub const LOCAL_SOCKET: &str = "unix:///var/run/docker.sock";

/// The environment values resolution depends on; `from_process` reads the real ones.
#[derive(Debug, Clone, Default)]
pub struct EnvView {
    pub docker_host: Option<String>,
    pub docker_context: Option<String>,
    pub docker_config: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub docker_tls_verify: Option<String>,
    pub docker_cert_path: Option<PathBuf>,
}

impl EnvView {
    pub fn from_process() -> Self {
        // The CLI treats an empty variable as unset.
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        EnvView {
            docker_host: var("DOCKER_HOST"),
            docker_context: var("DOCKER_CONTEXT"),
            docker_config: var("DOCKER_CONFIG").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
            docker_tls_verify: var("DOCKER_TLS_VERIFY"),
            docker_cert_path: var("DOCKER_CERT_PATH").map(PathBuf::from),
        }
    }

    /// `$DOCKER_CONFIG`, else `~/.docker`.
    pub fn config_dir(&self) -> Option<PathBuf> {
        self.docker_config
            .clone()
            .or_else(|| self.home.as_ref().map(|h| h.join(".docker")))
    }
}

/// How the endpoint was chosen: said in `doctor` and in every "cannot reach" error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// The `DOCKER_HOST` variable.
    DockerHost,
    /// A context named by the `DOCKER_CONTEXT` variable.
    DockerContext { name: String },
    /// The `currentContext` of a Docker config file (`docker context use`).
    CurrentContext { name: String, config: PathBuf },
    /// Nothing chose one: the local socket.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::DockerHost => write!(f, "DOCKER_HOST"),
            Source::DockerContext { name } => write!(f, "context `{name}` from DOCKER_CONTEXT"),
            Source::CurrentContext { name, config } => {
                write!(f, "context `{name}` from {}", config.display())
            }
            Source::Default => write!(f, "the default local socket"),
        }
    }
}

/// TLS for a tcp endpoint: the files the client presents and trusts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    /// `unix:///...`, `tcp://host:port`, `ssh://[user@]host[:port]`.
    pub host: String,
    pub source: Source,
    pub tls: Option<Tls>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Unix,
    Tcp,
    Ssh,
    Other,
}

impl Endpoint {
    pub fn scheme(&self) -> Scheme {
        scheme_of(&self.host)
    }

    /// Whether the engine runs on this machine (its data root on our disks, our GPU its
    /// GPU): a unix socket, or tcp to a loopback address.
    pub fn is_local(&self) -> bool {
        match self.scheme() {
            Scheme::Unix => true,
            Scheme::Tcp => {
                let rest = self.host.split_once("://").map_or("", |(_, r)| r);
                let host = match rest.strip_prefix('[') {
                    Some(v6) => v6.split(']').next().unwrap_or(""),
                    None => rest.split([':', '/']).next().unwrap_or(""),
                };
                matches!(host, "127.0.0.1" | "localhost" | "::1")
            }
            _ => false,
        }
    }

    /// What to do when the engine does not answer, for this kind of endpoint and the way it
    /// was chosen: a remote or a context gets no `systemctl` advice. `permission_denied`:
    /// the connection was refused with EACCES (an I/O error of that kind in the cause).
    pub fn unreachable_advice(&self, permission_denied: bool) -> String {
        let mut advice = match self.scheme() {
            _ if permission_denied && self.is_local() => {
                "add your user to group docker: `sudo usermod -aG docker $USER`, then log out and back in (or use rootless Docker)".to_string()
            }
            Scheme::Unix if self.source == Source::Default => {
                "start it (`sudo systemctl start docker`, or `ci/ensure-docker.sh`), or point DOCKER_HOST or `docker context use` at a running engine".to_string()
            }
            Scheme::Unix => {
                "check that an engine listens on that socket (rootless Docker: `systemctl --user start docker`)".to_string()
            }
            Scheme::Ssh => {
                let command = SshTarget::parse(&self.host).map_or_else(
                    |_| format!("ssh {} docker system dial-stdio", self.host.trim_start_matches("ssh://")),
                    |t| t.to_string(),
                );
                format!(
                    "check that `{command}` works without a prompt (key or agent login, the host key known, the docker CLI on the remote user's PATH and that user allowed to use the engine)"
                )
            }
            Scheme::Tcp if self.tls.is_some() => {
                "check that the engine listens there with TLS and that its certificate is signed by the CA given (ca.pem, cert.pem, key.pem)".to_string()
            }
            Scheme::Tcp => "check that the engine listens on that address and port".to_string(),
            Scheme::Other => "use a unix://, tcp:// or ssh:// address".to_string(),
        };
        match &self.source {
            Source::DockerHost => advice.push_str("; or unset DOCKER_HOST to use the context or local socket"),
            Source::DockerContext { name } => advice.push_str(&format!(
                "; `docker context inspect {name}` shows it, or unset DOCKER_CONTEXT"
            )),
            Source::CurrentContext { name, .. } => advice.push_str(&format!(
                "; `docker context inspect {name}` shows it, `docker context use default` goes back to the local socket"
            )),
            Source::Default => {}
        }
        advice
    }
}

fn scheme_of(host: &str) -> Scheme {
    match host.split_once("://").map(|(s, _)| s) {
        Some("unix") => Scheme::Unix,
        Some("tcp") | Some("http") | Some("https") => Scheme::Tcp,
        Some("ssh") => Scheme::Ssh,
        _ => Scheme::Other,
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EndpointError {
    #[error("{chosen_by}: no context `{name}` in {store} (`docker context ls` lists them; `docker context use default` picks the local socket)")]
    NoSuchContext {
        name: String,
        chosen_by: Source,
        store: PathBuf,
    },
    #[error("{file}: {detail}")]
    BadFile { file: PathBuf, detail: String },
    #[error("{chosen_by}: {detail}")]
    Unsupported { chosen_by: Source, detail: String },
}

/// The engine to use, or why none can be chosen (a context that does not exist is an
/// error, as in the CLI, never a silent fall-back to another engine).
pub fn resolve(env: &EnvView) -> Result<Endpoint, EndpointError> {
    if let Some(host) = &env.docker_host {
        return from_docker_host(host, env);
    }
    let config_dir = env.config_dir();
    let (name, source) = if let Some(name) = &env.docker_context {
        (name.clone(), Source::DockerContext { name: name.clone() })
    } else if let Some((name, config)) = current_context(config_dir.as_deref())? {
        (name.clone(), Source::CurrentContext { name, config })
    } else {
        return Ok(default_endpoint());
    };
    if name == "default" {
        return Ok(default_endpoint());
    }
    let Some(dir) = config_dir else {
        return Err(EndpointError::Unsupported {
            chosen_by: source,
            detail: "neither DOCKER_CONFIG nor HOME is set, so there is no context store to read"
                .into(),
        });
    };
    from_context(&dir, &name, source)
}

fn default_endpoint() -> Endpoint {
    Endpoint {
        host: LOCAL_SOCKET.into(),
        source: Source::Default,
        tls: None,
    }
}

fn from_docker_host(host: &str, env: &EnvView) -> Result<Endpoint, EndpointError> {
    let source = Source::DockerHost;
    check_host(host, &source)?;
    let tls = match (&env.docker_tls_verify, scheme_of(host)) {
        (Some(_), Scheme::Tcp) => {
            let dir = env
                .docker_cert_path
                .clone()
                .or_else(|| env.config_dir())
                .ok_or_else(|| EndpointError::Unsupported {
                    chosen_by: source.clone(),
                    detail: "DOCKER_TLS_VERIFY is set but neither DOCKER_CERT_PATH nor HOME names the certificate folder".into(),
                })?;
            Some(tls_files(&dir, &source, "DOCKER_CERT_PATH")?)
        }
        _ => None,
    };
    Ok(Endpoint {
        host: host.to_string(),
        source,
        tls,
    })
}

fn check_host(host: &str, source: &Source) -> Result<(), EndpointError> {
    let unsupported = |detail: String| EndpointError::Unsupported {
        chosen_by: source.clone(),
        detail,
    };
    match scheme_of(host) {
        Scheme::Other => Err(unsupported(format!(
            "`{host}` is not an engine address this tool can use: give unix:///path, tcp://host:port or ssh://[user@]host[:port]"
        ))),
        Scheme::Ssh => SshTarget::parse(host).map(|_| ()).map_err(unsupported),
        _ => Ok(()),
    }
}

/// sha256 of the name, hex: the folder the CLI keeps a context under.
pub fn context_dir_name(name: &str) -> String {
    crate::hex::encode(Sha256::digest(name.as_bytes()))
}

fn current_context(config_dir: Option<&Path>) -> Result<Option<(String, PathBuf)>, EndpointError> {
    let Some(dir) = config_dir else {
        return Ok(None);
    };
    let file = dir.join("config.json");
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(EndpointError::BadFile {
                file,
                detail: format!("cannot read it: {e}"),
            })
        }
    };
    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(rename = "currentContext", default)]
        current_context: Option<String>,
    }
    let c: Config = serde_json::from_str(&text).map_err(|e| EndpointError::BadFile {
        file: file.clone(),
        detail: format!("not valid JSON ({e}); fix or remove the file"),
    })?;
    Ok(c.current_context
        .filter(|n| !n.is_empty())
        .map(|n| (n, file)))
}

fn from_context(config_dir: &Path, name: &str, source: Source) -> Result<Endpoint, EndpointError> {
    let id = context_dir_name(name);
    let store = config_dir.join("contexts");
    let meta = store.join("meta").join(&id).join("meta.json");
    let text = match std::fs::read_to_string(&meta) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(EndpointError::NoSuchContext {
                name: name.into(),
                chosen_by: source,
                store,
            })
        }
        Err(e) => {
            return Err(EndpointError::BadFile {
                file: meta,
                detail: format!("cannot read it: {e}"),
            })
        }
    };
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(rename = "Endpoints", default)]
        endpoints: std::collections::BTreeMap<String, DockerEndpoint>,
    }
    #[derive(serde::Deserialize)]
    struct DockerEndpoint {
        #[serde(rename = "Host", default)]
        host: Option<String>,
        #[serde(rename = "SkipTLSVerify", default)]
        skip_tls_verify: bool,
    }
    let m: Meta = serde_json::from_str(&text).map_err(|e| EndpointError::BadFile {
        file: meta.clone(),
        detail: format!("not a Docker context ({e})"),
    })?;
    let Some(ep) = m.endpoints.get("docker") else {
        return Err(EndpointError::BadFile {
            file: meta,
            detail: format!("context `{name}` has no docker endpoint"),
        });
    };
    let host = ep
        .host
        .clone()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| EndpointError::BadFile {
            file: meta.clone(),
            detail: format!("context `{name}` has no Endpoints.docker.Host"),
        })?;
    check_host(&host, &source)?;
    let tls_dir = store.join("tls").join(&id).join("docker");
    let tls = if scheme_of(&host) == Scheme::Tcp && tls_dir.is_dir() {
        if ep.skip_tls_verify {
            return Err(EndpointError::Unsupported {
                chosen_by: source,
                detail: format!(
                    "context `{name}` sets SkipTLSVerify, and this tool always verifies the engine's certificate: give the context the engine's CA (`docker context update {name} --docker \"host={host},ca=...,cert=...,key=...\"`)"
                ),
            });
        }
        Some(tls_files(&tls_dir, &source, "the context's TLS folder")?)
    } else {
        None
    };
    Ok(Endpoint { host, source, tls })
}

fn tls_files(dir: &Path, source: &Source, what: &str) -> Result<Tls, EndpointError> {
    let tls = Tls {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    let missing: Vec<&str> = [
        ("ca.pem", &tls.ca),
        ("cert.pem", &tls.cert),
        ("key.pem", &tls.key),
    ]
    .into_iter()
    .filter(|(_, p)| !p.is_file())
    .map(|(n, _)| n)
    .collect();
    if !missing.is_empty() {
        return Err(EndpointError::Unsupported {
            chosen_by: source.clone(),
            detail: format!(
                "TLS needs ca.pem, cert.pem and key.pem in {} ({what}); missing: {}",
                dir.display(),
                missing.join(", ")
            ),
        });
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn context(config: &Path, name: &str, host: &str, skip: bool) {
        write(
            &config
                .join("contexts/meta")
                .join(context_dir_name(name))
                .join("meta.json"),
            &format!(
                r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":{skip}}}}}}}"#
            ),
        );
    }

    fn tls(dir: &Path) {
        for f in ["ca.pem", "cert.pem", "key.pem"] {
            write(&dir.join(f), "pem");
        }
    }

    fn env_with(config: &Path) -> EnvView {
        EnvView {
            docker_config: Some(config.to_path_buf()),
            ..Default::default()
        }
    }

    #[test]
    fn the_store_folder_is_the_sha256_of_the_name() {
        // The folder `docker context create builder` (20.10) made for this name.
        assert_eq!(
            context_dir_name("builder"),
            "df6b07176a9b17cc4c9afc257bd404732e7d09b76436c7890f7b7be14e579794"
        );
    }

    #[test]
    fn nothing_set_is_the_local_socket() {
        let dir = tempfile::tempdir().unwrap();
        let e = resolve(&env_with(dir.path())).unwrap();
        assert_eq!(e.host, LOCAL_SOCKET);
        assert_eq!(e.source, Source::Default);
        assert!(e
            .unreachable_advice(false)
            .contains("systemctl start docker"));
    }

    #[test]
    fn docker_host_wins_over_every_context() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join("config.json"),
            r#"{"currentContext":"builder"}"#,
        );
        context(dir.path(), "builder", "ssh://builder", false);
        let env = EnvView {
            docker_host: Some("unix:///tmp/x.sock".into()),
            docker_context: Some("builder".into()),
            ..env_with(dir.path())
        };
        let e = resolve(&env).unwrap();
        assert_eq!(
            (e.host.as_str(), &e.source),
            ("unix:///tmp/x.sock", &Source::DockerHost)
        );
        let advice = e.unreachable_advice(false);
        assert!(advice.contains("unset DOCKER_HOST"), "{advice}");
        assert!(!advice.contains("systemctl start docker"), "{advice}");
    }

    #[test]
    fn docker_context_wins_over_current_context() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join("config.json"),
            r#"{"auths":{},"currentContext":"other"}"#,
        );
        context(dir.path(), "other", "unix:///other.sock", false);
        context(dir.path(), "builder", "ssh://me@builder", false);
        let env = EnvView {
            docker_context: Some("builder".into()),
            ..env_with(dir.path())
        };
        let e = resolve(&env).unwrap();
        assert_eq!(e.host, "ssh://me@builder");
        assert_eq!(
            e.source.to_string(),
            "context `builder` from DOCKER_CONTEXT"
        );
        let advice = e.unreachable_advice(false);
        assert!(
            advice.contains("ssh me@builder docker system dial-stdio"),
            "{advice}"
        );
        assert!(!advice.contains("systemctl"), "{advice}");
    }

    #[test]
    fn current_context_from_config_json_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        write(&config, r#"{"currentContext":"builder"}"#);
        context(dir.path(), "builder", "unix:///run/builder.sock", false);
        let e = resolve(&env_with(dir.path())).unwrap();
        assert_eq!(e.host, "unix:///run/builder.sock");
        assert_eq!(
            e.source.to_string(),
            format!("context `builder` from {}", config.display())
        );
        assert!(e
            .unreachable_advice(false)
            .contains("docker context use default"));
    }

    #[test]
    fn home_docker_is_the_default_config_folder() {
        let home = tempfile::tempdir().unwrap();
        let cfg = home.path().join(".docker");
        write(&cfg.join("config.json"), r#"{"currentContext":"builder"}"#);
        context(&cfg, "builder", "tcp://10.0.0.2:2375", false);
        let env = EnvView {
            home: Some(home.path().to_path_buf()),
            ..Default::default()
        };
        assert_eq!(resolve(&env).unwrap().host, "tcp://10.0.0.2:2375");
    }

    #[test]
    fn the_default_context_is_the_local_socket() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join("config.json"),
            r#"{"currentContext":"default"}"#,
        );
        assert_eq!(
            resolve(&env_with(dir.path())).unwrap().source,
            Source::Default
        );
        let env = EnvView {
            docker_context: Some("default".into()),
            ..env_with(dir.path())
        };
        assert_eq!(resolve(&env).unwrap().host, LOCAL_SOCKET);
    }

    #[test]
    fn a_missing_context_is_an_error_not_a_fall_back() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join("config.json"),
            r#"{"currentContext":"gone"}"#,
        );
        let err = resolve(&env_with(dir.path())).unwrap_err().to_string();
        assert!(err.contains("no context `gone`"), "{err}");
        assert!(err.contains("config.json"), "{err}");
        assert!(err.contains("docker context ls"), "{err}");
    }

    #[test]
    fn a_broken_config_or_meta_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        write(&config, "{\"currentContext\": ");
        let err = resolve(&env_with(dir.path())).unwrap_err().to_string();
        assert!(err.starts_with(&config.display().to_string()), "{err}");
        assert!(err.contains("line 1"), "{err}");

        write(&config, r#"{"currentContext":"b"}"#);
        let meta = dir
            .path()
            .join("contexts/meta")
            .join(context_dir_name("b"))
            .join("meta.json");
        write(&meta, r#"{"Name":"b","Endpoints":{}}"#);
        let err = resolve(&env_with(dir.path())).unwrap_err().to_string();
        assert!(
            err.contains("meta.json") && err.contains("no docker endpoint"),
            "{err}"
        );
    }

    #[test]
    fn a_tcp_context_with_tls_material_uses_it() {
        let dir = tempfile::tempdir().unwrap();
        context(dir.path(), "tls", "tcp://127.0.0.1:2376", false);
        let tls_dir = dir
            .path()
            .join("contexts/tls")
            .join(context_dir_name("tls"))
            .join("docker");
        tls(&tls_dir);
        let env = EnvView {
            docker_context: Some("tls".into()),
            ..env_with(dir.path())
        };
        let e = resolve(&env).unwrap();
        assert_eq!(e.tls.as_ref().unwrap().ca, tls_dir.join("ca.pem"));
        assert!(e.unreachable_advice(false).contains("ca.pem"));

        std::fs::remove_file(tls_dir.join("key.pem")).unwrap();
        let err = resolve(&env).unwrap_err().to_string();
        assert!(err.contains("missing: key.pem"), "{err}");

        tls(&tls_dir);
        context(dir.path(), "tls", "tcp://127.0.0.1:2376", true);
        let err = resolve(&env).unwrap_err().to_string();
        assert!(err.contains("SkipTLSVerify"), "{err}");
    }

    #[test]
    fn tls_verify_reads_the_cert_path() {
        let certs = tempfile::tempdir().unwrap();
        tls(certs.path());
        let env = EnvView {
            docker_host: Some("tcp://127.0.0.1:2376".into()),
            docker_tls_verify: Some("1".into()),
            docker_cert_path: Some(certs.path().to_path_buf()),
            ..Default::default()
        };
        let e = resolve(&env).unwrap();
        assert_eq!(e.tls.unwrap().key, certs.path().join("key.pem"));
        // Without DOCKER_TLS_VERIFY a tcp address is plain HTTP, as in the CLI.
        let plain = EnvView {
            docker_tls_verify: None,
            ..env
        };
        assert!(resolve(&plain).unwrap().tls.is_none());
    }

    #[test]
    fn only_sockets_and_loopback_are_this_machine() {
        let at = |h: &str| Endpoint {
            host: h.into(),
            source: Source::DockerHost,
            tls: None,
        };
        assert!(at("unix:///run/user/1000/docker.sock").is_local());
        assert!(at("tcp://127.0.0.1:2376").is_local());
        assert!(at("tcp://[::1]:2376").is_local());
        assert!(at("tcp://localhost:2375").is_local());
        assert!(!at("tcp://10.0.0.5:2376").is_local());
        assert!(!at("tcp://localhost.example.org:2376").is_local());
        assert!(!at("ssh://builder").is_local());
    }

    #[test]
    fn addresses_that_cannot_work_are_refused_with_the_reason() {
        let env = |h: &str| EnvView {
            docker_host: Some(h.into()),
            ..Default::default()
        };
        // Every form the docker CLI takes, a port included.
        for ok in [
            "ssh://me@builder:2222",
            "ssh://[::1]:2222",
            "ssh://builder/",
        ] {
            assert_eq!(resolve(&env(ok)).unwrap().host, ok);
        }
        let err = resolve(&env("ssh://me@builder:99999"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not 1 to 65535"), "{err}");
        assert!(err.starts_with("DOCKER_HOST"), "{err}");
        let err = resolve(&env("npipe:////./pipe/docker"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unix:///path, tcp://host:port or ssh://"),
            "{err}"
        );
        assert!(resolve(&env("ssh://")).is_err());
        assert!(resolve(&env("ssh://me@builder")).is_ok());
    }
}
