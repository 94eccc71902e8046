//! One pass over a recipe's YAML events before it is deserialized: what the recipe may use
//! of YAML, and how large aliases may make it.
//!
//! - **Aliases are bounded by the bytes they make**, not by their count: one 64 KiB anchor
//!   and 900 aliases of it are 75 KB of text and a 59 MB Dockerfile. Every node counts its
//!   scalar bytes plus one, an alias counts what its anchor counted, and the whole document
//!   may count at most [`MAX_EXPANDED_BYTES`] (twice the largest recipe, which a recipe
//!   without aliases cannot reach).
//! - **No tags and no merge keys**: `!!binary`, `!!str`, `!custom` and `<<: *base` only hide
//!   from a reviewer what the recipe says; a recipe is plain YAML 1.2.
//! - **YAML 1.2 core types**: a quoted `"1764028800"` or `"true"` is a string. The places of
//!   quoted scalars that look like numbers or booleans are kept, and [`quoted_typed`] refuses
//!   any that the recipe's types read as a number or boolean.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

use super::*;

/// Most bytes a recipe may expand to through aliases (see the module comment).
pub const MAX_EXPANDED_BYTES: u64 = 2 * crate::recipe_files::MAX_RECIPE_BYTES;

enum Frame {
    Map { key_next: bool, key: String },
    Seq { next: usize },
}

struct Open {
    frame: Frame,
    anchor: usize,
    start: u64,
    pushed: bool,
}

/// A quoted scalar that looks like a YAML 1.2 number or boolean: its path and place.
pub(super) type Quoted = Vec<(Vec<String>, (usize, usize))>;

fn looks_typed(s: &str) -> bool {
    let b = s.trim_start_matches(['-', '+']);
    matches!(s, "true" | "True" | "TRUE" | "false" | "False" | "FALSE")
        || (!b.is_empty() && b.bytes().all(|c| c.is_ascii_digit()))
        || s.parse::<f64>().is_ok_and(|f| f.is_finite()) && s.bytes().any(|c| c.is_ascii_digit())
}

/// Checks tags, merge keys and the expanded size; returns the quoted typed-looking scalars.
pub(super) fn guard(file: &str, text: &str) -> Result<Quoted, RecipeError> {
    let mut stack: Vec<Open> = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut anchors: HashMap<usize, u64> = HashMap::new();
    let mut expanded: u64 = 0;
    let mut quoted = Vec::new();
    for item in Parser::new_from_str(text) {
        // Syntax errors are the deserializer's to report, with its message.
        let Ok((event, span)) = item else { break };
        let (line, col) = (span.start.line(), span.start.col() + 1);
        let (tagged, anchor, size, scalar, container) = match &event {
            Event::Scalar(v, style, anchor, tag) => (
                tag.is_some(),
                *anchor,
                v.len() as u64 + 1,
                Some((v.to_string(), *style)),
                None,
            ),
            Event::SequenceStart(_, anchor, tag) => (tag.is_some(), *anchor, 1, None, Some(false)),
            Event::MappingStart(_, anchor, tag) => (tag.is_some(), *anchor, 1, None, Some(true)),
            Event::Alias(id) => (false, 0, anchors.get(id).copied().unwrap_or(1), None, None),
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(done) = stack.pop() {
                    if done.anchor != 0 {
                        anchors.insert(done.anchor, expanded - done.start);
                    }
                    if done.pushed {
                        path.pop();
                    }
                }
                continue;
            }
            _ => continue,
        };
        // Where this node sits: a key, a value of `key`, or item `i`.
        let mut seg = None;
        let mut is_key = false;
        if let Some(top) = stack.last_mut() {
            match &mut top.frame {
                Frame::Map { key_next, key } => {
                    if *key_next {
                        is_key = true;
                        *key = scalar.as_ref().map(|s| s.0.clone()).unwrap_or_default();
                    } else {
                        seg = Some(key.clone());
                    }
                    *key_next = !*key_next;
                }
                Frame::Seq { next } => {
                    seg = Some(next.to_string());
                    *next += 1;
                }
            }
        }
        let here = || {
            let mut p: Vec<&str> = path.iter().map(|s| s.as_str()).collect();
            if let Some(s) = &seg {
                p.push(s);
            }
            p.iter().map(|s| s.to_string()).collect::<Vec<String>>()
        };
        let at = |msg: String| {
            let p = here();
            let refs: Vec<&str> = p.iter().map(|s| s.as_str()).collect();
            RecipeError::located(file, Some((line, col)), &refs, msg)
        };
        if tagged {
            return Err(at("YAML tags (`!!binary`, `!!str`, `!name`) are not allowed in a recipe: write the plain value".into()));
        }
        expanded += size;
        if expanded > MAX_EXPANDED_BYTES {
            return Err(at(
                format!(
                    "aliases expand the recipe to more than {} MiB: write the values out, or use fewer aliases of large anchors",
                    MAX_EXPANDED_BYTES >> 20
                ),
            ));
        }
        if let Some((v, style)) = &scalar {
            if is_key && *style == ScalarStyle::Plain && v == "<<" {
                return Err(at("merge keys (`<<`) are not allowed in a recipe: write every field where it belongs".into()));
            }
            if !is_key
                && matches!(style, ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted)
                && looks_typed(v)
            {
                quoted.push((here(), (line, col)));
            }
            if anchor != 0 {
                anchors.insert(anchor, size);
            }
        }
        if let Some(is_map) = container {
            let pushed = seg.is_some();
            if let Some(s) = seg {
                path.push(s);
            }
            stack.push(Open {
                frame: if is_map {
                    Frame::Map {
                        key_next: true,
                        key: String::new(),
                    }
                } else {
                    Frame::Seq { next: 0 }
                },
                anchor,
                start: expanded - 1,
                pushed,
            });
        }
    }
    Ok(quoted)
}

/// Refuses a quoted scalar that the recipe read as a number or boolean (YAML 1.2: a quoted
/// scalar is a string).
pub(super) fn quoted_typed(
    file: &str,
    r: &impl serde::Serialize,
    quoted: &Quoted,
) -> Result<(), RecipeError> {
    if quoted.is_empty() {
        return Ok(());
    }
    let Ok(doc) = serde_json::to_value(r) else {
        return Ok(());
    };
    for (p, loc) in quoted {
        let found = p.iter().try_fold(&doc, |v, seg| match v {
            serde_json::Value::Object(m) => m.get(seg),
            serde_json::Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        });
        let Some(v) = found else { continue };
        if v.is_number() || v.is_boolean() {
            let refs: Vec<&str> = p.iter().map(|s| s.as_str()).collect();
            return Err(RecipeError::located(
                file,
                Some(*loc),
                &refs,
                format!(
                    "is quoted, and a quoted value is text in YAML 1.2: write {v} without quotes"
                ),
            ));
        }
    }
    Ok(())
}
