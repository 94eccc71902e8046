//! POSIX shell words, and shell scripts built only from literals and quoted words.

/// Quotes one word as Python's `shlex.quote` does: bare when every character is inert in an
/// argument (so `-e KEY=value` stays readable), else single quotes, inside which only `'`
/// itself needs care.
pub fn word(s: &str) -> String {
    let inert = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./-_".contains(c);
    if !s.is_empty() && s.chars().all(inert) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// One shell command: the tool's own literal text with recipe values as quoted words.
///
/// There is no way to append an unquoted runtime string: literals are `&'static str`, so a
/// recipe value can only enter through [`Command::word`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Command(String);

impl Command {
    pub fn new(lit: &'static str) -> Self {
        Command(lit.to_string())
    }
    /// The tool's own text, appended as is.
    pub fn lit(mut self, lit: &'static str) -> Self {
        self.0.push_str(lit);
        self
    }
    /// A value as one shell word.
    pub fn word(mut self, value: &str) -> Self {
        self.0.push_str(&word(value));
        self
    }
    /// A number, which needs no quoting.
    pub fn num(mut self, n: u64) -> Self {
        self.0.push_str(&n.to_string());
        self
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_survive_a_real_shell_split() {
        for s in [
            "plain",
            "a b",
            "it's",
            "$(touch /x)",
            "a\nb",
            "",
            "`x`",
            "\\",
            "ü\u{2028}",
        ] {
            let q = word(s);
            assert_eq!(shlex::split(&q).unwrap(), vec![s.to_string()], "{q}");
        }
        assert_eq!(word("/var/cache/miopen"), "/var/cache/miopen");
    }

    #[test]
    fn commands_quote_every_value() {
        let c = Command::new("mkdir -p ")
            .word("/x; touch /pwned #")
            .lit(" && true");
        assert_eq!(c.as_str(), "mkdir -p '/x; touch /pwned #' && true");
    }
}
