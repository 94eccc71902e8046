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

/// `"ab01..."` (exactly 64 lowercase hex digits) -> the 32 bytes of a sha256 digest. Works
/// on bytes, never slices the string: any other text (short, long, upper case, non-ASCII)
/// is None.
pub fn decode_sha256(text: &str) -> Option<[u8; 32]> {
    fn digit(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_is_the_inverse_of_encode_and_refuses_anything_else() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37 + 5) as u8);
        assert_eq!(decode_sha256(&encode(bytes)), Some(bytes));
        let ok = encode(bytes);
        for bad in [
            String::new(),
            ok[..12].to_string(),
            format!("{ok}0"),
            ok.to_uppercase(),
            ok.replacen('a', "g", 1),
            // 64 bytes, but a two-byte character across the first pair's boundary
            format!("a{}b", "é".repeat(31)),
            "é".repeat(32),
        ] {
            assert_eq!(decode_sha256(&bad), None, "{bad:?}");
        }
    }
}
