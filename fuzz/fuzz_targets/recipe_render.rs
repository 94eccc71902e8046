//! Any bytes as a recipe: parsing never panics, and whatever parses renders into a
//! Dockerfile whose every line is a comment, blank, an instruction, or a continuation of
//! one, with each exec-form RUN a valid JSON array.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rdna1_images::{recipe, render};

const KEYWORDS: &[&str] = &["FROM", "SHELL", "ARG", "ENV", "RUN", "COPY", "WORKDIR", "LABEL"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The name must match the file name: take it from the input so the corpus renders.
    let Ok(first) = recipe::parse_unvalidated("recipes/fuzz.yaml", text) else {
        return;
    };
    let Ok(r) = recipe::parse(&format!("recipes/{}.yaml", first.name), text) else {
        return;
    };
    let df = render::dockerfile(&r);
    let mut continued = false;
    for line in df.lines() {
        let t = line.trim_start();
        if !continued && !t.is_empty() && !t.starts_with('#') {
            let kw = t.split_whitespace().next().unwrap_or_default();
            assert!(KEYWORDS.contains(&kw), "unexpected instruction line: {line:?}");
            if kw == "RUN" {
                if let Some(i) = t.find("[\"") {
                    let argv: Vec<String> =
                        serde_json::from_str(&t[i..]).expect("exec form is a JSON array");
                    assert!(!argv.is_empty());
                }
            }
        }
        assert!(!line.contains(['\r', '\u{2028}', '\u{2029}', '\u{85}']), "{line:?}");
        continued = line.trim_end().ends_with('\\');
    }
    render::requirements(match &r.pytorch {
        recipe::PyTorch::Wheels(w) => &w.packages,
        _ => &[],
    })
    .lines()
    .for_each(|l| assert!(!l.trim_start().starts_with("-") || l.trim_start().starts_with("--hash=sha256:"), "{l:?}"));
});
