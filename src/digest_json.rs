//! Digests in JSON: the pipeline's outcomes keep digests as bare hex, and every JSON
//! document shows them as `sha256:<hex>`. Here, below the pipeline, so its types can say so
//! without importing the UI.

use serde::Serializer;

/// `serialize_with` for digests kept as bare hex: always `sha256:<hex>` in JSON.
pub fn sha256<S: Serializer>(hex: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&prefixed(hex))
}

/// The same, for an optional digest.
pub fn sha256_opt<S: Serializer>(hex: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match hex {
        Some(h) => s.serialize_str(&prefixed(h)),
        None => s.serialize_none(),
    }
}

/// `abc...` -> `sha256:abc...`; an already prefixed digest is left as it is.
pub fn prefixed(hex: &str) -> String {
    if hex.contains(':') {
        hex.to_string()
    } else {
        format!("sha256:{hex}")
    }
}
