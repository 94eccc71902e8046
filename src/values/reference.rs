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
//! ```
//!
//! The first part of a name is a domain only when it has a `.` or a `:`, is `localhost`,
//! or has an upper-case letter (`splitDockerDomain`); a name is at most 255 characters.
//! So `../x:1`, `--platform.linux/arm64:1` and `-.-:5000/x:1` are refused: their first part
//! is a domain that is not a host name.

/// A parsed `name[:tag]` (digests are refused by the callers that do not want them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference<'a> {
    pub domain: Option<&'a str>,
    pub path: &'a str,
    pub tag: Option<&'a str>,
}

fn alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `alpha-numeric [separator alpha-numeric]*`, separator `[_.]|__|[-]+`.
pub fn path_component(c: &str) -> bool {
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
pub fn domain(d: &str) -> bool {
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

fn tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|x| word(*x) || *x == b'.' || *x == b'-')
}

/// Splits `name[:tag]` and checks every part; None when Docker would refuse it. A digest
/// (`@...`) is refused here: the recipe keeps it in its own field.
pub fn parse(s: &str) -> Option<Reference<'_>> {
    if s.is_empty() || s.contains('@') {
        return None;
    }
    let (name, tag_part) = match s.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (s, None),
    };
    if name.len() > 255 || tag_part.is_some_and(|t| !tag(t)) {
        return None;
    }
    let (domain_part, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    };
    if domain_part.is_some_and(|d| !domain(d)) || !path.split('/').all(path_component) {
        return None;
    }
    Some(Reference {
        domain: domain_part,
        path,
        tag: tag_part,
    })
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
            assert!(parse(s).is_some(), "{s}");
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
            assert!(parse(s).is_none(), "{s}");
        }
    }
}
