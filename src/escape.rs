//! The one escaping of text shown to a person: what a recipe, a folder or an engine says
//! reaches the terminal only as plain text.
//!
//! A YAML key, a case name or a file name can carry a newline (a forged `ok` line), ESC or
//! a C1 CSI (`\u{9b}`: colours, cursor moves, OSC 0 retitling, OSC 8 links), BEL, CR or BS
//! (overwriting what was printed), bidi controls (text shown in another order than it is
//! read) or zero-width characters (a name that looks like another). Every such character is
//! written as `{:?}` writes it: `\n`, `\u{1b}`, `\u{202e}`. Plain text, including `\` and
//! any printable non-ASCII letter, passes unchanged, so escaping twice changes nothing.
//!
//! It lives in the core, not in `ui`, because the core's error types put recipe values into
//! their messages (a field path is a YAML key); the output boundary (`ui::console`,
//! `ui::json`, the commands' own lines, `main`'s error line) calls it on everything it
//! prints, and the errors call it on the values they quote.

use std::borrow::Cow;

/// A character that must not reach a terminal raw: C0 and C1 controls, DEL, bidi
/// embeddings, overrides and isolates, zero-width and invisible formatting characters, the
/// line and paragraph separators, and the byte-order mark.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00ad}'
                | '\u{034f}'
                | '\u{061c}'
                | '\u{115f}'
                | '\u{1160}'
                | '\u{17b4}'
                | '\u{17b5}'
                | '\u{180b}'..='\u{180f}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{3164}'
                | '\u{fe00}'..='\u{fe0f}'
                | '\u{feff}'
                | '\u{ffa0}'
                | '\u{fff0}'..='\u{fffb}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0000}'..='\u{e0fff}'
        )
}

fn escaped(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if !is_unsafe(c) || keep(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    Cow::Owned(out)
}

/// A value on one line: every unsafe character escaped, newlines included.
pub fn value(s: &str) -> Cow<'_, str> {
    escaped(s, |_| false)
}

/// A message of the tool's own, which may have several lines: every unsafe character
/// escaped except the newlines that separate its lines. Values in it were escaped with
/// [`value`] where they were put in, so a newline here is the tool's.
pub fn message(s: &str) -> Cow<'_, str> {
    escaped(s, |c| c == '\n')
}

/// JSON text with every unsafe character that serde_json leaves raw (DEL, C1, U+2028,
/// bidi and zero-width characters) written as a `\uXXXX` escape. Such characters can only
/// be inside strings (the rest of JSON is ASCII), where the escape means the same string,
/// so the document stays valid and equal, and is safe to print.
pub fn json(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| is_unsafe(c) && c != '\n') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_unsafe(c) && c != '\n' {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{:04x}", u));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_act_on_and_nothing_else() {
        assert_eq!(value("x\nok forged"), "x\\nok forged");
        assert_eq!(value("\u{1b}]0;t\u{7}"), "\\u{1b}]0;t\\u{7}");
        assert_eq!(
            value("a\u{9b}b\u{202e}c\u{200b}d\u{2028}"),
            "a\\u{9b}b\\u{202e}c\\u{200b}d\\u{2028}"
        );
        assert_eq!(value("röcm C:\\x ✓"), "röcm C:\\x ✓");
        assert_eq!(value(&value("a\u{7f}")), value("a\u{7f}"));
        assert_eq!(
            message("line one\nline\ttwo\u{1b}"),
            "line one\nline\\ttwo\\u{1b}"
        );
        let doc =
            serde_json::to_string(&serde_json::json!({"k": "a\u{9b}\u{2028}\u{e0001}"})).unwrap();
        let safe = json(&doc);
        assert!(!safe.chars().any(is_unsafe), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["k"], "a\u{9b}\u{2028}\u{e0001}");
    }
}
