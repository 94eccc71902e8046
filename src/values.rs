//! Typed recipe values: every value that reaches a Dockerfile, a context file or a shell has
//! a type whose grammar is checked while the YAML is read.
//!
//! A recipe is hostile input: its text ends up in `FROM` lines, shell words, pip lock lines
//! and labels. Each type here accepts only what its context can carry unambiguously, so a
//! value that would need escaping to be safe is refused with a message saying what is
//! allowed. The renderer still quotes every value (see `quote`): the grammars make the
//! output readable, the quoting makes it safe.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Serialize};

pub mod cache_path;
pub mod reference;

/// Declares a string newtype whose only constructor is its grammar check.
macro_rules! grammar_type {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Checks `s` against the grammar; the error says what is allowed.
            pub fn parse(s: &str) -> Result<Self, String> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(s).map(|()| $name(s.to_string()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                let check: fn(&str) -> Result<(), String> = $check;
                check(&s).map(|()| $name(s))
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl PartialEq<str> for $name {
            fn eq(&self, o: &str) -> bool {
                self.0 == o
            }
        }
        impl PartialEq<&str> for $name {
            fn eq(&self, o: &&str) -> bool {
                self.0 == *o
            }
        }
        impl PartialEq<String> for $name {
            fn eq(&self, o: &String) -> bool {
                &self.0 == o
            }
        }
    };
}

/// Longest single value accepted; a recipe is at most 1 MiB anyway.
const MAX_VALUE: usize = 64 * 1024;

fn shown(s: &str) -> String {
    let head: String = s.chars().take(80).collect();
    let mut out = crate::escape::value(&head).into_owned();
    if s.chars().count() > 80 {
        out.push_str("...");
    }
    format!("`{out}`")
}

/// Characters that end or split a line somewhere (Dockerfile parser, terminals, editors),
/// or that make text read differently from what it is (bidi controls, zero-width
/// characters): the set [`crate::escape`] escapes on output is the set refused on input.
fn is_line_breaking(c: char) -> bool {
    crate::escape::is_unsafe(c)
}

fn single_line(s: &str, what: &str) -> Result<(), String> {
    if s.len() > MAX_VALUE {
        return Err(format!("{what} is longer than {MAX_VALUE} bytes"));
    }
    match s.chars().find(|c| is_line_breaking(*c)) {
        Some(c) => Err(format!(
            "{} contains {}: {what} must be one line of printable text (no control characters, bidi or zero-width characters, line or paragraph separators)",
            shown(s),
            crate::escape::value(&c.to_string())
        )),
        None => Ok(()),
    }
}

fn only(s: &str, what: &str, allowed: &str, ok: impl Fn(char) -> bool) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{what} must not be empty (allowed: {allowed})"));
    }
    if s.len() > 4096 {
        return Err(format!("{what} is longer than 4096 bytes"));
    }
    match s.chars().find(|c| !ok(*c)) {
        Some(c) => Err(format!(
            "{} is not a valid {what}: {c:?} is not allowed ({allowed})",
            shown(s)
        )),
        None => Ok(()),
    }
}

grammar_type!(
    /// One line of printable text: descriptions, reasons, ENV and LABEL values.
    Text,
    |s| single_line(s, "text")
);

grammar_type!(
    /// Non-empty [`Text`].
    NonEmptyText,
    |s| {
        single_line(s, "text")?;
        if s.trim().is_empty() {
            return Err("must not be empty".into());
        }
        Ok(())
    }
);

/// A recipe name: what may follow `rdna1-images build`.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

grammar_type!(
    /// A recipe name: lowercase letters, digits, `-`, `_`, at most 64, starting alphanumeric.
    RecipeName,
    |s| {
        if is_plain_name(s) {
            Ok(())
        } else {
            Err(format!(
                "{} is not a plain name: use lowercase letters, digits, `-` and `_` (at most 64, starting with a letter or digit)",
                shown(s)
            ))
        }
    }
);

fn check_image(s: &str) -> Result<(), String> {
    let allowed = "an image reference like `ubuntu:jammy-20260901.2` or `registry:5000/team/image:tag` (Docker's reference grammar), without a digest (put it in `digest`)";
    match reference::Reference::parse(s) {
        Ok(r) if r.digest().is_none() => Ok(()),
        Ok(_) => Err(format!("{} is not {allowed}", shown(s))),
        Err(why) => Err(format!("{} is not {allowed}: {why}", shown(s))),
    }
}

grammar_type!(
    /// An image reference with an optional tag and no digest.
    ImageRef,
    check_image
);

grammar_type!(
    /// A content digest: `sha256:` and 64 lowercase hex digits.
    Digest,
    |s| {
        if crate::hex::is_sha256_digest(s) {
            Ok(())
        } else {
            Err(format!("{} must be sha256:<64 lowercase hex digits>", shown(s)))
        }
    }
);

grammar_type!(
    /// A sha256 of a file: 64 lowercase hex digits.
    Sha256,
    |s| {
        if crate::hex::is_lower_hex(s, 64) {
            Ok(())
        } else {
            Err(format!("{} is not a sha256 (64 lowercase hex digits)", shown(s)))
        }
    }
);

grammar_type!(
    /// A full git commit id: 40 lowercase hex digits.
    CommitId,
    |s| {
        if crate::hex::is_lower_hex(s, 40) {
            Ok(())
        } else {
            Err(format!("{} must be a full 40-hex commit id", shown(s)))
        }
    }
);

fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._+-@".contains(c)
}

const PATH_ALLOWED: &str =
    "letters, digits and `._+-@` in each part, parts joined by `/`, no `.` or `..` part";

fn check_components(s: &str, what: &str) -> Result<(), String> {
    for part in s.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!(
                "{} is not a valid {what}: empty, `.` or `..` part ({PATH_ALLOWED})",
                shown(s)
            ));
        }
        only(part, what, PATH_ALLOWED, path_char)
            .map_err(|_| format!("{} is not a valid {what} ({PATH_ALLOWED})", shown(s)))?;
    }
    Ok(())
}

grammar_type!(
    /// An absolute path inside an image: `/` and plain parts.
    AbsPath,
    |s| match s.strip_prefix('/') {
        Some(rest) if !rest.is_empty() => check_components(rest.trim_end_matches('/'), "absolute path"),
        _ => Err(format!(
            "{} must be an absolute path like /var/cache/miopen ({PATH_ALLOWED})",
            shown(s)
        )),
    }
);

grammar_type!(
    /// A path relative to the recipes folder (`files`, `patches`): plain parts only.
    RelPath,
    |s| {
        if s.starts_with('/') {
            return Err(format!(
                "{} must be a relative path inside the recipes folder ({PATH_ALLOWED})",
                shown(s)
            ));
        }
        check_components(s, "relative path inside the recipes folder")
    }
);

grammar_type!(
    /// The interpreter: a command name looked up in PATH, or an absolute path.
    Executable,
    |s| {
        if s.starts_with('/') {
            return AbsPath::parse(s).map(|_| ());
        }
        only(s, "command name", "letters, digits and `._+-`, not starting with `-`, or an absolute path", |c| {
            c.is_ascii_alphanumeric() || "._+-".contains(c)
        })?;
        if s.starts_with('-') || s.starts_with('.') {
            return Err(format!("{} must not start with `-` or `.`", shown(s)));
        }
        Ok(())
    }
);

grammar_type!(
    /// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
    EnvName,
    |s| {
        let ok = !s.is_empty()
            && s.len() <= 256
            && !s.as_bytes()[0].is_ascii_digit()
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{} is not an environment variable name (letters, digits and `_`, not starting with a digit)",
                shown(s)
            ))
        }
    }
);

grammar_type!(
    /// A gfx target like `gfx1010` or `gfx90a`.
    GfxTarget,
    |s| {
        let ok = s
            .strip_prefix("gfx")
            .is_some_and(|r| (3..=4).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        if ok {
            Ok(())
        } else {
            Err(format!("{} is not a gfx target (like gfx1010 or gfx90a)", shown(s)))
        }
    }
);

fn dotted_numbers(s: &str, n: usize) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == n
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()))
}

grammar_type!(
    /// `HSA_OVERRIDE_GFX_VERSION` value: major.minor.stepping.
    GfxVersion,
    |s| {
        if dotted_numbers(s, 3) {
            Ok(())
        } else {
            Err(format!(
                "override {} must look like 10.3.0 (major.minor.stepping) or be null",
                shown(s)
            ))
        }
    }
);

grammar_type!(
    /// A Python major.minor version like `3.10`.
    PythonVersion,
    |s| {
        if dotted_numbers(s, 2) {
            Ok(())
        } else {
            Err(format!(
                "{} must be major.minor, like 3.10 (quote it in YAML: \"3.10\")",
                shown(s)
            ))
        }
    }
);

grammar_type!(
    /// A short release word for labels: `5.2`, `6.2`, `none`.
    ReleaseName,
    |s| only(s, "release", "letters, digits and `._+-`", |c| c.is_ascii_alphanumeric() || "._+-".contains(c))
);

grammar_type!(
    /// A PEP 440 version, exact (no wildcard, no operator): `1.13.1+rocm5.2`, `2026.10.19.post1`.
    Version,
    |s| {
        only(s, "version", "a PEP 440 version like 1.26.4 or 1.13.1+rocm5.2", |c| {
            c.is_ascii_alphanumeric() || "._+!-".contains(c)
        })?;
        s.parse::<pep440_rs::Version>()
            .map(|_| ())
            .map_err(|e| format!("{} is not a PEP 440 version: {e}", shown(s)))
    }
);

fn pep508_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 200
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
}

grammar_type!(
    /// A PEP 508 distribution name with optional extras: `numpy`, `torch[device-gfx1010]`.
    PipName,
    |s| {
        let (name, extras) = match s.split_once('[') {
            Some((n, rest)) => match rest.strip_suffix(']') {
                Some(e) => (n, Some(e)),
                None => (s, None),
            },
            None => (s, None),
        };
        let ok = pep508_name(name)
            && extras.is_none_or(|e| e.split(',').all(pep508_name));
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{} is not a pip package name (PEP 508: letters, digits, `._-`, starting and ending with a letter or digit; extras as `name[a,b]`)",
                shown(s)
            ))
        }
    }
);

fn loopback_host(u: &url::Url) -> bool {
    match u.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

/// https anywhere, plain http only to this machine (a local mirror, the tests).
fn check_url(s: &str, what: &str) -> Result<(), String> {
    let allowed = format!("{what} must be an https URL (or http on 127.0.0.1/localhost), without user name, password, query or fragment");
    only(s, what, "printable ASCII without spaces", |c| {
        // No shell, requirements-file or YAML specials: URLs need none of them.
        c.is_ascii_graphic() && !"\\\"'`<>{}|^#$()*;!&[]".contains(c)
    })
    .map_err(|e| format!("{e}; {allowed}"))?;
    let u =
        url::Url::parse(s).map_err(|e| format!("{} is not a URL ({e}); {allowed}", shown(s)))?;
    let scheme_ok = match u.scheme() {
        "https" => u.host().is_some(),
        "http" => loopback_host(&u),
        _ => false,
    };
    if !scheme_ok
        || !u.username().is_empty()
        || u.password().is_some()
        || u.query().is_some()
        || u.fragment().is_some()
        || s.contains('@')
    {
        return Err(format!("{}: {allowed}", shown(s)));
    }
    Ok(())
}

grammar_type!(
    /// The URL of a wheel or an index.
    HttpsUrl,
    |s| check_url(s, "URL")
);

grammar_type!(
    /// The URL of a git repository to fetch from.
    GitUrl,
    |s| check_url(s, "git URL")
);

grammar_type!(
    /// A git tag or branch name (for people; the build checks out `commit`).
    GitRef,
    |s| {
        only(s, "git ref", "letters, digits and `._+/-`", |c| {
            c.is_ascii_alphanumeric() || "._+/-".contains(c)
        })?;
        if s.starts_with(['-', '/', '.']) || s.ends_with(['/', '.']) || s.contains("..") || s.contains("//") || s.ends_with(".lock") {
            return Err(format!("{} is not a valid git ref name (git check-ref-format)", shown(s)));
        }
        Ok(())
    }
);

grammar_type!(
    /// A size for `ccache --max-size`: digits and an optional K, M, G or T.
    ByteSize,
    |s| {
        let digits = s.trim_end_matches(['K', 'M', 'G', 'T']);
        if digits.bytes().all(|b| b == b'0') && !digits.is_empty() {
            return Err(format!("{} means no limit to ccache: give a size like 20G", shown(s)));
        }
        if !digits.is_empty() && digits.len() <= 12 && s.len() - digits.len() <= 1 && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(())
        } else {
            Err(format!("{} must be a size like 20G (digits and one of K, M, G, T)", shown(s)))
        }
    }
);

grammar_type!(
    /// A recipe's own shell text (`steps`, `preflight`, `verify`): anything but empty or NUL.
    ///
    /// It is the one value that stays shell: the renderer passes it as a single argument of
    /// an exec-form `RUN`, never as Dockerfile text, so no character can end the `RUN`.
    ShellStep,
    |s| {
        if s.trim().is_empty() {
            return Err("empty command: write a shell command or remove the entry".into());
        }
        if s.contains('\0') {
            return Err("contains a NUL character, which no program argument can carry".into());
        }
        if s.len() > MAX_VALUE {
            return Err(format!("longer than {MAX_VALUE} bytes"));
        }
        // The shell may have lines and tabs; what a reviewer cannot see may not be in it.
        if let Some(c) = s.chars().find(|&c| crate::escape::is_unsafe(c) && !c.is_control()) {
            return Err(format!(
                "contains {}: a bidi control or zero-width character makes the step read differently from what runs",
                crate::escape::value(&c.to_string())
            ));
        }
        Ok(())
    }
);

/// An apt package: `name`, `name:arch`, or `name=version` (Debian policy grammars).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AptPackage {
    text: String,
    name_len: usize,
}

impl AptPackage {
    pub fn parse(s: &str) -> Result<Self, String> {
        let allowed = "an apt package `name` or `name=version` (Debian: name of lowercase letters, digits and `+-.`, starting with a letter or digit; version starting with a digit)";
        let (name, version) = match s.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (s, None),
        };
        let (base, arch) = match name.split_once(':') {
            Some((b, a)) => (b, Some(a)),
            None => (name, None),
        };
        let base_ok = base.len() >= 2
            && base.len() <= 128
            && base.as_bytes()[0].is_ascii_alphanumeric()
            && base
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
        let arch_ok = arch.is_none_or(|a| {
            !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
        let version_ok = version.is_none_or(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.as_bytes()[0].is_ascii_digit()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".+~:-".contains(&b))
        });
        if base_ok && arch_ok && version_ok {
            Ok(AptPackage {
                text: s.to_string(),
                name_len: name.len(),
            })
        } else {
            Err(format!("{} is not {allowed}", shown(s)))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.text
    }
    /// The package name (with `:arch` when given).
    pub fn name(&self) -> &str {
        &self.text[..self.name_len]
    }
    /// The pinned version, when the entry has one.
    pub fn version(&self) -> Option<&str> {
        self.text.get(self.name_len + 1..)
    }
}

impl TryFrom<String> for AptPackage {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        AptPackage::parse(&s)
    }
}
impl From<AptPackage> for String {
    fn from(v: AptPackage) -> String {
        v.text
    }
}
impl Deref for AptPackage {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}
impl fmt::Display for AptPackage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}
impl PartialEq<&str> for AptPackage {
    fn eq(&self, o: &&str) -> bool {
        self.text == *o
    }
}

/// Latest `source_date_epoch` accepted: 9999-12-31T23:59:59Z, the last second RFC 3339 and
/// tar headers both write without wrapping.
pub const MAX_EPOCH: u64 = 253_402_300_799;

/// Longest timeout a recipe may ask for: a week.
pub const MAX_TIMEOUT_S: f64 = 7.0 * 24.0 * 3600.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammars_accept_the_shipped_forms() {
        for s in [
            "ubuntu:jammy-20260901.2",
            "rocm/dev-ubuntu-22.04:6.2-complete",
            "rdna1-test-base:bookworm",
            "127.0.0.1:5000/x/y:1",
            "busybox",
        ] {
            ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        for s in [
            "1.13.1+rocm5.2",
            "2026.10.19.post1",
            "3.20",
            "1.13.0a0",
            "0.19.1+rocm6.2",
        ] {
            Version::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        for s in [
            "torch",
            "typing-extensions",
            "torch[device-gfx1010]",
            "a.b_c",
        ] {
            PipName::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        for s in [
            "python3",
            "libjpeg-turbo8",
            "python3=3.10.6-1~22.04",
            "g++",
            "libc6:amd64",
        ] {
            AptPackage::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        assert_eq!(AptPackage::parse("a1=1.0").unwrap().version(), Some("1.0"));
        assert_eq!(AptPackage::parse("a1").unwrap().version(), None);
        HttpsUrl::parse("https://download.pytorch.org/whl/rocm5.2/torch-1.13.1%2Brocm5.2-cp310-cp310-linux_x86_64.whl").unwrap();
        HttpsUrl::parse("http://127.0.0.1:8080/w.whl").unwrap();
        GitRef::parse("v2.4.1").unwrap();
        Executable::parse("/usr/local/bin/stuck-python").unwrap();
        ByteSize::parse("20G").unwrap();
    }

    #[test]
    fn grammars_refuse_the_hostile_forms() {
        for s in [
            "a:b\\",
            "a b:c",
            "a:b\nRUN x",
            "$x:y",
            "a:b@sha256:00",
            "Ubuntu:1",
            "a:-x",
        ] {
            assert!(ImageRef::parse(s).is_err(), "{s:?}");
        }
        for s in [
            "1.26.4 --hash=sha256:00",
            "1.0\n--extra-index-url x",
            "1.*",
            "==1.0",
            "",
        ] {
            assert!(Version::parse(s).is_err(), "{s:?}");
        }
        for s in [
            "torch\n--extra-index-url http://evil",
            "-r x",
            "torch @ https://x",
            "a[",
            "",
        ] {
            assert!(PipName::parse(s).is_err(), "{s:?}");
        }
        for s in [
            "--allow-unauthenticated",
            "-oDPkg::Pre-Invoke::=x",
            "python3=",
            "a b",
            "P",
        ] {
            assert!(AptPackage::parse(s).is_err(), "{s:?}");
        }
        for s in [
            "http://localhost:80@evil.example/x.whl",
            "http://evil.example/x.whl",
            "https://user:pw@x.org/a",
            "https://x.org/a b",
            "https://x.org/a#sha256=0",
            "file:///etc/passwd",
            "https://x.org/a\n--index-url y",
        ] {
            assert!(HttpsUrl::parse(s).is_err(), "{s:?}");
        }
        for s in [
            "/x; touch /pwned #",
            "relative",
            "/a/../b",
            "/a b",
            "/a\nb",
            "/a,b",
        ] {
            assert!(AbsPath::parse(s).is_err(), "{s:?}");
        }
        for s in ["../x", "/etc/passwd", "a//b", "a/./b", "a\\b", "a b"] {
            assert!(RelPath::parse(s).is_err(), "{s:?}");
        }
        for s in ["a\nb", "a\u{2028}b", "a\0b", "\u{1b}[31m"] {
            assert!(Text::parse(s).is_err(), "{s:?}");
        }
        assert!(ShellStep::parse("  ").is_err());
        assert!(ShellStep::parse("a\0").is_err());
        assert!(EnvName::parse("1A").is_err());
        assert!(Executable::parse("python3; rm -rf /").is_err());
        assert!(Executable::parse("-c").is_err());
    }
}
