//! The lock file beside a recipe (`recipes/<name>.lock`), as Cargo.lock beside Cargo.toml:
//! the recipe pins versions, the lock records the exact file pip installs for each package
//! the recipe pins by version only (index, URL, file name, size, sha256) and the base image
//! the lock was resolved against.
//!
//! Text, one `key value` per line, entries sorted by name and version, so a changed hash is
//! a one-line diff. Read as hostile input: every value goes through the recipe's grammars.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256 as Sha};

use crate::recipe::{Origin, PyTorch, Recipe, Wheel};
use crate::simple_index::{canonical_name, same_name, same_version};
use crate::values::{HttpsUrl, PipName, Sha256, Version};

/// The lock files shipped with the embedded recipes (include_str, like the recipes): the
/// nightly proposes them filled in; until then an empty lock, which the first `build`
/// completes in the state folder.
pub const EMBEDDED_LOCKS: &[(&str, &str)] = &[
    ("therock", include_str!("../../recipes/therock.lock")),
    ("comfyui", include_str!("../../recipes/comfyui.lock")),
];

/// The one format version this binary reads and writes.
const FORMAT: &str = "1";

/// One resolved file: the package at its version, where it came from, and its sha256.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LockEntry {
    pub name: PipName,
    pub version: Version,
    /// The index it was resolved on (`pytorch.wheels.index`), or the recipe's own URL.
    /// None for an app's packages: they come from pip's configured index, which is the
    /// user's (a mirror, a proxy), so the lock records the file and hash, not the host.
    pub index: Option<HttpsUrl>,
    pub filename: String,
    pub url: Option<HttpsUrl>,
    /// Bytes, when the index published it or the file was downloaded to hash it.
    pub size: Option<u64>,
    pub sha256: Sha256,
}

impl LockEntry {
    /// Whether this entry is the one for `p` (PEP 503 name, PEP 440 version).
    pub fn is_for(&self, name: &str, version: &str) -> bool {
        same_name(self.name.as_str(), name) && same_version(self.version.as_str(), version)
    }

    /// Where the file comes from, for messages: its URL, else its name on pip's index.
    pub fn shown_source(&self) -> String {
        match &self.url {
            Some(u) => u.to_string(),
            None => format!("{} on pip's configured index", self.filename),
        }
    }

    /// The index it was resolved on, for messages.
    pub fn shown_index(&self) -> String {
        match &self.index {
            Some(i) => i.to_string(),
            None => "pip's configured index".into(),
        }
    }
}

/// A whole lock file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockFile {
    /// `image@sha256:...` of the base the files were chosen for, when known.
    pub base: Option<String>,
    pub entries: Vec<LockEntry>,
}

impl LockFile {
    /// Parses a lock file; errors name `file:line` and the key.
    pub fn parse(file: &str, text: &str) -> Result<LockFile, String> {
        let mut out = LockFile::default();
        let mut format = None;
        // The entry being read: its fields as they come.
        struct Partial {
            line: usize,
            name: PipName,
            version: Version,
            index: Option<HttpsUrl>,
            filename: Option<String>,
            url: Option<HttpsUrl>,
            size: Option<u64>,
            sha256: Option<Sha256>,
        }
        let finish = |p: Partial| -> Result<LockEntry, String> {
            let missing = |k: &str| {
                format!(
                    "{file}:{}: package {} {} has no `{k}`",
                    p.line, p.name, p.version
                )
            };
            // `index` and `url` come together (a stack's wheel) or not at all (an app's
            // package, from pip's configured index).
            match (&p.index, &p.url) {
                (Some(_), None) => return Err(missing("url")),
                (None, Some(_)) => return Err(missing("index")),
                _ => {}
            }
            Ok(LockEntry {
                index: p.index.clone(),
                filename: p.filename.clone().ok_or_else(|| missing("file"))?,
                url: p.url.clone(),
                sha256: p.sha256.clone().ok_or_else(|| missing("sha256"))?,
                size: p.size,
                name: p.name,
                version: p.version,
            })
        };
        let mut cur: Option<Partial> = None;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let bad = |m: String| format!("{file}:{n}: {m}");
            let (key, value) = t.split_once(' ').unwrap_or((t, ""));
            let value = value.trim();
            let one = |what: &str| -> Result<&str, String> {
                if value.is_empty() || value.contains(char::is_whitespace) {
                    Err(bad(format!("`{key}` takes one {what}")))
                } else {
                    Ok(value)
                }
            };
            match key {
                "lock-version" => {
                    if one("number")? != FORMAT {
                        return Err(bad(format!(
                            "lock format {value} is not {FORMAT}: this binary is older or newer than the lock; run `rdna1-images lock` again"
                        )));
                    }
                    format = Some(n);
                }
                "base" => out.base = Some(one("image reference")?.to_string()),
                "package" => {
                    if let Some(p) = cur.take() {
                        out.entries.push(finish(p)?);
                    }
                    let (name, version) = value
                        .split_once(' ')
                        .ok_or_else(|| bad("`package` takes a name and a version".into()))?;
                    cur = Some(Partial {
                        line: n,
                        name: PipName::parse(name).map_err(bad)?,
                        version: Version::parse(version.trim()).map_err(bad)?,
                        index: None,
                        filename: None,
                        url: None,
                        size: None,
                        sha256: None,
                    });
                }
                k @ ("index" | "file" | "url" | "size" | "sha256") => {
                    let p = cur
                        .as_mut()
                        .ok_or_else(|| bad(format!("`{k}` before any `package` line")))?;
                    let v = one("value")?;
                    let field = |e: String| bad(format!("`{k}`: {e}"));
                    match k {
                        "index" => p.index = Some(HttpsUrl::parse(v).map_err(field)?),
                        "url" => p.url = Some(HttpsUrl::parse(v).map_err(field)?),
                        "sha256" => p.sha256 = Some(Sha256::parse(v).map_err(field)?),
                        "size" => {
                            p.size = Some(v.parse().map_err(|_| {
                                bad(format!("size `{v}` is not a number of bytes"))
                            })?)
                        }
                        _ => {
                            if v.contains(['/', '\\']) || v.chars().any(char::is_control) {
                                return Err(bad(format!("file `{v}` is not a file name")));
                            }
                            p.filename = Some(v.to_string());
                        }
                    }
                }
                other => {
                    return Err(bad(format!(
                        "unknown key `{other}` (lock-version, base, package, index, file, url, size, sha256)"
                    )))
                }
            }
        }
        if let Some(p) = cur.take() {
            out.entries.push(finish(p)?);
        }
        if format.is_none() && !out.entries.is_empty() {
            return Err(format!("{file}: no `lock-version {FORMAT}` line"));
        }
        out.sort();
        Ok(out)
    }

    fn sort(&mut self) {
        self.entries.sort_by(|a, b| {
            (canonical_name(a.name.as_str()), a.version.as_str())
                .cmp(&(canonical_name(b.name.as_str()), b.version.as_str()))
        });
        self.entries
            .dedup_by(|a, b| a.is_for(b.name.as_str(), b.version.as_str()));
    }

    /// The text written to disk: deterministic for the same entries.
    pub fn render(&self, recipe: &str) -> String {
        let mut l = self.clone();
        l.sort();
        let mut out = format!(
            "# Lock of {recipe}.yaml, written by `rdna1-images lock` (or a first `build`): the file\n\
             # pip installs for each package the recipe pins by version only, and its sha256.\n\
             # `build --locked` uses it as it is. Regenerate it; do not edit it by hand.\n\
             lock-version {FORMAT}\n"
        );
        if let Some(b) = &l.base {
            out.push_str(&format!("base {b}\n"));
        }
        for e in &l.entries {
            out.push_str(&format!("\npackage {} {}\n", e.name, e.version));
            if let Some(i) = &e.index {
                out.push_str(&format!("index {i}\n"));
            }
            out.push_str(&format!("file {}\n", e.filename));
            if let Some(u) = &e.url {
                out.push_str(&format!("url {u}\n"));
            }
            if let Some(s) = e.size {
                out.push_str(&format!("size {s}\n"));
            }
            out.push_str(&format!("sha256 {}\n", e.sha256));
        }
        out
    }

    /// sha256 of the rendered lock: the image label that says which lock was installed.
    pub fn digest(&self, recipe: &str) -> String {
        crate::hex::encode(Sha::digest(self.render(recipe).as_bytes()))
    }

    pub fn find(&self, name: &str, version: &str) -> Option<&LockEntry> {
        self.entries.iter().find(|e| e.is_for(name, version))
    }

    /// Adds or replaces the entry for the same package and version.
    pub fn put(&mut self, e: LockEntry) {
        self.entries
            .retain(|x| !x.is_for(e.name.as_str(), e.version.as_str()));
        self.entries.push(e);
        self.sort();
    }
}

/// The entry that pins `p`, if the lock has one that fits: same name and version, and the
/// recipe's own URL when it names one.
pub fn entry_for<'a>(lock: &'a LockFile, p: &Wheel) -> Option<&'a LockEntry> {
    lock.find(p.name.as_str(), p.version.as_str())
        .filter(|e| p.url.as_ref().is_none_or(|u| Some(u) == e.url.as_ref()))
}

/// Fills every package the recipe pins by version only with its locked file and hash, and a
/// base the recipe pins by tag only with the lock's digest of that tag; returns how many it
/// filled. What the recipe pins itself keeps its own pins.
pub fn apply(r: &mut Recipe, lock: &LockFile) -> usize {
    let mut n = 0;
    // The resolved base digest, for a recipe that pins none: only for the same image the
    // recipe names (a lock left from an earlier base is not taken), and never over a digest
    // the recipe pins itself (that one is what a person reviewed).
    if r.base.digest.is_none() {
        let image = r.base.image.to_string();
        let digest = lock
            .base
            .as_deref()
            .and_then(|b| b.strip_prefix(image.as_str()))
            .and_then(|d| d.strip_prefix('@'))
            .and_then(|d| crate::values::Digest::parse(d).ok());
        if let Some(d) = digest {
            r.base.digest = Some(d);
            n += 1;
        }
    }
    let PyTorch::Wheels(w) = &mut r.pytorch else {
        return n;
    };
    for p in w.packages.iter_mut().chain(w.build_requirements.iter_mut()) {
        if !p.sha256.is_empty() {
            continue;
        }
        if let Some(e) = entry_for(lock, p) {
            if e.url.is_some() {
                p.url = e.url.clone();
            }
            p.sha256 = vec![e.sha256.clone()];
            n += 1;
        }
    }
    n
}

/// An app's packages pinned by version only, filled with their locked hashes (pip installs
/// them from its configured index, so no URL is taken); returns how many it filled.
pub fn apply_app(packages: &mut [Wheel], lock: &LockFile) -> usize {
    let mut n = 0;
    for p in packages.iter_mut().filter(|p| p.sha256.is_empty()) {
        if let Some(e) = entry_for(lock, p) {
            p.sha256 = vec![e.sha256.clone()];
            n += 1;
        }
    }
    n
}

/// Where the lock of a recipe lives: beside it in a recipes folder, or, for the recipes
/// built into the binary, in the state folder (`$XDG_STATE_HOME/rdna1-images/locks`, else
/// `~/.local/state/rdna1-images/locks`).
pub fn path_for(origin: &Origin, name: &str) -> PathBuf {
    match origin {
        Origin::Dir(d) => d.join(format!("{name}.lock")),
        Origin::Embedded => state_dir().join(format!("{name}.lock")),
    }
}

fn state_dir() -> PathBuf {
    crate::state_home::folder("locks").unwrap_or_else(|| PathBuf::from(".rdna1-images-locks"))
}

/// The lock of a recipe as it stands: the file at [`path_for`], else (embedded recipes) the
/// one shipped in the binary, else none. Returns the file shown in messages too.
pub fn read(origin: &Origin, name: &str) -> Result<(String, Option<LockFile>), String> {
    let path = path_for(origin, name);
    let shown = path.display().to_string();
    match crate::recipe_files::read_recipe(&path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes)
                .map_err(|e| format!("{shown}: the lock is not UTF-8 text: {e}"))?;
            Ok((shown.clone(), Some(LockFile::parse(&shown, &text)?)))
        }
        Err((std::io::ErrorKind::NotFound, _)) => match origin {
            Origin::Embedded => match EMBEDDED_LOCKS.iter().find(|(n, _)| *n == name) {
                Some((_, text)) => {
                    let f = format!("recipes/{name}.lock");
                    Ok((f.clone(), Some(LockFile::parse(&f, text)?)))
                }
                None => Ok((shown, None)),
            },
            Origin::Dir(_) => Ok((shown, None)),
        },
        Err((_, m)) => Err(format!("{shown}: cannot read the lock: {m}")),
    }
}

/// Writes `text` to `path` so that a reader (or a crash, a kill, a full disk) sees the old
/// file or the new one, never a part: a temporary file in the same folder, synced, then
/// renamed over it.
pub fn write_atomic(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write as _;
    let shown = path.display();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| format!("cannot write beside {shown}: {e}"))?;
    let bytes = text.as_bytes();
    // Test hook: die half-way through the temporary file, as a kill would.
    if std::env::var_os("RDNA1_IMAGES_TEST_ABORT_MID_WRITE").is_some() {
        let _ = tmp.write_all(&bytes[..bytes.len() / 2]);
        let _ = tmp.as_file().sync_all();
        std::process::abort();
    }
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| format!("cannot write {shown}: {e}"))?;
    tmp.persist(path)
        .map_err(|e| format!("cannot write {shown}: {}", e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, version: &str, sha: char) -> LockEntry {
        LockEntry {
            name: PipName::parse(name).unwrap(),
            version: Version::parse(version).unwrap(),
            index: Some(HttpsUrl::parse("https://h/simple/").unwrap()),
            filename: format!("{name}-{version}-py3-none-any.whl"),
            url: Some(
                HttpsUrl::parse(&format!("https://h/f/{name}-{version}-py3-none-any.whl")).unwrap(),
            ),
            size: Some(12),
            sha256: Sha256::parse(&sha.to_string().repeat(64)).unwrap(),
        }
    }

    #[test]
    fn a_lock_reads_back_as_written_in_one_order() {
        let mut l = LockFile {
            base: Some(format!("debian:x@sha256:{}", "a".repeat(64))),
            entries: vec![],
        };
        l.put(entry("zeta", "1.0", 'b'));
        l.put(entry("Alpha_x", "2.0+rocm1", 'c'));
        l.put(entry("zeta", "1.0.0", 'd'));
        assert_eq!(l.entries.len(), 2, "same version replaced");
        let text = l.render("r");
        assert!(text.find("package Alpha_x").unwrap() < text.find("package zeta").unwrap());
        let back = LockFile::parse("r.lock", &text).unwrap();
        assert_eq!(back, l);
        assert_eq!(back.render("r"), text);
        assert_eq!(
            back.find("alpha-x", "2.0+ROCM1").unwrap().sha256.as_str(),
            "c".repeat(64)
        );
    }

    #[test]
    fn hostile_locks_are_refused_with_file_and_line() {
        let ok = LockFile {
            base: None,
            entries: vec![entry("p", "1.0", 'a')],
        }
        .render("r");
        for (from, to, want) in [
            ("sha256 aaaa", "sha256 zz", "r.lock:11:"),
            ("file p-1.0", "file ../p-1.0", "is not a file name"),
            ("url https://h", "url file:///etc/passwd#", "r.lock:9:"),
            ("lock-version 1", "lock-version 9", "lock format 9"),
            ("size 12", "size -1", "not a number"),
            ("size 12", "colour red", "unknown key `colour`"),
            ("package p 1.0", "package p", "a name and a version"),
            ("package p 1.0", "package p 1.0;rm", "r.lock:6:"),
        ] {
            let bad = ok.replacen(from, to, 1);
            assert_ne!(bad, ok, "{from}");
            let e = LockFile::parse("r.lock", &bad).unwrap_err();
            assert!(e.contains(want), "{from} -> {to}: {e}");
        }
        let e = LockFile::parse("r.lock", &ok.replace("sha256 ", "# ")).unwrap_err();
        assert!(e.contains("has no `sha256`"), "{e}");
        assert_eq!(
            LockFile::parse("r.lock", "# empty\n").unwrap(),
            LockFile::default()
        );
    }

    #[test]
    fn an_apps_entries_name_no_index_and_read_back_as_written() {
        let mut e = entry("tiny_dep", "1.2.0", 'e');
        (e.index, e.url, e.size) = (None, None, None);
        let l = LockFile {
            base: None,
            entries: vec![e],
        };
        let text = l.render("app");
        assert!(
            !text.contains("\nindex ") && !text.contains("\nurl "),
            "{text}"
        );
        assert_eq!(LockFile::parse("app.lock", &text).unwrap(), l);
        // index without url (or the reverse) is half a stack entry: refused.
        let half = text.replace("file tiny_dep", "index https://h/simple/\nfile tiny_dep");
        let e = LockFile::parse("app.lock", &half).unwrap_err();
        assert!(
            e.contains("app.lock:6:") && e.contains("has no `url`"),
            "{e}"
        );
        let bad = text.replace("sha256 eeee", "sha256 zzzz");
        let e = LockFile::parse("app.lock", &bad).unwrap_err();
        assert!(e.starts_with("app.lock:8: `sha256`:"), "{e}");
    }

    #[test]
    fn the_shipped_app_lock_is_as_written_and_fills_every_package() {
        let (_, text) = EMBEDDED_LOCKS
            .iter()
            .find(|(n, _)| *n == "comfyui")
            .unwrap();
        let lock = LockFile::parse("recipes/comfyui.lock", text).unwrap();
        assert_eq!(lock.entries.len(), 70);
        assert_eq!(&lock.render("comfyui"), text, "regenerated byte for byte");
        assert!(lock
            .entries
            .iter()
            .all(|e| e.url.is_none() && e.index.is_none()));
    }

    #[test]
    fn an_atomic_write_replaces_whole_files_only() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.lock");
        write_atomic(&p, "one\n").unwrap();
        write_atomic(&p, "two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two\n");
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left");
    }
}
