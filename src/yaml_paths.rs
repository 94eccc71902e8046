//! Where each field of a YAML document is: one pass over the parser's events builds an index
//! from field paths (`["pytorch", "source", "patches", "0"]`) to line and column.
//!
//! Validation errors and `check --strict` findings name the place of a value that parsed
//! fine; with the index each lookup is a hash probe, so reporting every finding of a large
//! recipe stays linear in its size. Works for block and flow style alike.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser};

/// Field path -> (line, column), both 1-based, of the key (mappings) or item (sequences).
#[derive(Debug, Default, Clone)]
pub struct PathIndex {
    places: HashMap<String, (usize, usize)>,
}

enum Role {
    Root,
    Key,
    Value,
    Item,
}

enum Frame {
    Map {
        key: Option<String>,
        role: Role,
        pushed: bool,
    },
    Seq {
        next: usize,
        role: Role,
        pushed: bool,
    },
}

fn joined(segs: &[String], last: &str) -> String {
    let mut s = String::new();
    for p in segs {
        s.push_str(p);
        s.push('\0');
    }
    s.push_str(last);
    s
}

impl PathIndex {
    /// Indexes `text`; on a syntax error it keeps what it read up to there.
    pub fn build(text: &str) -> PathIndex {
        let mut places = HashMap::new();
        let mut frames: Vec<Frame> = Vec::new();
        let mut segs: Vec<String> = Vec::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let at = (span.start.line(), span.start.col() + 1);
            let (container, scalar): (Option<bool>, Option<String>) = match event {
                Event::Scalar(v, ..) => (None, Some(v.into_owned())),
                Event::Alias(_) => (None, Some(String::new())),
                Event::MappingStart(..) => (Some(true), None),
                Event::SequenceStart(..) => (Some(false), None),
                Event::MappingEnd | Event::SequenceEnd => {
                    let Some(done) = frames.pop() else { continue };
                    let (role, pushed) = match done {
                        Frame::Map { role, pushed, .. } | Frame::Seq { role, pushed, .. } => {
                            (role, pushed)
                        }
                    };
                    if pushed {
                        segs.pop();
                    }
                    match (frames.last_mut(), role) {
                        (Some(Frame::Map { key, .. }), Role::Key) => *key = Some(String::new()),
                        (Some(Frame::Map { key, .. }), Role::Value) => *key = None,
                        (Some(Frame::Seq { next, .. }), Role::Item) => *next += 1,
                        _ => {}
                    }
                    continue;
                }
                _ => continue,
            };
            // Where this node sits in its parent, and the path segment it opens.
            let (role, seg) = match frames.last_mut() {
                None => (Role::Root, None),
                Some(Frame::Map { key: None, .. }) => {
                    let k = scalar.clone().unwrap_or_default();
                    places.entry(joined(&segs, &k)).or_insert(at);
                    if container.is_none() {
                        if let Some(Frame::Map { key, .. }) = frames.last_mut() {
                            *key = Some(k);
                        }
                        continue;
                    }
                    (Role::Key, None)
                }
                Some(Frame::Map { key: Some(k), .. }) => {
                    let k = k.clone();
                    if container.is_none() {
                        if let Some(Frame::Map { key, .. }) = frames.last_mut() {
                            *key = None;
                        }
                        continue;
                    }
                    (Role::Value, Some(k))
                }
                Some(Frame::Seq { next, .. }) => {
                    let i = next.to_string();
                    places.entry(joined(&segs, &i)).or_insert(at);
                    if container.is_none() {
                        *next += 1;
                        continue;
                    }
                    (Role::Item, Some(i))
                }
            };
            let pushed = seg.is_some();
            if let Some(s) = seg {
                segs.push(s);
            }
            frames.push(match container {
                Some(true) => Frame::Map {
                    key: None,
                    role,
                    pushed,
                },
                _ => Frame::Seq {
                    next: 0,
                    role,
                    pushed,
                },
            });
        }
        PathIndex { places }
    }

    /// The place of `path`, or of its deepest part that exists (where a missing field has
    /// to be added).
    pub fn locate(&self, path: &[&str]) -> Option<(usize, usize)> {
        (1..=path.len()).rev().find_map(|n| {
            let (last, init) = path[..n].split_last()?;
            let init: Vec<String> = init.iter().map(|s| s.to_string()).collect();
            self.places.get(&joined(&init, last)).copied()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_style_is_indexed_too() {
        let idx = PathIndex::build("a: {b: [x, {c: 1}]}\n");
        assert_eq!(idx.locate(&["a", "b", "1", "c"]), Some((1, 13)));
        assert_eq!(idx.locate(&["a", "b", "0"]), Some((1, 9)));
    }
}
