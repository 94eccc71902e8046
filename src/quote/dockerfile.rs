//! Dockerfile text: the only way the renderer writes a line.
//!
//! Every method takes the tool's own text as `&'static str` and recipe values as typed or
//! `&str` arguments that are quoted here, so no recipe value reaches the Dockerfile raw.
//! What each context needs:
//! - `FROM`: the reference grammar ([`ImageRef`], [`Digest`]) leaves nothing to quote;
//! - `ENV`/`LABEL`: `KEY="value"` with `"`, `\` and `$` escaped (the Dockerfile's own
//!   quoting; `$` would otherwise be expanded by the frontend);
//! - `RUN` of tool commands: shell form, values as POSIX words (see `quote::shell`), one
//!   command per line; a command that would not stay on its line is written in exec form;
//! - `RUN` of a recipe's own shell text: always exec form,
//!   `["/bin/bash", "-e", "-o", "pipefail", "-c", "<text>"]`, the text one JSON string with
//!   every control and non-ASCII character escaped. The frontend reads that array with a
//!   JSON decoder and hands the string to bash unchanged: no newline, `\` or `#` in it can
//!   end the `RUN` or start an instruction (this engine's built-in frontend has no heredocs).

use serde::Serialize;

use super::shell::Command;
use crate::values::{AbsPath, Digest, ImageRef, ShellStep};

/// The argv prefix of a recipe's shell steps. `-e`: a multi-line step fails at its first
/// failing line, as a one-line `&&` chain would.
pub const STEP_SHELL: [&str; 5] = ["/bin/bash", "-e", "-o", "pipefail", "-c"];

/// A Dockerfile being written.
#[derive(Debug, Default)]
pub struct Dockerfile(String);

/// One line of free text (a comment) assembled from literals and values.
#[derive(Debug, Default)]
pub struct Line(String);

impl Line {
    pub fn lit(mut self, s: &'static str) -> Self {
        self.0.push_str(s);
        self
    }
    /// A value inside a comment: anything that could end the line is shown escaped.
    pub fn text(mut self, s: &str) -> Self {
        for c in s.chars() {
            if breaks_line(c) {
                self.0.extend(c.escape_default());
            } else {
                self.0.push(c);
            }
        }
        self
    }
}

fn breaks_line(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{85}' | '\u{feff}')
}

/// `"value"` for ENV and LABEL.
pub fn double_quoted(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' | '\\' | '$' => {
                s.push('\\');
                s.push(c);
            }
            // The grammars refuse these; if one slipped through it must not end the line.
            c if breaks_line(c) => s.extend(c.escape_default()),
            _ => s.push(c),
        }
    }
    s.push('"');
    s
}

/// serde_json's compact output, with `", "` between items and every non-ASCII character
/// escaped, so the line is plain ASCII whatever the recipe holds.
struct AsciiJson;

impl serde_json::ser::Formatter for AsciiJson {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() && !c.is_ascii_control() {
                w.write_all(&[c as u8])?;
            } else {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    write!(w, "\\u{u:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// A JSON array of strings as the exec form of `RUN`, `COPY`, `SHELL`...
pub fn json_array(args: &[&str]) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, AsciiJson);
    args.serialize(&mut ser)
        .expect("serializing strings to a Vec cannot fail");
    String::from_utf8(out).expect("the formatter writes ASCII")
}

impl Dockerfile {
    pub fn new() -> Self {
        Dockerfile(String::new())
    }

    /// A line of the tool's own text.
    pub fn lit(&mut self, line: &'static str) {
        self.0.push_str(line);
        self.0.push('\n');
    }

    /// A line joined from the tool's own text pieces (constants).
    pub fn lits(&mut self, parts: &[&'static str]) {
        for p in parts {
            self.0.push_str(p);
        }
        self.0.push('\n');
    }

    pub fn blank(&mut self) {
        self.0.push('\n');
    }

    pub fn comment(&mut self, line: Line) {
        self.0.push_str("# ");
        self.0.push_str(&line.0);
        self.0.push('\n');
    }

    pub fn from(&mut self, image: &ImageRef, digest: Option<&Digest>, stage: Option<&'static str>) {
        self.0.push_str("FROM ");
        self.0.push_str(image.as_str());
        if let Some(d) = digest {
            self.0.push('@');
            self.0.push_str(d.as_str());
        }
        if let Some(s) = stage {
            self.0.push_str(" AS ");
            self.0.push_str(s);
        }
        self.0.push('\n');
    }

    /// `ENV` or `LABEL` with `KEY="value"` continuation lines. Keys are env names or the
    /// tool's label keys; both grammars are plain words.
    pub fn key_values(&mut self, instr: &'static str, kv: &[(&str, &str)]) {
        for (i, (k, v)) in kv.iter().enumerate() {
            assert!(
                !k.is_empty()
                    && k.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)),
                "a key passed its grammar"
            );
            if i == 0 {
                self.0.push_str(instr);
                self.0.push(' ');
            } else {
                self.0.push_str(&" ".repeat(instr.len() + 1));
            }
            self.0.push_str(k);
            self.0.push('=');
            self.0.push_str(&double_quoted(v));
            if i + 1 < kv.len() {
                self.0.push_str(" \\");
            }
            self.0.push('\n');
        }
    }

    /// One `RUN` of the tool's commands joined with `&&`, one per line; with a cache mount
    /// when given. Falls back to exec form if a command would not stay on its line.
    pub fn run(&mut self, cache: Option<&AbsPath>, cmds: &[Command]) {
        self.0.push_str("RUN ");
        if let Some(target) = cache {
            self.0.push_str("--mount=type=cache,target=");
            self.0.push_str(target.as_str());
            self.0.push(' ');
        }
        let one_line = cmds
            .iter()
            .all(|c| !c.as_str().contains(breaks_line) && !c.as_str().ends_with('\\'));
        if one_line {
            for (i, c) in cmds.iter().enumerate() {
                if i > 0 {
                    self.0.push_str(" \\\n && ");
                }
                self.0.push_str(c.as_str());
            }
        } else {
            let script: Vec<&str> = cmds.iter().map(|c| c.as_str()).collect();
            let script = script.join(" && ");
            let mut argv: Vec<&str> = vec!["/bin/bash", "-o", "pipefail", "-c"];
            argv.push(&script);
            self.0.push_str(&json_array(&argv));
        }
        self.0.push('\n');
    }

    /// One `RUN` of a recipe's own shell text, in exec form.
    pub fn run_step(&mut self, step: &ShellStep) {
        let mut argv: Vec<&str> = STEP_SHELL.to_vec();
        argv.push(step.as_str());
        self.0.push_str("RUN ");
        self.0.push_str(&json_array(&argv));
        self.0.push('\n');
    }

    /// An instruction in exec (JSON array) form, e.g. `CMD`; each value is one JSON string.
    pub fn exec(&mut self, instr: &'static str, args: &[&str]) {
        self.0.push_str(instr);
        self.0.push(' ');
        self.0.push_str(&json_array(args));
        self.0.push('\n');
    }

    /// An instruction with one number, e.g. `EXPOSE 8188`.
    pub fn number(&mut self, instr: &'static str, n: u64) {
        self.0.push_str(instr);
        self.0.push(' ');
        self.0.push_str(&n.to_string());
        self.0.push('\n');
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_quoting_escapes_dockerfile_specials() {
        assert_eq!(double_quoted("a b"), "\"a b\"");
        assert_eq!(double_quoted("x\"$y\\"), "\"x\\\"\\$y\\\\\"");
        assert!(!double_quoted("a\nb").contains('\n'));
    }

    #[test]
    fn json_array_is_ascii_and_round_trips() {
        let hostile = "a\n\\\"b\u{2028}\u{0}é😀 $(x) `y`";
        let j = json_array(&["/bin/sh", hostile]);
        assert!(j.is_ascii() && !j.contains('\n'), "{j}");
        let back: Vec<String> = serde_json::from_str(&j).unwrap();
        assert_eq!(back, ["/bin/sh", hostile]);
    }

    #[test]
    fn a_step_stays_one_instruction() {
        let mut d = Dockerfile::new();
        d.run_step(&ShellStep::parse("true\nRUN evil \\").unwrap());
        let s = d.into_string();
        assert_eq!(s.lines().count(), 1, "{s}");
        assert!(s.starts_with("RUN [\"/bin/bash\", \"-e\""), "{s}");
    }

    #[test]
    fn a_command_with_a_newline_becomes_exec_form() {
        let mut d = Dockerfile::new();
        d.run(None, &[Command::new("echo ").word("a\nb")]);
        let s = d.into_string();
        assert_eq!(s.lines().count(), 1, "{s}");
    }
}
