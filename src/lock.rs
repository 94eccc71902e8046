//! `lock <recipe>`: resolve the base tag to its digest and fill in missing wheel hashes,
//! written back into the recipe text so its comments and layout stay as they are.

use std::path::Path;

use std::sync::Arc;

use serde::Serialize;

use crate::index_client::IndexClient;
use crate::recipe::{self, PyTorch, Recipe, Wheel};
use crate::simple_index;

/// What `lock` changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LockReport {
    pub file: String,
    /// (field, value) for every pin written; JSON: `[{"field", "value"}]`.
    #[serde(serialize_with = "pins_as_objects")]
    pub pinned: Vec<(String, String)>,
    /// Inputs left as they were, and why.
    pub left: Vec<String>,
    /// With `--verify`: packages whose recorded file and hash the index still serves.
    pub verified: Vec<String>,
}

fn pins_as_objects<S: serde::Serializer>(
    pins: &[(String, String)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(pins.len()))?;
    for (field, value) in pins {
        seq.serialize_element(&serde_json::json!({ "field": field, "value": value }))?;
    }
    seq.end()
}

fn line_start(text: &str, line: usize) -> usize {
    text.split_inclusive('\n')
        .take(line - 1)
        .map(str::len)
        .sum()
}

fn line_at(text: &str, line: usize) -> &str {
    text.lines().nth(line - 1).unwrap_or("")
}

/// Sets `key: value` in the mapping at `parent`: replaces the value when the key exists,
/// else inserts the line after the line of `after` (a sibling key) with its indentation.
pub fn set_key(
    text: &str,
    parent: &[&str],
    key: &str,
    after: &str,
    value: &str,
) -> Result<String, String> {
    let mut path = parent.to_vec();
    path.push(key);
    if let Some((line, col)) = recipe::locate(text, &path) {
        if line_at(text, line)[col - 1..].starts_with(&format!("{key}:")) {
            let start = line_start(text, line);
            let old = line_at(text, line);
            // Keep a trailing comment.
            let comment = old
                .find(" #")
                .map(|i| old[i..].to_string())
                .unwrap_or_default();
            let new = format!("{}{key}: {value}{comment}", &old[..col - 1]);
            return Ok(format!(
                "{}{new}{}",
                &text[..start],
                &text[start + old.len()..]
            ));
        }
    }
    let mut sib = parent.to_vec();
    sib.push(after);
    let (line, col) = recipe::locate(text, &sib)
        .filter(|(l, c)| line_at(text, *l)[c - 1..].starts_with(&format!("{after}:")))
        .ok_or_else(|| format!("no `{}` in the recipe", sib.join(".")))?;
    let start = line_start(text, line) + line_at(text, line).len();
    let nl = if text[start..].starts_with('\n') {
        1
    } else {
        0
    };
    let indent = " ".repeat(col - 1);
    let insert = if nl == 1 {
        format!("\n{indent}{key}: {value}")
    } else {
        format!("\n{indent}{key}: {value}\n")
    };
    Ok(format!("{}{insert}{}", &text[..start], &text[start..]))
}

/// Removes `key` (and the block of comment lines right above it, which explain it) from
/// the mapping at `parent`. Nothing happens when the key is absent.
pub fn remove_key(text: &str, parent: &[&str], key: &str) -> String {
    let mut path = parent.to_vec();
    path.push(key);
    let Some((line, col)) = recipe::locate(text, &path) else {
        return text.to_string();
    };
    if !line_at(text, line)[col - 1..].starts_with(&format!("{key}:")) {
        return text.to_string();
    }
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut first = line - 1;
    while first > 0 {
        let prev = lines[first - 1];
        let t = prev.trim_start();
        if t.starts_with('#') && prev.len() - t.len() == col - 1 {
            first -= 1;
        } else {
            break;
        }
    }
    // A value continued on deeper-indented lines goes with its key.
    let mut last = line;
    while last < lines.len() {
        let l = lines[last];
        let t = l.trim_start();
        if !t.trim().is_empty() && !t.starts_with('#') && l.len() - t.len() > col - 1 {
            last += 1;
        } else {
            break;
        }
    }
    let mut out = String::with_capacity(text.len());
    for (i, l) in lines.iter().enumerate() {
        if i < first || i >= last {
            out.push_str(l);
        }
    }
    out
}

/// What `lock` may do besides filling in what is missing.
#[derive(Debug, Clone, Copy, Default)]
pub struct LockOptions {
    /// Also look up every package already hashed whose file comes from the recipe's index,
    /// and fail, writing nothing, when the index now has another hash for the same file
    /// (the same version rebuilt or replaced). The nightly runs this before building.
    pub verify: bool,
}

/// How `lock` failed; each maps to an exit code of the CLI contract.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The recipe file itself (2).
    #[error("{0}")]
    Recipe(String),
    /// The index or a file could not be reached (3).
    #[error(transparent)]
    Unreachable(crate::index_client::FetchError),
    /// A package has a different hash than recorded for the same version (1).
    #[error("{file}: the index serves different files for versions the recipe pins (nothing was written): {}", changed.join("; "))]
    Changed { file: String, changed: Vec<String> },
    /// The index answered, but not with what the recipe pins (1).
    #[error("{0}")]
    Resolve(String),
}

impl LockError {
    pub fn exit_code(&self) -> i32 {
        match self {
            LockError::Recipe(_) => 2,
            LockError::Unreachable(_) => 3,
            LockError::Changed { .. } | LockError::Resolve(_) => 1,
        }
    }
}

impl From<crate::index_client::FetchError> for LockError {
    fn from(e: crate::index_client::FetchError) -> Self {
        match e {
            crate::index_client::FetchError::Unreachable { .. } => LockError::Unreachable(e),
            other => LockError::Resolve(other.to_string()),
        }
    }
}

/// Runs blocking index I/O off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::index_client::FetchError> + Send + 'static,
) -> Result<T, LockError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LockError::Resolve(format!("index lookup failed: {e}")))?
        .map_err(LockError::from)
}

/// The file of one package on the recipe's index: (url, sha256). The index's published
/// sha256 is taken when it gives one (as pip does), else the file is downloaded and hashed.
async fn resolve_on_index(
    client: &Arc<IndexClient>,
    index: &str,
    p: &Wheel,
    python: &str,
) -> Result<(String, String), LockError> {
    let (c, i, name) = (client.clone(), index.to_string(), p.name.clone());
    let files = blocking(move || c.project_files(&i, &name)).await?;
    let f = simple_index::choose(&files, &p.name, &p.version, python, p.sdist)
        .map_err(|e| LockError::Resolve(format!("{index}: {e}")))?
        .clone();
    let sha = match f.sha256 {
        Some(h) => h,
        None => {
            let (c, u) = (client.clone(), f.url.clone());
            blocking(move || c.sha256(&u)).await?
        }
    };
    Ok((f.url, sha))
}

/// Whether `url` is a file of the index (same scheme, host and port).
fn on_index(url: &str, index: &str) -> bool {
    match (url::Url::parse(url), url::Url::parse(index)) {
        (Ok(u), Ok(i)) => u.origin() == i.origin(),
        _ => false,
    }
}

/// Locks the recipe file in place. `resolve` maps an image reference to its digest (the
/// engine's registry lookup; a closure so the pure part is testable).
pub async fn lock<F, Fut>(
    path: &Path,
    opts: LockOptions,
    mut resolve: F,
) -> Result<LockReport, LockError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let file = path.display().to_string();
    let mut text = std::fs::read_to_string(path)
        .map_err(|e| LockError::Recipe(format!("cannot read {file}: {e}")))?;
    // Not validated yet: a recipe is locked precisely because pins are missing.
    let r: Recipe =
        recipe::parse_unvalidated(&file, &text).map_err(|e| LockError::Recipe(e.to_string()))?;
    let mut report = LockReport {
        file: file.clone(),
        ..Default::default()
    };
    let mut bases = vec![(vec!["base"], r.base.clone())];
    if let PyTorch::Source(s) = &r.pytorch {
        if let Some(rb) = &s.runtime_base {
            bases.push((vec!["pytorch", "source", "runtime_base"], rb.clone()));
        }
    }
    for (at, b) in bases {
        match resolve(b.image.to_string()).await {
            Ok(d) => {
                if b.digest.as_deref() != Some(d.as_str()) {
                    text = set_key(&text, &at, "digest", "image", &d).map_err(LockError::Recipe)?;
                    report.pinned.push((format!("{}.digest", at.join(".")), d));
                }
            }
            Err(e) => report.left.push(format!(
                "{}.digest: {} not resolved: {e}",
                at.join("."),
                b.image
            )),
        }
    }
    if let PyTorch::Wheels(w) = &r.pytorch {
        let client = Arc::new(IndexClient::new());
        // Wheels are chosen for the image's CPython (`python.version`, e.g. 3.13 -> cp313).
        let python = r.python.version.clone();
        let mut changed = Vec::new();
        let lists = [
            ("packages", &w.packages),
            ("build_requirements", &w.build_requirements),
        ];
        for (field, list) in lists {
            for (i, p) in list.iter().enumerate() {
                let idx = i.to_string();
                let at = ["pytorch", "wheels", field, idx.as_str()];
                let shown = format!("pytorch.wheels.{field}[{i}]");
                if p.sha256.is_empty() {
                    let (url, hex) = match &p.url {
                        // A URL the recipe names is hashed as it is.
                        Some(u) => {
                            let (c, u2) = (client.clone(), u.to_string());
                            (u.to_string(), blocking(move || c.sha256(&u2)).await?)
                        }
                        None => resolve_on_index(&client, &w.index, p, &python).await?,
                    };
                    if p.url.is_none() {
                        text = set_key(&text, &at, "url", "version", &url)
                            .map_err(LockError::Recipe)?;
                        report.pinned.push((format!("{shown}.url"), url));
                    }
                    text = set_key(&text, &at, "sha256", "url", &format!("[{hex}]"))
                        .map_err(LockError::Recipe)?;
                    report.pinned.push((format!("{shown}.sha256"), hex));
                } else if opts.verify {
                    let Some(u) = p.url.as_deref().filter(|u| on_index(u, &w.index)) else {
                        continue;
                    };
                    let (url, hex) = resolve_on_index(&client, &w.index, p, &python).await?;
                    if url != u || !p.sha256.iter().any(|h| h.as_str() == hex) {
                        changed.push(format!(
                            "{} {}: the recipe has {} ({}), the index now has {hex} ({url})",
                            p.name,
                            p.version,
                            p.sha256.join(", "),
                            u
                        ));
                    } else {
                        report.verified.push(format!("{} {}", p.name, p.version));
                    }
                }
            }
        }
        if !changed.is_empty() {
            return Err(LockError::Changed { file, changed });
        }
        let locked: Recipe = recipe::parse_unvalidated(&file, &text)
            .map_err(|e| LockError::Recipe(format!("after locking: {e}")))?;
        if let PyTorch::Wheels(lw) = &locked.pytorch {
            if lw.lock_pending.is_some() && lw.unlocked().next().is_none() {
                text = remove_key(&text, &["pytorch", "wheels"], "lock_pending");
                report.pinned.push((
                    "pytorch.wheels.lock_pending".into(),
                    "removed: every package is hashed".into(),
                ));
            }
        }
    }
    // What we wrote must parse and validate (a still-pending recipe keeps its reason).
    crate::recipe::parse(&file, &text)
        .map_err(|e| LockError::Recipe(format!("{file} after locking: {e}")))?;
    std::fs::write(path, &text)
        .map_err(|e| LockError::Recipe(format!("cannot write {file}: {e}")))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "# top comment\nname: x\nbase:\n  # the base\n  image: a:b  # tag\n  unpinned_reason: none yet\npytorch:\n  wheels:\n    packages:\n      - name: torch\n        url: https://h/t.whl\n      - name: y\n        url: https://h/y.whl\n        sha256: []\nsmoke: {}\n";

    #[test]
    fn a_key_goes_with_its_comment_block_and_nothing_else() {
        let t = "a:\n  # keep: about x\n  x: 1\n  # why y\n  # more\n  y: long\n    continued\n  z: 3\n";
        let out = remove_key(t, &["a"], "y");
        assert_eq!(out, "a:\n  # keep: about x\n  x: 1\n  z: 3\n");
        assert_eq!(remove_key(t, &["a"], "nope"), t);
        assert_eq!(remove_key(t, &["a"], "z"), t.replace("  z: 3\n", ""));
    }

    #[test]
    fn keys_are_inserted_or_replaced_in_place() {
        let t = set_key(R, &["base"], "digest", "image", "sha256:aa").unwrap();
        assert!(
            t.contains("  image: a:b  # tag\n  digest: sha256:aa\n  unpinned_reason"),
            "{t}"
        );
        assert!(t.starts_with("# top comment\n"));
        let t2 = set_key(&t, &["base"], "digest", "image", "sha256:bb").unwrap();
        assert!(t2.contains("  digest: sha256:bb\n") && !t2.contains("sha256:aa"));
        let t = set_key(
            R,
            &["pytorch", "wheels", "packages", "0"],
            "sha256",
            "url",
            "[ff]",
        )
        .unwrap();
        assert!(
            t.contains("        url: https://h/t.whl\n        sha256: [ff]\n      - name: y"),
            "{t}"
        );
        let t = set_key(
            R,
            &["pytorch", "wheels", "packages", "1"],
            "sha256",
            "url",
            "[ee]",
        )
        .unwrap();
        assert!(t.contains("        sha256: [ee]\nsmoke"), "{t}");
    }
}
