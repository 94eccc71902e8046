//! Docker's image reference grammar (distribution/reference, `reference.go` and
//! `normalize.go`), the one grammar for a recipe's `base.image` and for `--registry`:
//!
//! ```text
//! reference        := name [ ":" tag ] [ "@" digest ]
//! name             := [domain '/'] remote-name
//! domain           := host [':' port-number]
//! host             := domain-name | IPv4address | '[' IPv6address ']'
//! domain-name      := domain-component ['.' domain-component]*
//! domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
//! port-number      := /[0-9]+/
//! remote-name      := path-component ['/' path-component]*
//! path-component   := alpha-numeric [separator alpha-numeric]*
//! alpha-numeric    := /[a-z0-9]+/
//! separator        := /[_.]|__|[-]+/
//! tag              := /[\w][\w.-]{0,127}/
//! digest           := "sha256:" /[0-9a-f]{64}/   (this tool's only algorithm)
//! ```
//!
//! The first part of a name is a domain only when it has a `.` or a `:`, is `localhost`,
//! or has an upper-case letter (`splitDockerDomain`); a name is at most 255 characters.
//! So `../x:1`, `--platform.linux/arm64:1` and `-.-:5000/x:1` are refused: their first part
//! is a domain that is not a host name.
//!
//! Parsed as written: `ubuntu` stays `ubuntu` (Docker would say `docker.io/library/ubuntu`),
//! because a `FROM` line, a tag and a registry key use the reference as the user gave it.
//! oci-spec's `distribution::Reference` is not used: it normalises to `docker.io/library/...`
//! and its grammar has no `[IPv6]:port` domains.

use std::fmt;
use std::str::FromStr;

use crate::escape::value as shown;

/// The longest name (domain and path) Docker accepts.
pub const NAME_MAX: usize = 255;

/// An image reference: `[domain/]path[:tag][@digest]`, every part checked. The only digests
/// this tool deals in are sha256 ones, so any other algorithm is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    domain: Option<String>,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// Which part of a reference is wrong, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("an image reference must not be empty")]
    Empty,
    #[error("the registry host `{}` is not a host name (letters, digits and `-` per dot-separated part, not starting or ending with `-`), IP address or [IPv6] address, with an optional :port", shown(.0))]
    Domain(String),
    #[error("path component `{}` must be lowercase letters and digits joined by `.`, `_`, `__` or `-`s (Docker's reference grammar)", shown(.0))]
    PathComponent(String),
    #[error("a repository name is at most {NAME_MAX} characters ({0} given)")]
    NameTooLong(usize),
    #[error("tag `{}`: a tag is 1 to 128 of A-Z a-z 0-9 _ . - and does not start with . or -", shown(.0))]
    Tag(String),
    #[error("`{}` is not a digest: expected sha256: and 64 lowercase hex digits", shown(.0))]
    Digest(String),
}

impl Reference {
    /// Splits `[domain/]path[:tag][@digest]` and checks every part: the digest, then the
    /// domain, each path component, the name's length and the tag.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) if crate::hex::is_sha256_digest(d) => (n, Some(d)),
            Some((_, d)) => return Err(ReferenceError::Digest(d.to_string())),
            None => (s, None),
        };
        let (name, tag) = match name_tag.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t)),
            _ => (name_tag, None),
        };
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (Some(first), rest)
            }
            _ => (None, name),
        };
        if let Some(d) = domain.filter(|d| !is_domain(d)) {
            return Err(ReferenceError::Domain(d.to_string()));
        }
        if let Some(c) = path.split('/').find(|c| !is_path_component(c)) {
            return Err(ReferenceError::PathComponent(c.to_string()));
        }
        if name.len() > NAME_MAX {
            return Err(ReferenceError::NameTooLong(name.len()));
        }
        if let Some(t) = tag.filter(|t| !is_tag(t)) {
            return Err(ReferenceError::Tag(t.to_string()));
        }
        Ok(Reference {
            domain: domain.map(String::from),
            path: path.to_string(),
            tag: tag.map(String::from),
            digest: digest.map(String::from),
        })
    }

    /// `ghcr.io`, `127.0.0.1:5000`; None where the name has no domain part (Docker Hub).
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// `rdna1-images/rdna1-images`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// `sha256:<64 hex>`.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// `[domain/]path`, as written: the repository, without tag or digest.
    pub fn name(&self) -> String {
        match &self.domain {
            Some(d) => format!("{d}/{}", self.path),
            None => self.path.clone(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

fn alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `alpha-numeric [separator alpha-numeric]*`, separator `[_.]|__|[-]+`.
pub fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let mut i = 0;
    let run = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && alnum_lower(b[*i]) {
            *i += 1;
        }
        *i > start
    };
    if !run(&mut i) {
        return false;
    }
    while i < b.len() {
        let sep_start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == sep_start || !run(&mut i) {
            return false;
        }
    }
    true
}

fn domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
}

/// `host[:port]`: a domain name, an IPv4 address (a domain name by this grammar too), or
/// an IPv6 address in brackets.
pub fn is_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match d.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    let host_ok = host.is_empty() && d.starts_with('[') || host.split('.').all(domain_component);
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// `[\w][\w.-]{0,127}`.
pub fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|x| word(*x) || *x == b'.' || *x == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_accepts_these_and_refuses_those() {
        for s in [
            "busybox",
            "ubuntu:jammy-20260901.2",
            "rocm/dev-ubuntu-22.04:6.2-complete",
            "127.0.0.1:5000/x/y:1",
            "localhost/a",
            "[::1]:5000/a:b",
            "registry-1.docker.io/library/a__b--c.d:_t",
            "Host.example/a",
        ] {
            assert!(Reference::parse(s).is_ok(), "{s}");
        }
        for s in [
            "../x:1",
            "--platform.linux/arm64:1",
            "-.-:5000/x:1",
            "a/../b",
            "a:-x",
            "A:1",
            "a___b",
            "a_-b",
            "a.",
            "a:b@sha256:00",
            "host:/a",
            "host:port/a",
            "[zz]:1/a",
            "a:",
            "",
        ] {
            assert!(Reference::parse(s).is_err(), "{s}");
        }
    }

    #[test]
    fn the_parts_are_typed_and_each_error_names_its_part() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let r = Reference::parse(&format!("127.0.0.1:5000/x/y:t1@{d}")).unwrap();
        assert_eq!(r.domain(), Some("127.0.0.1:5000"));
        assert_eq!(r.path(), "x/y");
        assert_eq!(r.tag(), Some("t1"));
        assert_eq!(r.digest(), Some(d.as_str()));
        assert_eq!(r.name(), "127.0.0.1:5000/x/y");
        assert_eq!(r.to_string(), format!("127.0.0.1:5000/x/y:t1@{d}"));
        let plain = Reference::parse("ubuntu").unwrap();
        assert_eq!(
            (plain.domain(), plain.path()),
            (None, "ubuntu"),
            "not normalised"
        );
        assert_eq!(plain.to_string(), "ubuntu");

        use ReferenceError as E;
        for (given, want) in [
            ("", E::Empty),
            ("a@sha256:00", E::Digest("sha256:00".into())),
            (
                &format!("a@sha512:{}", "0".repeat(128)),
                E::Digest(format!("sha512:{}", "0".repeat(128))),
            ),
            (
                &format!("a@sha256:{}", "AB".repeat(32)),
                E::Digest(format!("sha256:{}", "AB".repeat(32))),
            ),
            ("host:port/a", E::Domain("host:port".into())),
            ("h.io/a//b", E::PathComponent("".into())),
            ("h.io/a/-b:1", E::PathComponent("-b".into())),
            (&format!("h.io/{}", "a".repeat(251)), E::NameTooLong(256)),
            ("a:-x", E::Tag("-x".into())),
        ] {
            assert_eq!(Reference::parse(given), Err(want.clone()), "{given}");
        }
        let m = E::PathComponent("A\nB".into()).to_string();
        assert!(m.contains("path component `A\\nB`"), "shown escaped: {m}");
        assert!(E::Domain("-x-".into())
            .to_string()
            .contains("registry host `-x-`"));
    }
}
