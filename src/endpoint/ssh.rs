//! `ssh://` engine addresses, read the way the docker CLI reads them (`cli/connhelper/ssh`):
//! `ssh://[user@]host[:port][/]`, an IPv6 host in brackets. The engine module runs
//! [`SshTarget::argv`] once per connection and speaks HTTP over its stdin and stdout, as
//! `docker -H ssh://...` does; no port is ever dropped or mistaken for part of a host name.

use std::fmt;

/// Where `ssh` goes: the parts of an `ssh://` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub user: Option<String>,
    /// A host name, an alias of the ssh config, or an IP address (IPv6 without brackets).
    pub host: String,
    pub port: Option<u16>,
}

impl SshTarget {
    /// Parses `ssh://[user@]host[:port][/]`; the error says what is wrong with it.
    pub fn parse(address: &str) -> Result<SshTarget, String> {
        let rest = address
            .strip_prefix("ssh://")
            .ok_or_else(|| format!("`{address}` does not start with ssh://"))?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#']) {
            return Err(format!(
                "`{address}`: a path after the host is not supported in an ssh:// address"
            ));
        }
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) if !u.is_empty() => (Some(u.to_string()), h),
            Some(_) => return Err(format!("`{address}`: the user before @ is empty")),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("`{address}`: an IPv6 address needs its closing ]"))?;
            match after {
                "" => (host, None),
                p => match p.strip_prefix(':') {
                    Some(p) => (host, Some(p)),
                    None => return Err(format!("`{address}`: after ] comes :PORT or nothing")),
                },
            }
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(format!("`{address}` names no host"));
        }
        // ssh would read a leading - as an option, and a space or control character cannot be
        // in a host name or alias.
        if host.starts_with('-') || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("`{address}`: `{host}` is not a host name"));
        }
        if let Some(u) = &user {
            if u.starts_with('-') || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("`{address}`: `{u}` is not a user name"));
            }
        }
        let port = match port {
            None => None,
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| format!("`{address}`: the port `{p}` is not 1 to 65535"))?,
            ),
        };
        Ok(SshTarget {
            user,
            host: host.to_string(),
            port,
        })
    }

    /// The `ssh` command line that gives a stream to the remote engine, as the docker CLI
    /// runs it, plus `BatchMode`: a password or host-key prompt would wait forever on a
    /// terminal the user does not see, so ssh fails at once and says why instead. Everything
    /// else (keys, agent, `ProxyJump`, known hosts) comes from the user's ssh config.
    pub fn argv(&self) -> Vec<String> {
        let mut a: Vec<String> = ["-o", "ConnectTimeout=30", "-o", "BatchMode=yes", "-T"]
            .map(String::from)
            .to_vec();
        if let Some(u) = &self.user {
            a.extend(["-l".to_string(), u.clone()]);
        }
        if let Some(p) = self.port {
            a.extend(["-p".to_string(), p.to_string()]);
        }
        a.extend(["--", &self.host, "docker", "system", "dial-stdio"].map(String::from));
        a
    }
}

/// What a person types to check the connection: `ssh [-p PORT] [user@]host docker system
/// dial-stdio`.
impl fmt::Display for SshTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ssh ")?;
        if let Some(p) = self.port {
            write!(f, "-p {p} ")?;
        }
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        write!(f, "{} docker system dial-stdio", self.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(user: Option<&str>, host: &str, port: Option<u16>) -> SshTarget {
        SshTarget {
            user: user.map(String::from),
            host: host.into(),
            port,
        }
    }

    #[test]
    fn every_form_the_cli_takes_is_read() {
        for (address, want) in [
            ("ssh://builder", t(None, "builder", None)),
            ("ssh://builder/", t(None, "builder", None)),
            ("ssh://me@builder", t(Some("me"), "builder", None)),
            (
                "ssh://me@builder:2222",
                t(Some("me"), "builder", Some(2222)),
            ),
            (
                "ssh://root@127.0.0.1:22",
                t(Some("root"), "127.0.0.1", Some(22)),
            ),
            ("ssh://[::1]", t(None, "::1", None)),
            ("ssh://[::1]:2222", t(None, "::1", Some(2222))),
            (
                "ssh://me@[fe80::1]:2222/",
                t(Some("me"), "fe80::1", Some(2222)),
            ),
            ("ssh://a@b@host", t(Some("a@b"), "host", None)),
        ] {
            assert_eq!(SshTarget::parse(address).as_ref(), Ok(&want), "{address}");
        }
    }

    #[test]
    fn the_port_and_user_reach_ssh_as_options() {
        let a = SshTarget::parse("ssh://root@[::1]:2222").unwrap().argv();
        assert_eq!(
            a,
            [
                "-o",
                "ConnectTimeout=30",
                "-o",
                "BatchMode=yes",
                "-T",
                "-l",
                "root",
                "-p",
                "2222",
                "--",
                "::1",
                "docker",
                "system",
                "dial-stdio"
            ]
        );
        let a = SshTarget::parse("ssh://builder").unwrap().argv();
        assert!(!a.contains(&"-p".to_string()) && !a.contains(&"-l".to_string()));
        assert_eq!(a[a.len() - 4], "builder");
        assert_eq!(
            SshTarget::parse("ssh://me@h:2222").unwrap().to_string(),
            "ssh -p 2222 me@h docker system dial-stdio"
        );
    }

    #[test]
    fn what_ssh_would_misread_is_refused() {
        for (bad, why) in [
            ("ssh://", "names no host"),
            ("ssh://me@", "names no host"),
            ("ssh://@h", "user before @ is empty"),
            ("ssh://h:0", "not 1 to 65535"),
            ("ssh://h:65536", "not 1 to 65535"),
            ("ssh://h:x", "not 1 to 65535"),
            ("ssh://h/run/docker.sock", "path after the host"),
            ("ssh://[::1", "closing ]"),
            ("ssh://[::1]2222", "after ]"),
            ("ssh://-oProxyCommand=x", "not a host name"),
            ("ssh://-l@h", "not a user name"),
        ] {
            let e = SshTarget::parse(bad).unwrap_err();
            assert!(e.contains(why) && e.contains(bad), "{bad}: {e}");
        }
    }
}
