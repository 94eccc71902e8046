//! Folders a recipe makes writable for everyone or covers with a volume: the MIOpen caches
//! (`chmod 1777` in the image, a named volume in `run`) and `ccache.dir` (a BuildKit cache
//! mount). Such a folder must be one of the tool's own kind, never a system folder or a
//! parent of one: `MIOPEN_USER_DB_PATH: /etc` would render `chmod 1777 /etc`, a ccache
//! mount over `/usr` hides the compilers, a volume over `/usr` replaces them.

/// Where a cache folder may be, strictly below one of these (normalised, see [`normalise`]).
/// `/home` needs a user folder and one more part.
pub const ALLOWED: &[&str] = &["/var/cache", "/opt", "/root", "/home"];

/// Folders below an allowed prefix that are still not caches: ROCm and the tool's own
/// files under /opt, package managers' caches, and secrets in home folders.
const REFUSED_BELOW: &[&str] = &[
    "/opt/rocm",
    "/opt/rdna1-images",
    "/opt/conda",
    "/opt/amdgpu",
    "/var/cache/apt",
    "/var/cache/debconf",
    "/var/cache/ldconfig",
];
const HOME_SECRETS: &[&str] = &[".ssh", ".gnupg", ".docker", ".kube", ".aws"];

/// A folder below a home folder (`rest` is what follows it): not a secret, and not a whole
/// shared folder like `.config` or `.local` (`.config/miopen`, MIOpen's default, is fine).
fn home_ok(rest: &[&str]) -> bool {
    match rest {
        [] => false,
        [one] if one.starts_with('.') && matches!(*one, ".config" | ".local" | ".cache") => false,
        [first, ..] => !HOME_SECRETS.contains(first),
    }
}

/// `p` with `//`, `.` and trailing slashes dropped and `..` applied (never above `/`).
pub fn normalise(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Checks a cache folder; the error says where one may be.
pub fn check_cache_dir(p: &str) -> Result<(), String> {
    let n = normalise(p);
    let allowed = "a cache folder must be below /var/cache, /opt, /root or /home/<user> (like /var/cache/miopen or /root/.ccache), never a system folder or a parent of one";
    let parts: Vec<&str> = n.trim_start_matches('/').split('/').collect();
    let under = |prefix: &str| n.starts_with(&format!("{prefix}/"));
    let ok = match parts.first().copied() {
        _ if !p.starts_with('/') => false,
        Some("home") => parts.len() >= 3 && home_ok(&parts[2..]),
        Some("root") => home_ok(&parts[1..]),
        Some("opt") if parts.get(1).is_some_and(|p| p.starts_with("rocm")) => false,
        _ => ALLOWED.iter().any(|a| under(a)),
    };
    let refused = REFUSED_BELOW.iter().any(|r| n == *r || under(r));
    if ok && !refused {
        return Ok(());
    }
    let shown = crate::escape::value(p);
    if n != p.trim_end_matches('/') {
        Err(format!("`{shown}` (that is {n}) is not allowed: {allowed}"))
    } else {
        Err(format!("`{shown}` is not allowed: {allowed}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_folders_and_their_parents_are_refused_however_spelled() {
        for p in [
            "/",
            "/etc",
            "/usr",
            "/usr/bin",
            "/root",
            "/usr/local/bin//",
            "/bin",
            "/lib",
            "/proc",
            "/sys",
            "/dev",
            "/boot",
            "/var",
            "/var/cache",
            "/var/cache/",
            "/opt",
            "/home",
            "/home/u",
            "/usr/local/../../etc",
            "/var/cache/../../etc",
            "//etc",
            "/opt/rocm",
            "/opt/rocm-6.2/../rocm",
            "/opt/rocm-6.2.4",
            "/root/.config",
            "/tmp",
            "/root/.ssh",
            "/home/u/.ssh/x",
            "/var/cache/apt",
            "relative/x",
        ] {
            assert!(check_cache_dir(p).is_err(), "{p}");
        }
        for p in [
            "/var/cache/miopen",
            "/var/cache/miopen/db",
            "/root/.ccache",
            "/opt/cache",
            "/home/u/.cache/miopen",
            "/root/.config/miopen",
            "/var/cache/miopen/",
        ] {
            check_cache_dir(p).unwrap_or_else(|e| panic!("{p}: {e}"));
        }
        assert_eq!(normalise("/a//b/./c/../d/"), "/a/b/d");
    }
}
