//! The registry side, pure parts: the repository reference, the tags of each channel, the
//! smoke report a puller reads, and where credentials come from. No daemon, no network:
//! `engine::registry` does the pushing and pulling, `distribute` sequences it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::smoke::Level;
use crate::values::reference::{self, Reference, ReferenceError};

/// The local repository every image the tool builds is tagged in (`rdna1-images:<recipe>`),
/// whatever registry it is pushed to.
pub const REPOSITORY: &str = "rdna1-images";

/// The repository pre-built images are published to, unless `--registry` or
/// `RDNA1_IMAGES_REGISTRY` names another one.
pub const DEFAULT_REGISTRY: &str = "ghcr.io/rdna1-images/rdna1-images";
pub const REGISTRY_ENV: &str = "RDNA1_IMAGES_REGISTRY";
pub const USER_ENV: &str = "RDNA1_IMAGES_REGISTRY_USER";
pub const PASSWORD_ENV: &str = "RDNA1_IMAGES_REGISTRY_PASSWORD";

/// Labels of the smoke-report image (see [`PassReport`]).
pub mod labels {
    pub const ROLE_REPORT: &str = "smoke-report";
    pub const LEVEL: &str = "io.github.rdna1-images.smoke-level";
    pub const TESTED_IMAGE: &str = "io.github.rdna1-images.tested-image";
    pub const TESTED_AT: &str = "io.github.rdna1-images.tested-at";
    /// Every case's verdict, `case=verdict` joined by `,` (the compatibility table in a label,
    /// readable from the registry's config blob without pulling a layer).
    pub const COMPAT: &str = "io.github.rdna1-images.compat";
}

/// Bad input about the registry: exit code 2.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RegistryInputError {
    #[error("registry repository `{given}`: {why}\n  give it as HOST[:PORT]/PATH, e.g. {DEFAULT_REGISTRY} or 127.0.0.1:5000/rdna1-images")]
    Repository { given: String, why: String },
    #[error("tag `{0}`: a tag is 1 to 128 of A-Z a-z 0-9 _ . - and does not start with . or -")]
    Tag(String),
    #[error(
        "{USER_ENV} is set but no password was given: set {PASSWORD_ENV} or pass --password-stdin"
    )]
    UserWithoutPassword,
    #[error("--password-stdin needs the user name in {USER_ENV}")]
    PasswordWithoutUser,
    #[error("--password-stdin read an empty password")]
    EmptyPassword,
}

/// A registry repository: `host[:port]/path`, without tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// `ghcr.io`, `127.0.0.1:5000`: the key for credentials.
    pub host: String,
    /// `rdna1-images/rdna1-images`.
    pub path: String,
}

impl Repository {
    /// Parses and validates a repository. The host must be explicit (a dot, a port or
    /// `localhost`): a bare `owner/name` would silently mean Docker Hub.
    pub fn parse(given: &str) -> Result<Repository, RegistryInputError> {
        let bad = |why: &str| RegistryInputError::Repository {
            given: given.to_string(),
            why: why.to_string(),
        };
        if given.contains("://") {
            return Err(bad("no scheme: the engine picks https (http for loopback)"));
        }
        let (host, path) = given
            .split_once('/')
            .ok_or_else(|| bad("no path after the registry host"))?;
        if !(host.contains('.') || host.contains(':') || host == "localhost") {
            return Err(bad(
                "the first part must be a registry host (with a dot or a port, or localhost)",
            ));
        }
        // Docker's reference grammar (`values::reference`), the one the recipes and
        // `promote --image` use too; the host is checked before the tag rule below.
        if !reference::is_domain(host) {
            return Err(bad(&ReferenceError::Domain(host.to_string()).to_string()));
        }
        if path.contains('@') || path.contains(':') {
            return Err(bad(
                "a repository has no tag or digest: the tool chooses the tags",
            ));
        }
        let parsed = Reference::parse(given).map_err(|e| bad(&e.to_string()))?;
        Ok(Repository {
            host: parsed.domain().unwrap_or(host).to_string(),
            path: parsed.path().to_string(),
        })
    }

    /// `host/path`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.host, self.path)
    }

    /// `host/path:tag`.
    pub fn reference(&self, tag: &str) -> String {
        format!("{}/{}:{tag}", self.host, self.path)
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.path)
    }
}

/// Checks a tag the user gave (`pull --tag`).
pub fn validate_tag(tag: &str) -> Result<(), RegistryInputError> {
    if crate::values::reference::is_tag(tag) {
        Ok(())
    } else {
        Err(RegistryInputError::Tag(tag.to_string()))
    }
}

/// The two channels. Nightly: passed the cpu smoke test. Stable: passed the gpu one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Nightly,
    Stable,
}

impl Channel {
    /// The lowest smoke level an image must have passed to carry this channel's tags.
    pub fn required_level(self) -> Level {
        match self {
            Channel::Nightly => Level::Cpu,
            Channel::Stable => Level::Gpu,
        }
    }

    /// The moving tag `pull --channel` fetches.
    pub fn tag(self, recipe: &str) -> String {
        match self {
            Channel::Nightly => format!("{recipe}-nightly"),
            Channel::Stable => recipe.to_string(),
        }
    }

    /// Every tag of the channel for one image. `date` is `YYYYMMDD` (UTC, push time).
    pub fn tags(self, recipe: &str, digest12: &str, date: &str, recommended: bool) -> Vec<String> {
        match self {
            Channel::Nightly => vec![
                format!("{recipe}-nightly"),
                format!("{recipe}-{date}"),
                format!("{recipe}-{digest12}"),
            ],
            Channel::Stable => {
                let mut t = vec![recipe.to_string()];
                if recommended {
                    t.push("latest".to_string());
                }
                t
            }
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Channel::Nightly => "nightly",
            Channel::Stable => "stable",
        })
    }
}

/// The channels an image that passed `level` may be published in, strongest last.
pub fn channels_for(level: Level) -> Vec<Channel> {
    [Channel::Nightly, Channel::Stable]
        .into_iter()
        .filter(|c| crate::smoke::covers(Some(level), c.required_level()))
        .collect()
}

/// The tag of the smoke report for the image `<recipe>-<digest12>` at `level`: it sits in
/// the same repository, so whoever can pull the image can read how it was tested.
pub fn report_tag(recipe: &str, digest12: &str, level: Level) -> String {
    format!("{recipe}-{digest12}-smoke-{level}")
}

/// The record of a passed smoke test, kept as a tiny image beside the image it is about
/// (tag [`report_tag`]): `/smoke-report.json` holds this as JSON; the labels in
/// [`labels`] repeat the fields a puller needs, readable with `docker inspect` or from the
/// registry's config blob without pulling any layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassReport {
    pub schema: u32,
    pub recipe: String,
    pub input_digest: String,
    /// The image id (config digest) the test ran on: the same on every engine that pulls it.
    pub image_id: String,
    pub level: Level,
    /// RFC 3339, UTC.
    pub tested_at: String,
    pub tool_version: String,
    /// The smoke program's own report.
    pub smoke: serde_json::Value,
    /// The compatibility table: every case's verdict, first-call and steady time and max
    /// error, beside what the recipe expects (empty in reports of older versions).
    #[serde(default)]
    pub cases: Vec<crate::smoke::CompatRow>,
}

impl PassReport {
    /// The labels the report image carries. Values are plain tokens (no spaces or quotes),
    /// so they pass through the engine's `LABEL k=v` change lines unquoted.
    pub fn labels(&self) -> Vec<(String, String)> {
        vec![
            (crate::labels::RECIPE.into(), self.recipe.clone()),
            (
                crate::labels::INPUT_DIGEST.into(),
                self.input_digest.clone(),
            ),
            (crate::labels::ROLE.into(), labels::ROLE_REPORT.into()),
            // So `clean` finds a report that lost its tag.
            (crate::labels::MANAGED.into(), "true".into()),
            (labels::LEVEL.into(), self.level.to_string()),
            (labels::TESTED_IMAGE.into(), self.image_id.clone()),
            (labels::TESTED_AT.into(), self.tested_at.clone()),
            (labels::COMPAT.into(), self.compat_label()),
        ]
    }

    /// `medium=pass,large=pass,int_mm=unsupported,sdpa=n/a`: case names are recipe-validated
    /// identifiers and verdicts fixed words, so the value is a plain token; anything else is
    /// dropped rather than let into a `LABEL` line.
    pub fn compat_label(&self) -> String {
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'))
        };
        self.cases
            .iter()
            .filter(|r| plain(&r.case) && plain(&r.verdict))
            .map(|r| format!("{}={}", r.case, r.verdict))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What a puller learns from a report image's labels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestedLevel {
    pub level: Level,
    pub tested_at: String,
    pub report: String,
}

/// A secret that never prints: Debug and Display show `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The only way to the value: for the engine's X-Registry-Auth header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where the credentials came from (said in the output; the secret never is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialSource {
    /// RDNA1_IMAGES_REGISTRY_USER + RDNA1_IMAGES_REGISTRY_PASSWORD.
    Environment,
    /// RDNA1_IMAGES_REGISTRY_USER + --password-stdin.
    Stdin,
    /// ~/.docker/config.json (or $DOCKER_CONFIG), its `auths` or a credential helper.
    DockerConfig,
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CredentialSource::Environment => "RDNA1_IMAGES_REGISTRY_USER/_PASSWORD",
            CredentialSource::Stdin => "RDNA1_IMAGES_REGISTRY_USER and --password-stdin",
            CredentialSource::DockerConfig => "the Docker config (or its credential helper)",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Credential {
    UsernamePassword { username: String, password: Secret },
    IdentityToken(Secret),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Credentials {
    pub host: String,
    pub credential: Credential,
    pub source: CredentialSource,
}

impl Credentials {
    /// The user name, for messages (a token has none).
    pub fn who(&self) -> String {
        match &self.credential {
            Credential::UsernamePassword { username, .. } => format!("user {username}"),
            Credential::IdentityToken(_) => "an identity token".into(),
        }
    }
}

/// What the Docker config said for a host; the caller runs the lookup (blocking: a
/// credential helper is a process) and passes its result in.
pub enum DockerConfigLookup {
    Found(Credential),
    /// No config file, or nothing configured for the host: go anonymous.
    Nothing,
    /// A helper or the file failed: the message must not contain the helper's stdout.
    Failed(String),
}

/// Picks the credentials for `host`, in this order: the tool's own environment variables
/// (password from `--password-stdin` or RDNA1_IMAGES_REGISTRY_PASSWORD), then the Docker
/// config. `Ok(None)` is anonymous access. `Err(Ok(e))` is bad input (exit 2), `Err(Err(s))`
/// a failing credential helper (exit 3).
#[allow(clippy::type_complexity)]
pub fn resolve_credentials(
    host: &str,
    user: Option<String>,
    password_env: Option<String>,
    password_stdin: Option<String>,
    docker_config: impl FnOnce() -> DockerConfigLookup,
) -> Result<Option<Credentials>, Result<RegistryInputError, String>> {
    let user = user.filter(|u| !u.is_empty());
    match (user, password_stdin) {
        (Some(username), Some(pw)) => {
            let pw = pw.trim_end_matches(['\n', '\r']).to_string();
            if pw.is_empty() {
                return Err(Ok(RegistryInputError::EmptyPassword));
            }
            Ok(Some(Credentials {
                host: host.into(),
                credential: Credential::UsernamePassword {
                    username,
                    password: Secret::new(pw),
                },
                source: CredentialSource::Stdin,
            }))
        }
        (None, Some(_)) => Err(Ok(RegistryInputError::PasswordWithoutUser)),
        (Some(username), None) => match password_env.filter(|p| !p.is_empty()) {
            Some(pw) => Ok(Some(Credentials {
                host: host.into(),
                credential: Credential::UsernamePassword {
                    username,
                    password: Secret::new(pw),
                },
                source: CredentialSource::Environment,
            })),
            None => Err(Ok(RegistryInputError::UserWithoutPassword)),
        },
        (None, None) => match docker_config() {
            DockerConfigLookup::Found(credential) => Ok(Some(Credentials {
                host: host.into(),
                credential,
                source: CredentialSource::DockerConfig,
            })),
            DockerConfigLookup::Nothing => Ok(None),
            DockerConfigLookup::Failed(why) => Err(Err(why)),
        },
    }
}

/// `2025-11-25T...` -> `20251125`, the date tag of the nightly channel.
pub fn date_tag(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%Y%m%d").to_string()
}

/// The pushed digest from the engine's last push status line
/// (`<tag>: digest: sha256:<hex> size: <n>`).
pub fn pushed_digest(status: &str) -> Option<String> {
    let rest = status.split("digest: ").nth(1)?;
    let digest = rest.split_whitespace().next()?;
    crate::hex::is_sha256_digest(digest).then(|| digest.to_string())
}

/// The error codes of the OCI distribution spec ("Error codes"), which a registry puts in
/// `{"errors":[{"code":...}]}` and the engine passes on in its message, written as Docker's
/// `errcode` writes them: lower case, `_` as a space (`manifest unknown: <message>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
}

impl ErrorCode {
    const ALL: [(ErrorCode, &'static str); 14] = [
        (ErrorCode::BlobUnknown, "BLOB_UNKNOWN"),
        (ErrorCode::BlobUploadInvalid, "BLOB_UPLOAD_INVALID"),
        (ErrorCode::BlobUploadUnknown, "BLOB_UPLOAD_UNKNOWN"),
        (ErrorCode::DigestInvalid, "DIGEST_INVALID"),
        (ErrorCode::ManifestBlobUnknown, "MANIFEST_BLOB_UNKNOWN"),
        (ErrorCode::ManifestInvalid, "MANIFEST_INVALID"),
        (ErrorCode::ManifestUnknown, "MANIFEST_UNKNOWN"),
        (ErrorCode::NameInvalid, "NAME_INVALID"),
        (ErrorCode::NameUnknown, "NAME_UNKNOWN"),
        (ErrorCode::SizeInvalid, "SIZE_INVALID"),
        (ErrorCode::Unauthorized, "UNAUTHORIZED"),
        (ErrorCode::Denied, "DENIED"),
        (ErrorCode::Unsupported, "UNSUPPORTED"),
        (ErrorCode::TooManyRequests, "TOOMANYREQUESTS"),
    ];

    /// The code a piece of a message is: `DENIED` as the spec writes it, or `denied`,
    /// `manifest unknown` as the engine does.
    pub fn parse(piece: &str) -> Option<ErrorCode> {
        let piece = piece.trim();
        Self::ALL.iter().find_map(|(code, spec)| {
            (piece == *spec || piece == spec.to_ascii_lowercase().replace('_', " "))
                .then_some(*code)
        })
    }
}

/// What the engine said about a registry, read into data: the HTTP status of the engine's
/// own answer (when the failure came as one: after streaming began it comes in the stream,
/// without), the distribution-spec code the registry gave, the status the registry answered
/// with where the engine names it (`received unexpected HTTP status: 503 ...`), and whether
/// the engine never got an answer at all (Go's `dial tcp`, `lookup`, `tls:` errors).
///
/// The engine passes a registry's error on as a chain of `: `-joined parts
/// (`Head "http://...": denied: requested access to the resource is denied`; containerd puts
/// one error a line); each part is looked at whole, never searched for words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegistryAnswer {
    pub engine_status: Option<u16>,
    pub code: Option<ErrorCode>,
    pub registry_status: Option<u16>,
    pub no_answer: bool,
}

impl RegistryAnswer {
    pub fn read(engine_status: Option<u16>, message: &str) -> RegistryAnswer {
        let parts: Vec<&str> = message
            .lines()
            .flat_map(|l| l.split(": "))
            .map(str::trim)
            .collect();
        // Docker's own words for a Basic challenge it had no credentials to answer: the
        // registry's 401, as UNAUTHORIZED.
        // containerd's for a token the realm would not give for this scope (RFC 6750
        // `insufficient_scope`): the registry's refusal, as DENIED.
        let code = parts.iter().find_map(|p| match *p {
            "no basic auth credentials" => Some(ErrorCode::Unauthorized),
            "insufficient_scope" => Some(ErrorCode::Denied),
            p => ErrorCode::parse(p),
        });
        // The status itself where the engine names it: Docker's `received unexpected HTTP
        // status: 503 Service Unavailable`, containerd's `unexpected status from HEAD
        // request to <url>: 401 Unauthorized`.
        let registry_status = parts
            .windows(2)
            .find(|w| {
                w[0].ends_with("received unexpected HTTP status")
                    || w[0].starts_with("unexpected status from ")
            })
            .and_then(|w| w[1].split_whitespace().next()?.parse().ok());
        // Go's net, tls and x509 errors: the engine reached no registry.
        let no_answer = code.is_none()
            && registry_status.is_none()
            && parts.iter().any(|p| {
                [
                    "dial tcp ",
                    "dial udp ",
                    "lookup ",
                    "tls: ",
                    "x509: ",
                    "net/http: ",
                ]
                .iter()
                .any(|start| p.starts_with(start))
                    || matches!(
                        *p,
                        "EOF"
                            | "connection refused"
                            | "connection reset by peer"
                            | "i/o timeout"
                            | "no such host"
                            | "http: server gave HTTP response to HTTPS client"
                    )
            });
        RegistryAnswer {
            engine_status,
            code,
            registry_status,
            no_answer,
        }
    }
}

/// What was asked of the registry: a refusal means something else for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryOp {
    /// Is this tag there, and its digest?
    Lookup,
    Pull,
    Push,
}

/// How a registry failure is classed, for the exit code and the advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryFailure {
    /// Connection refused, DNS, TLS, timeouts, the registry's own 5xx: exit 3.
    Unreachable,
    /// Missing or wrong credentials (UNAUTHORIZED, 401), or a push refused (DENIED): exit 3.
    Auth,
    /// TOOMANYREQUESTS, 429: exit 3.
    RateLimited,
    /// The tag or repository is not there (MANIFEST_UNKNOWN, NAME_UNKNOWN, 404): exit 1.
    NotFound,
    /// A read refused with DENIED (403): GHCR's answer for a package that does not exist
    /// yet, and for a private one these credentials may not read; "not there yet": exit 1.
    NotThereYet,
    /// Anything else the registry or engine refused: exit 1.
    Other,
}

impl RegistryFailure {
    /// The class of `answer` to `op`: the registry's code first (it says the most), then the
    /// engine's status, then whether there was an answer at all.
    pub fn of(op: RegistryOp, answer: &RegistryAnswer) -> RegistryFailure {
        use ErrorCode as C;
        use RegistryFailure as F;
        let denied = match op {
            RegistryOp::Push => F::Auth,
            RegistryOp::Lookup | RegistryOp::Pull => F::NotThereYet,
        };
        match answer.code {
            Some(C::Unauthorized) => return F::Auth,
            Some(C::Denied) => return denied,
            Some(C::TooManyRequests) => return F::RateLimited,
            Some(C::ManifestUnknown | C::NameUnknown) => return F::NotFound,
            Some(_) => return F::Other,
            None => {}
        }
        match (answer.engine_status, answer.registry_status) {
            (Some(401), _) | (_, Some(401)) => F::Auth,
            (Some(403), _) | (_, Some(403)) => denied,
            (Some(429), _) | (_, Some(429)) => F::RateLimited,
            (Some(404), _) | (_, Some(404)) => F::NotFound,
            (_, Some(500..=599)) => F::Unreachable,
            _ if answer.no_answer => F::Unreachable,
            _ => F::Other,
        }
    }

    pub fn exit_code(self) -> i32 {
        match self {
            RegistryFailure::Unreachable | RegistryFailure::Auth | RegistryFailure::RateLimited => {
                3
            }
            RegistryFailure::NotFound | RegistryFailure::NotThereYet | RegistryFailure::Other => 1,
        }
    }

    /// What to do next, per class.
    pub fn advice(self) -> &'static str {
        match self {
            RegistryFailure::Unreachable => "check the registry address (--registry / RDNA1_IMAGES_REGISTRY) and that the registry is up and reachable from the Docker engine",
            RegistryFailure::Auth => "check the credentials: `docker login <host>`, or RDNA1_IMAGES_REGISTRY_USER with RDNA1_IMAGES_REGISTRY_PASSWORD or --password-stdin (a push also needs write access to the package)",
            RegistryFailure::RateLimited => "the registry limits requests: wait and try again, or log in (logged-in users get a higher limit)",
            RegistryFailure::NotFound => "not there yet: check the tag (`--tag`, `--channel`) and that it was pushed (`rdna1-images push <recipe>`)",
            RegistryFailure::NotThereYet => "not there yet, or not readable with these credentials: the registry answered DENIED, which GHCR says for a package that was never pushed (`rdna1-images push <recipe>` creates it) as well as for a private one (`docker login <host>` with read access)",
            RegistryFailure::Other => "see the registry's message above",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_parse_with_explicit_hosts_only() {
        let r = Repository::parse(DEFAULT_REGISTRY).unwrap();
        assert_eq!(r.host, "ghcr.io");
        assert_eq!(r.path, "rdna1-images/rdna1-images");
        assert_eq!(
            r.reference("rocm52"),
            "ghcr.io/rdna1-images/rdna1-images:rocm52"
        );
        let r = Repository::parse("127.0.0.1:5000/t").unwrap();
        assert_eq!(r.host, "127.0.0.1:5000");
        assert_eq!(Repository::parse("localhost/a/b").unwrap().path, "a/b");
        for (bad, why) in [
            ("owner/name", "registry host"),
            ("ghcr.io", "no path"),
            ("https://ghcr.io/a", "no scheme"),
            ("ghcr.io/a:tag", "no tag"),
            ("ghcr.io/Upper", "lowercase"),
            ("ghcr.io/a//b", "path component"),
            ("ghcr.io/-a", "path component"),
        ] {
            let e = Repository::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn tags_are_validated() {
        validate_tag("rocm52-nightly").unwrap();
        validate_tag("latest").unwrap();
        for bad in ["", "-x", ".x", "a b", "a/b", &"x".repeat(129)] {
            assert!(validate_tag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn channel_tag_sets() {
        assert_eq!(
            Channel::Nightly.tags("rocm52", "0123456789ab", "20251125", true),
            ["rocm52-nightly", "rocm52-20251125", "rocm52-0123456789ab"]
        );
        assert_eq!(
            Channel::Stable.tags("rocm52", "0123456789ab", "20251125", true),
            ["rocm52", "latest"]
        );
        assert_eq!(
            Channel::Stable.tags("rocm62", "0123456789ab", "20251125", false),
            ["rocm62"]
        );
        assert_eq!(Channel::Nightly.tag("rocm52"), "rocm52-nightly");
        assert_eq!(Channel::Stable.tag("rocm52"), "rocm52");
        assert_eq!(
            report_tag("rocm52", "0123456789ab", Level::Gpu),
            "rocm52-0123456789ab-smoke-gpu"
        );
        for t in Channel::Nightly.tags("rocm52", "0123456789ab", "20251125", true) {
            validate_tag(&t).unwrap();
        }
    }

    #[test]
    fn only_a_gpu_pass_reaches_stable() {
        assert_eq!(
            channels_for(Level::Gpu),
            [Channel::Nightly, Channel::Stable]
        );
        assert_eq!(channels_for(Level::Cpu), [Channel::Nightly]);
        assert!(channels_for(Level::Skip).is_empty());
    }

    #[test]
    fn date_tag_is_utc_yyyymmdd() {
        let t = chrono::DateTime::from_timestamp(1_764_028_800, 0).unwrap();
        assert_eq!(date_tag(t), "20251125");
    }

    #[test]
    fn pushed_digest_is_read_from_the_last_status_line() {
        let hex = "a".repeat(64);
        assert_eq!(
            pushed_digest(&format!("rocm52: digest: sha256:{hex} size: 1234")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(pushed_digest("Pushed"), None);
        assert_eq!(pushed_digest("x: digest: sha256:short size: 1"), None);
    }

    #[test]
    fn registry_answers_are_read_into_codes_and_statuses() {
        use ErrorCode::*;
        let read = RegistryAnswer::read;
        // As the engines (20.10, 28.5 classic and containerd) passed them on from a
        // GHCR-like registry on loopback (tests/registry_answers.rs).
        assert_eq!(read(Some(403), "denied").code, Some(Denied));
        assert_eq!(read(None, "manifest unknown").code, Some(ManifestUnknown));
        assert_eq!(
            read(Some(429), "toomanyrequests: retry later").code,
            Some(TooManyRequests)
        );
        assert_eq!(
            read(
                Some(500),
                "Head \"http://127.0.0.1:5871/v2/e/p/manifests/t1\": unauthorized"
            )
            .code,
            Some(Unauthorized)
        );
        assert_eq!(
            read(None, "pull access denied for x, repository does not exist or may require 'docker login': denied: requested access to the resource is denied").code,
            Some(Denied)
        );
        assert_eq!(
            read(Some(500), "failed to resolve reference \"h/x:t\": pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed").code,
            Some(Denied)
        );
        // containerd's rendering: a line per error.
        assert_eq!(
            read(Some(500), "error from registry: unauthorized\nunauthorized").code,
            Some(Unauthorized)
        );
        assert_eq!(ErrorCode::parse("NAME_UNKNOWN"), Some(NameUnknown));
        // A word in a sentence is not a code.
        let a = read(None, "access denied by policy");
        assert_eq!((a.code, a.no_answer), (None, false));
        let a = read(
            Some(500),
            "received unexpected HTTP status: 503 Service Unavailable",
        );
        assert_eq!(a.registry_status, Some(503));
        let a = read(Some(500), "unknown: failed to resolve reference \"127.0.0.1:5001/x/y:t1\": unexpected status from HEAD request to http://127.0.0.1:5001/v2/x/y/manifests/t1: 401 Unauthorized");
        assert_eq!((a.code, a.registry_status), (None, Some(401)));
        assert_eq!(
            read(Some(500), "failed to resolve reference \"h/x:t1\": pull access denied, repository does not exist or may require authorization: authorization failed: no basic auth credentials").code,
            Some(Unauthorized)
        );
        let a = read(
            Some(500),
            "Get \"http://127.0.0.1:5999/v2/\": dial tcp 127.0.0.1:5999: connect: connection refused",
        );
        assert!(a.no_answer && a.code.is_none());
        assert!(
            read(
                None,
                "Get \"https://ghcr.io/v2/\": dial tcp: lookup ghcr.io: no such host"
            )
            .no_answer
        );
    }

    #[test]
    fn registry_failures_are_classed_by_code_status_and_operation() {
        use RegistryFailure::*;
        use RegistryOp::*;
        let class = |op, status, m: &str| RegistryFailure::of(op, &RegistryAnswer::read(status, m));
        // GHCR's DENIED for a package not pushed yet: not there yet on a read, exit 1...
        for op in [Lookup, Pull] {
            assert_eq!(class(op, Some(403), "denied"), NotThereYet);
            assert_eq!(class(op, Some(500), "denied"), NotThereYet);
        }
        assert_eq!(NotThereYet.exit_code(), 1);
        assert!(NotThereYet.advice().contains("not there yet"));
        // ...and refused credentials on a push.
        assert_eq!(
            class(
                Push,
                None,
                "denied: requested access to the resource is denied"
            ),
            Auth
        );
        assert_eq!(class(Lookup, Some(404), "manifest unknown"), NotFound);
        assert_eq!(
            class(
                Pull,
                Some(404),
                "failed to resolve reference \"h/x:t\": h/x:t: not found"
            ),
            NotFound
        );
        assert_eq!(
            class(
                Lookup,
                Some(401),
                "Head \"http://h/v2/x/manifests/t\": unauthorized"
            ),
            Auth
        );
        assert_eq!(
            class(
                Pull,
                Some(500),
                "Head \"http://h/v2/x/manifests/t\": unauthorized"
            ),
            Auth
        );
        assert_eq!(class(Lookup, Some(401), "no basic auth credentials"), Auth);
        assert_eq!(
            class(Pull, Some(429), "toomanyrequests: retry later"),
            RateLimited
        );
        assert_eq!(
            class(
                Pull,
                Some(500),
                "received unexpected HTTP status: 500 Internal Server Error"
            ),
            Unreachable
        );
        assert_eq!(
            class(Lookup, Some(500), "Get \"http://127.0.0.1:5999/v2/\": dial tcp 127.0.0.1:5999: connect: connection refused"),
            Unreachable
        );
        assert_eq!(class(Pull, None, "something odd"), Other);
        for (c, code) in [
            (Auth, 3),
            (Unreachable, 3),
            (RateLimited, 3),
            (NotFound, 1),
            (Other, 1),
        ] {
            assert_eq!(c.exit_code(), code, "{c:?}");
        }
    }

    fn pw(c: &Credentials) -> &str {
        match &c.credential {
            Credential::UsernamePassword { password, .. } => password.expose(),
            Credential::IdentityToken(t) => t.expose(),
        }
    }

    #[test]
    fn credentials_come_from_env_then_stdin_then_docker_config() {
        let never = || -> DockerConfigLookup { panic!("the Docker config must not be read") };
        let c = resolve_credentials("h", Some("u".into()), Some("p1".into()), None, never)
            .unwrap()
            .unwrap();
        assert_eq!((c.source, pw(&c)), (CredentialSource::Environment, "p1"));
        // --password-stdin wins over the environment's password; its newline is dropped.
        let c = resolve_credentials(
            "h",
            Some("u".into()),
            Some("p1".into()),
            Some("p2\n".into()),
            never,
        )
        .unwrap()
        .unwrap();
        assert_eq!((c.source, pw(&c)), (CredentialSource::Stdin, "p2"));
        let c = resolve_credentials("h", None, None, None, || {
            DockerConfigLookup::Found(Credential::IdentityToken(Secret::new("tok")))
        })
        .unwrap()
        .unwrap();
        assert_eq!((c.source, pw(&c)), (CredentialSource::DockerConfig, "tok"));
        assert_eq!(
            resolve_credentials("h", None, None, None, || DockerConfigLookup::Nothing).unwrap(),
            None
        );
        assert_eq!(
            resolve_credentials("h", Some("u".into()), None, None, never).unwrap_err(),
            Ok(RegistryInputError::UserWithoutPassword)
        );
        assert_eq!(
            resolve_credentials("h", None, None, Some("p".into()), never).unwrap_err(),
            Ok(RegistryInputError::PasswordWithoutUser)
        );
        assert_eq!(
            resolve_credentials("h", None, None, None, || DockerConfigLookup::Failed(
                "helper x failed".into()
            ))
            .unwrap_err(),
            Err("helper x failed".to_string())
        );
    }

    #[test]
    fn secrets_never_print() {
        let c = Credentials {
            host: "h".into(),
            credential: Credential::UsernamePassword {
                username: "u".into(),
                password: Secret::new("hunter2"),
            },
            source: CredentialSource::Environment,
        };
        let shown = format!("{c:?} {} {}", c.who(), Secret::new("hunter2"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
