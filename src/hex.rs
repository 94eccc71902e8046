//! Lowercase hex, the one encoder for digests (input digests, layer and config sha256s,
//! wheel hashes, context folder names).

use std::fmt::Write as _;

/// `[0xab, 0x01]` -> `"ab01"`.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    let bytes = bytes.as_ref();
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
