//! One JSON document per command on stdout: `{"schema": 1, "command": ..., "result": ...}`,
//! and on failure `"error": {"class", "message", "exit_code"}` (schema/output.schema.json).
//!
//! Commands hand their result to [`set_result`]; `app::run` prints the one document when the
//! command is over, so a failure half-way never leaves a partial array and a text error.

use std::sync::Mutex;

use serde::Serialize;
use serde_json::{json, Value};

/// The version of the document's shape; a change that breaks readers bumps it.
pub const SCHEMA: u32 = 1;

static RESULT: Mutex<Option<Value>> = Mutex::new(None);

/// Keeps the command's result for the document (the last one given wins).
pub fn set_result<T: Serialize>(v: &T) -> Result<(), serde_json::Error> {
    let v = serde_json::to_value(v)?;
    *RESULT.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
    Ok(())
}

/// Takes the result kept by [`set_result`].
pub fn take_result() -> Option<Value> {
    RESULT.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// The error classes of the CLI contract, by exit code.
pub fn class(exit_code: i32) -> &'static str {
    match exit_code {
        2 => "bad-input",
        3 => "environment",
        130 => "interrupted",
        _ => "job",
    }
}

/// The document for a command: its result and, when the exit code is not 0, the error.
pub fn document(command: &str, result: Option<Value>, error: Option<(&str, i32)>) -> Value {
    let mut doc = json!({ "schema": SCHEMA, "command": command });
    if let Some(r) = result {
        doc["result"] = r;
    }
    if let Some((message, code)) = error {
        doc["error"] = json!({
            "class": class(code),
            "message": message,
            "exit_code": code,
        });
    }
    doc
}

/// The document for arguments clap refused, when they ask for `--json` (help and version
/// are not errors: None).
pub fn parse_error(args: &[String], e: &clap::Error) -> Option<Value> {
    use clap::CommandFactory;
    if !e.use_stderr() || !args.iter().any(|a| a == "--json") {
        return None;
    }
    let cmd = crate::cli::Cli::command();
    let command = args
        .iter()
        .find(|a| cmd.get_subcommands().any(|c| c.get_name() == a.as_str()))
        .map(String::as_str)
        .unwrap_or("rdna1-images");
    let message = e.kind().as_str().map(String::from).unwrap_or_else(|| {
        e.to_string()
            .lines()
            .next()
            .unwrap_or("bad arguments")
            .trim_start_matches("error: ")
            .to_string()
    });
    let full = e.render().to_string();
    let message = full
        .lines()
        .next()
        .map(|l| l.trim_start_matches("error: ").to_string())
        .filter(|l| !l.is_empty())
        .unwrap_or(message);
    Some(document(command, None, Some((&message, 2))))
}

/// Prints a document as one pretty JSON value on stdout.
pub fn print(doc: &Value) {
    use std::io::Write as _;
    let s = serde_json::to_string_pretty(doc).unwrap_or_else(|_| "{}".into());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", crate::escape::json(&s));
    let _ = out.flush();
}

pub use crate::digest_json::{prefixed, sha256, sha256_opt};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_document_names_its_class_and_code() {
        let d = document("build", None, Some(("no engine", 3)));
        assert_eq!(d["schema"], 1);
        assert_eq!(d["command"], "build");
        assert_eq!(d["error"]["class"], "environment");
        assert_eq!(d["error"]["exit_code"], 3);
        assert!(d.get("result").is_none());
        assert_eq!(class(130), "interrupted");
        assert_eq!(class(2), "bad-input");
        assert_eq!(class(1), "job");
    }

    #[test]
    fn digests_get_their_algorithm_once() {
        assert_eq!(prefixed("ab12"), "sha256:ab12");
        assert_eq!(prefixed("sha256:ab12"), "sha256:ab12");
    }
}
