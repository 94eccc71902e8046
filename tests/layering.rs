//! The module tree's shape, read from `src/`: dependencies point one way (commands -> ui ->
//! cli -> pipeline -> engine -> core), no two top-level modules import each other (even
//! through others), and no source file is over 700 lines before its unit tests.
//!
//! A module is a top-level file or folder of `src/` (`src/recipe.rs` and `src/recipe/` are
//! one module). An import is any `crate::<module>` path outside the unit tests, including
//! the names in `use crate::{a, b::c}` groups and `serialize_with = "crate::..."` strings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top first. A module may import modules of its own layer or below, never above. Every
/// top-level module must be listed: a new one has to be given its place.
const LAYERS: &[(&str, &[&str])] = &[
    ("commands", &["commands"]),
    ("ui", &["ui"]),
    ("cli", &["cli"]),
    ("pipeline", &["pipeline"]),
    ("engine", &["engine", "signals"]),
    (
        "core",
        &[
            "context",
            "digest_json",
            "doctor",
            "endpoint",
            "error_chain",
            "escape",
            "fuzz_check",
            "hex",
            "host",
            "image_archive",
            "index_client",
            "labels",
            "lock",
            "out_folder",
            "owner",
            "quote",
            "recipe",
            "recipe_choice",
            "recipe_files",
            "registry",
            "render",
            "reproduce",
            "run_plan",
            "simple_index",
            "smoke",
            "state_home",
            "test_skip",
            "values",
            "yaml_paths",
        ],
    ),
];

/// Imports the layers allow but the design does not: the engine takes core types and never
/// needs the Dockerfile renderer; `run` picks recipes with `recipe_choice`, not through `doctor`.
const FORBIDDEN: &[(&str, &str)] = &[("engine", "render"), ("run_plan", "doctor")];

const MAX_LINES: usize = 700;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to; `None` for the crate roots.
fn module_of(root: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(root).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    (!matches!(name.as_str(), "lib" | "main")).then_some(name)
}

/// The lines before the unit tests (`#[cfg(test)]` followed by `mod ...`).
fn before_tests(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    let end = (0..lines.len())
        .find(|&i| {
            lines[i].trim_end() == "#[cfg(test)]"
                && lines.get(i + 1).is_some_and(|n| n.starts_with("mod "))
        })
        .unwrap_or(lines.len());
    lines[..end].to_vec()
}

fn ident_at(s: &str) -> String {
    s.chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

/// The top-level modules named by `crate::` paths in `code`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            // `crate::{a, b::{c, d}, e}`: the names at depth 0.
            let mut depth = 0;
            let mut start = true;
            for (j, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start && depth == 0 => {
                        start = false;
                        let name = ident_at(&group[j..]);
                        if !name.is_empty() && name != "self" {
                            out.insert(name);
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident_at(after);
            if !name.is_empty() {
                out.insert(name);
            }
        }
        rest = after;
    }
    out
}

/// Without `//` comments (doc comments mention modules they do not import).
fn code_of(lines: &[&str]) -> String {
    lines
        .iter()
        .map(|l| match l.trim_start().starts_with("//") {
            true => "",
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

struct Tree {
    /// module -> (module it imports -> a file that does)
    edges: BTreeMap<String, BTreeMap<String, PathBuf>>,
    /// files over the limit, with their line counts before the tests
    long: Vec<(PathBuf, usize)>,
    modules: BTreeSet<String>,
}

fn read_tree(root: &Path) -> Tree {
    let mut files = vec![];
    rust_files(root, &mut files);
    files.sort();
    let mut tree = Tree {
        edges: BTreeMap::new(),
        long: vec![],
        modules: BTreeSet::new(),
    };
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let lines = before_tests(&text);
        if lines.len() > MAX_LINES {
            tree.long.push((f.clone(), lines.len()));
        }
        let Some(m) = module_of(root, f) else {
            continue;
        };
        tree.modules.insert(m.clone());
        for dep in imports(&code_of(&lines)) {
            if dep != m {
                tree.edges
                    .entry(m.clone())
                    .or_default()
                    .entry(dep)
                    .or_insert_with(|| f.clone());
            }
        }
    }
    tree
}

/// One cycle, as a path `a -> b -> ... -> a`, if there is any.
fn find_cycle(edges: &BTreeMap<String, BTreeMap<String, PathBuf>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeMap<String, PathBuf>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(m.to_string(), 1);
        stack.push(m.to_string());
        for dep in edges.get(m).into_iter().flat_map(|d| d.keys()) {
            match state.get(dep.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|s| s == dep).unwrap();
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(dep.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(dep, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in edges.keys() {
        if state.get(m.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(m, edges, &mut state, &mut vec![]) {
                return Some(c);
            }
        }
    }
    None
}

fn layer_of(m: &str) -> Option<(usize, &'static str)> {
    LAYERS
        .iter()
        .enumerate()
        .find(|(_, (_, ms))| ms.contains(&m))
        .map(|(i, (name, _))| (i, *name))
}

#[test]
fn the_import_reader_sees_paths_groups_and_strings() {
    let code = r#"use crate::{engine::{Engine, ImageGuard}, recipe, self};
        #[serde(serialize_with = "crate::digest_json::sha256")]
        let x = crate::host::probe(&root);"#;
    let got: Vec<String> = imports(code).into_iter().collect();
    assert_eq!(got, ["digest_json", "engine", "host", "recipe"]);
    assert!(imports(&code_of(&["// see crate::app"])).is_empty());
    let text = "a\nb\n#[cfg(test)]\nmod tests {\n}\n";
    assert_eq!(before_tests(text), ["a", "b"]);
    let cycle = BTreeMap::from([
        (
            "a".to_string(),
            BTreeMap::from([("b".to_string(), PathBuf::new())]),
        ),
        (
            "b".to_string(),
            BTreeMap::from([("a".to_string(), PathBuf::new())]),
        ),
    ]);
    assert_eq!(find_cycle(&cycle).unwrap(), ["a", "b", "a"]);
}

#[test]
fn every_module_has_a_layer() {
    let tree = read_tree(&src());
    let missing: Vec<&String> = tree
        .modules
        .iter()
        .filter(|m| layer_of(m).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "give these modules a layer in tests/layering.rs: {missing:?}"
    );
    assert!(
        tree.modules.len() > 10,
        "read too few modules: {:?}",
        tree.modules
    );
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let tree = read_tree(&src());
    if let Some(c) = find_cycle(&tree.edges) {
        let files: Vec<String> = c
            .windows(2)
            .map(|w| {
                format!(
                    "{} -> {} ({})",
                    w[0],
                    w[1],
                    tree.edges[&w[0]][&w[1]].display()
                )
            })
            .collect();
        panic!("an import cycle: {}\n{}", c.join(" -> "), files.join("\n"));
    }
}

#[test]
fn no_module_imports_one_above_it() {
    let tree = read_tree(&src());
    let mut upward = vec![];
    for (m, deps) in &tree.edges {
        let Some((from, from_name)) = layer_of(m) else {
            continue;
        };
        for (dep, file) in deps {
            if let Some((to, to_name)) = layer_of(dep) {
                if to < from {
                    upward.push(format!(
                        "{m} ({from_name}) imports {dep} ({to_name}) in {}",
                        file.display()
                    ));
                }
            }
        }
    }
    for (m, dep) in FORBIDDEN {
        if let Some(file) = tree.edges.get(*m).and_then(|d| d.get(*dep)) {
            upward.push(format!("{m} imports {dep} in {}", file.display()));
        }
    }
    assert!(
        upward.is_empty(),
        "imports that run upward:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_source_file_is_over_700_lines_before_its_tests() {
    let tree = read_tree(&src());
    assert!(
        tree.long.is_empty(),
        "split these files (lines before their unit tests): {:?}",
        tree.long
    );
}
