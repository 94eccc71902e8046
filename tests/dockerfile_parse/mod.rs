//! A small Dockerfile reader for tests, written from BuildKit's rules and independent of the
//! renderer: comments and blank lines are skipped (also inside continuations), a line ending
//! in `\` continues, the first word is the instruction, `--flag`s follow, then either a JSON
//! array (exec form) or the rest of the line.

#![allow(dead_code)]

#[derive(Debug, Clone, PartialEq)]
pub struct Instr {
    pub keyword: String,
    pub flags: Vec<String>,
    /// Exec form: the decoded JSON array.
    pub exec: Option<Vec<String>>,
    /// The text after the flags, continuations joined.
    pub rest: String,
}

pub fn parse(df: &str) -> Vec<Instr> {
    let mut out = vec![];
    let mut cur: Option<String> = None;
    for line in df.split('\n') {
        let t = line.trim_start();
        if t.starts_with('#') || (cur.is_none() && t.trim().is_empty()) {
            continue;
        }
        let (body, cont) = match line.trim_end().strip_suffix('\\') {
            Some(b) => (b, true),
            None => (line, false),
        };
        let acc = cur.get_or_insert_with(String::new);
        acc.push_str(body);
        if !cont {
            out.push(instr(&cur.take().unwrap()));
        }
    }
    if let Some(c) = cur {
        out.push(instr(&c));
    }
    out
}

fn instr(s: &str) -> Instr {
    let s = s.trim();
    let (kw, mut rest) = s.split_once(char::is_whitespace).unwrap_or((s, ""));
    let mut flags = vec![];
    loop {
        rest = rest.trim_start();
        if rest.starts_with("--") {
            let (f, r) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            flags.push(f.to_string());
            rest = r;
        } else {
            break;
        }
    }
    let exec = rest
        .starts_with('[')
        .then(|| serde_json::from_str::<Vec<String>>(rest).ok())
        .flatten();
    Instr {
        keyword: kw.to_ascii_uppercase(),
        flags,
        exec,
        rest: rest.to_string(),
    }
}

/// `KEY="value"` pairs of ENV and LABEL, with the Dockerfile's double-quote escapes undone.
pub fn key_values(rest: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        for c in chars.by_ref() {
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if key.is_empty() {
            return out;
        }
        assert_eq!(chars.next(), Some('"'), "values are double-quoted: {rest}");
        let mut v = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => v.push(chars.next().expect("an escape has a character")),
                '"' => break,
                c => v.push(c),
            }
        }
        out.push((key, v));
    }
}

/// The shell words of a RUN: of its shell form, or of the `-c` script of its exec form.
pub fn shell_words(i: &Instr) -> Vec<String> {
    let script = match &i.exec {
        Some(argv) => argv.last().cloned().unwrap_or_default(),
        None => i.rest.clone(),
    };
    shlex::split(&script).unwrap_or_default()
}
