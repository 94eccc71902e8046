//! Lowercase hex, the one encoder for digests (input digests, layer and config sha256s,
//! wheel hashes, context folder names).

/// `[0xab, 0x01]` -> `"ab01"`.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    hex::encode(bytes)
}

/// `"ab01..."` (exactly 64 lowercase hex digits) -> the 32 bytes of a sha256 digest. Any
/// other text (short, long, upper case, non-ASCII) is None: the `hex` crate takes upper case
/// too, but a digest has one spelling, so a label or an argument in another is refused.
pub fn decode_sha256(text: &str) -> Option<[u8; 32]> {
    if !is_lower_hex(text, 64) {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Exactly `digits` lowercase hex digits (a sha256, a git commit id).
pub fn is_lower_hex(text: &str, digits: usize) -> bool {
    text.len() == digits && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `sha256:` and 64 lowercase hex digits: the one spelling of a sha256 content digest.
pub fn is_sha256_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| decode_sha256(h).is_some())
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
            assert!(!is_sha256_digest(&format!("sha256:{bad}")), "{bad:?}");
        }
        assert!(is_sha256_digest(&format!("sha256:{ok}")));
        assert!(!is_sha256_digest(&ok), "no algorithm");
        assert!(!is_sha256_digest(&format!("sha512:{ok}")));
    }
}
