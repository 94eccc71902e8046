//! pip requirements lines: `name==version` or `name @ url`, then `--hash` options.

use crate::values::{HttpsUrl, PipName, Sha256, Version};

/// One requirement with its hashes, continued over lines with ` \`.
///
/// The values' grammars exclude whitespace, `#`, `;` and `\`, so nothing in them can start an
/// option, a comment, a marker or a new line; the assertion keeps that promise checked.
pub fn line(
    name: &PipName,
    version: &Version,
    url: Option<&HttpsUrl>,
    hashes: &[Sha256],
) -> String {
    let mut out = match url {
        Some(u) => format!("{} @ {}", name.as_str(), u.as_str()),
        None => format!("{}=={}", name.as_str(), version.as_str()),
    };
    if url.is_none() && hashes.is_empty() {
        // Not locked yet: the Dockerfile's guard stops the build before pip runs.
        out.push_str("  # sha256 to be locked");
    }
    for h in hashes {
        out.push_str(" \\\n    --hash=sha256:");
        out.push_str(h.as_str());
    }
    out.push('\n');
    let values = [
        name.as_str(),
        version.as_str(),
        url.map_or("", |u| u.as_str()),
    ];
    assert!(
        values
            .iter()
            .all(|v| !v.contains(|c: char| c.is_whitespace() || "#;\\".contains(c))),
        "requirement values passed their grammars"
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_and_hashed_line() {
        let h = Sha256::parse(&"a".repeat(64)).unwrap();
        let l = line(
            &PipName::parse("numpy").unwrap(),
            &Version::parse("1.26.4").unwrap(),
            None,
            &[h],
        );
        assert_eq!(
            l,
            format!("numpy==1.26.4 \\\n    --hash=sha256:{}\n", "a".repeat(64))
        );
    }
}
