//! `lock <recipe>`: resolve the base tag to its digest and fill in missing wheel hashes,
//! written back into the recipe text so its comments and layout stay as they are.

use std::path::Path;

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::recipe::{self, PyTorch, Recipe};

/// What `lock` changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LockReport {
    pub file: String,
    /// (field, value) for every pin written.
    pub pinned: Vec<(String, String)>,
    /// Inputs left as they were, and why.
    pub left: Vec<String>,
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

/// sha256 of what a URL serves: http by a plain HTTP/1.0 GET (loopback mirrors, tests),
/// https through curl.
pub async fn fetch_sha256(url: &str) -> Result<String, String> {
    let mut h = Sha256::new();
    if let Some(rest) = url.strip_prefix("http://") {
        let (hostport, path) = rest.split_once('/').unwrap_or((rest, ""));
        let addr = if hostport.contains(':') {
            hostport.to_string()
        } else {
            format!("{hostport}:80")
        };
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("{url}: cannot connect to {addr}: {e}"))?;
        s.write_all(
            format!("GET /{path} HTTP/1.0\r\nHost: {hostport}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .map_err(|e| format!("{url}: {e}"))?;
        let mut head = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut in_body = false;
        loop {
            let n = s.read(&mut buf).await.map_err(|e| format!("{url}: {e}"))?;
            if n == 0 {
                break;
            }
            if in_body {
                h.update(&buf[..n]);
                continue;
            }
            head.extend_from_slice(&buf[..n]);
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                let status = String::from_utf8_lossy(&head[..i]);
                let first = status.lines().next().unwrap_or("");
                if first.split_whitespace().nth(1) != Some("200") {
                    return Err(format!("{url}: the server answered `{first}`"));
                }
                h.update(&head[i + 4..]);
                in_body = true;
            }
        }
        if !in_body {
            return Err(format!("{url}: no HTTP response"));
        }
    } else if url.starts_with("https://") {
        let mut child = tokio::process::Command::new("curl")
            .args(["-fsSL", "--proto", "=https", "--", url])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("{url}: cannot run curl to download it: {e}"))?;
        let mut out = child.stdout.take().expect("piped");
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = out
                .read(&mut buf)
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let o = child
            .wait_with_output()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !o.status.success() {
            return Err(format!(
                "{url}: download failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
    } else {
        return Err(format!("{url}: only http and https URLs can be hashed"));
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Locks the recipe file in place. `resolve` maps an image reference to its digest (the
/// engine's registry lookup; a closure so the pure part is testable).
pub async fn lock<F, Fut>(path: &Path, mut resolve: F) -> Result<LockReport, String>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let file = path.display().to_string();
    let mut text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {file}: {e}"))?;
    // Not validated yet: a recipe is locked precisely because pins are missing.
    let r: Recipe = recipe::parse_unvalidated(&file, &text).map_err(|e| e.to_string())?;
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
                    text = set_key(&text, &at, "digest", "image", &d)?;
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
        for (i, p) in w.packages.iter().enumerate() {
            if !p.sha256.is_empty() {
                continue;
            }
            let idx = i.to_string();
            let at = ["pytorch", "wheels", "packages", idx.as_str()];
            let Some(url) = &p.url else {
                report.left.push(format!(
                    "{}.sha256: `{}` has no url to download and hash",
                    at.join("."),
                    p.name
                ));
                continue;
            };
            let hex = fetch_sha256(url).await?;
            text = set_key(&text, &at, "sha256", "url", &format!("[{hex}]"))?;
            report
                .pinned
                .push((format!("pytorch.wheels.packages[{i}].sha256"), hex));
        }
    }
    // What we wrote must parse (validation itself may still want reasons for what is left).
    recipe::parse_unvalidated(&file, &text).map_err(|e| format!("after locking: {e}"))?;
    std::fs::write(path, &text).map_err(|e| format!("cannot write {file}: {e}"))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "# top comment\nname: x\nbase:\n  # the base\n  image: a:b  # tag\n  unpinned_reason: none yet\npytorch:\n  wheels:\n    packages:\n      - name: torch\n        url: https://h/t.whl\n      - name: y\n        url: https://h/y.whl\n        sha256: []\nsmoke: {}\n";

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
