//! The check of the `recipe_render` fuzz target (fuzz/), shared with the stable-toolchain
//! harness (`tests/fuzz_recipe.rs`, run by ci/test.sh for a bounded time); both reach it
//! through the library's `testing` feature: any bytes as a recipe,
//! parsing never panics, and whatever parses renders into a Dockerfile whose every line is
//! a comment, blank, an instruction, or a continuation of one, with each exec-form RUN a
//! valid JSON array; its build context (requirements files, tar) is written without a
//! panic too.

use crate::{context, recipe, render};

const KEYWORDS: &[&str] = &[
    "FROM", "SHELL", "ARG", "ENV", "RUN", "COPY", "WORKDIR", "LABEL",
];

/// Returns how far the input got: 0 refused before parsing, 1 parsed but not valid, 2
/// rendered and written.
pub fn check(data: &[u8]) -> u8 {
    let Ok(text) = std::str::from_utf8(data) else {
        return 0;
    };
    // The name must match the file name: take it from the input so the corpus renders.
    let Ok(first) = recipe::parse_unvalidated("recipes/fuzz.yaml", text) else {
        return 0;
    };
    let Ok(r) = recipe::parse(&format!("recipes/{}.yaml", first.name), text) else {
        return 1;
    };
    let df = render::dockerfile(&r);
    let mut continued = false;
    for line in df.lines() {
        let t = line.trim_start();
        if !continued && !t.is_empty() && !t.starts_with('#') {
            let kw = t.split_whitespace().next().unwrap_or_default();
            assert!(
                KEYWORDS.contains(&kw),
                "unexpected instruction line: {line:?}"
            );
            if kw == "RUN" {
                if let Some(i) = t.find("[\"") {
                    let argv: Vec<String> =
                        serde_json::from_str(&t[i..]).expect("exec form is a JSON array");
                    assert!(!argv.is_empty());
                }
            }
        }
        assert!(
            !line.contains(['\r', '\u{2028}', '\u{2029}', '\u{85}']),
            "{line:?}"
        );
        continued = line.trim_end().ends_with('\\');
    }
    let packages: &[recipe::Wheel] = match &r.pytorch {
        recipe::PyTorch::Wheels(w) => &w.packages,
        recipe::PyTorch::Source(s) => &s.requirements,
        _ => &[],
    };
    render::requirements(packages).lines().for_each(|l| {
        assert!(
            !l.trim_start().starts_with("-") || l.trim_start().starts_with("--hash=sha256:"),
            "{l:?}"
        )
    });
    // The context with every file the recipe names as an empty file: the tar writer must
    // store every path the recipe's grammar accepted.
    let mut files = std::collections::BTreeMap::new();
    for f in &r.files {
        files.insert(
            format!("files/{f}"),
            context::ContextFile {
                data: vec![],
                mode: 0o644,
            },
        );
    }
    let ctx = context::Context {
        files,
        dockerfile: "Dockerfile".into(),
        epoch: r.source_date_epoch,
    };
    assert!(
        ctx.tar().is_ok(),
        "a path the recipe accepted is not stored"
    );
    2
}
