//! Property: any unicode value in any string field is either refused with a located error
//! naming that field, or rendered into exactly the instructions the recipe's structure
//! implies, with the value intact where it belongs.

mod dockerfile_parse;

use dockerfile_parse::{key_values, parse, shell_words, Instr};
use proptest::prelude::*;
use rdna1_images::{recipe, render};

fn fixture_ok(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/recipes/fixture-ok.yaml"),
    )
    .unwrap()
    .replace("name: fixture-ok\n", &format!("name: {name}\n"))
}

fn source(name: &str) -> String {
    format!(
        "name: {name}\ndescription: d\nstatus: experimental\nrocm: \"6.2\"\nbase:\n  image: a:b\n  unpinned_reason: test\n\
         gpu:\n  target: gfx1010\n  targets:\n    gfx1010: null\npython:\n  version: \"3.11\"\n  bin: python3\n\
         pytorch:\n  source:\n    version: 2.4.1\n    repository: https://example.invalid/pytorch\n    ref: v2.4.1\n\
         \x20   commit: ee1b6804381c57161c477caa380a840a84167676\n    arch: [gfx1010]\n    torchvision:\n\
         \x20     version: 0.19.1\n      repository: https://example.invalid/vision\n      ref: v0.19.1\n\
         \x20     commit: 61943691d3390bd3148a7003b4a501f0e2b7ac6e\n      env:\n        FORCE_CUDA: \"1\"\n\
         \x20   preflight:\n      - \"true\"\n    ccache:\n      dir: /root/.ccache\n      max_size: 20G\n\
         smoke:\n  case_timeout_s: 60\n  container_timeout_s: 300\n  cases:\n    - name: medium\n      in_channels: 16\n\
         \x20     out_channels: 32\n      size: 48\nsource_date_epoch: 1764028800\n"
    )
}

/// A YAML double-quoted scalar holding exactly `s`.
fn yaml_dq(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

fn label(instrs: &[Instr], key: &str) -> Option<String> {
    instrs
        .iter()
        .filter(|i| i.keyword == "LABEL" || i.keyword == "ENV")
        .flat_map(|i| key_values(&i.rest))
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn runs_with_word(instrs: &[Instr], word: &str) -> bool {
    instrs
        .iter()
        .any(|i| i.keyword == "RUN" && shell_words(i).iter().any(|w| w == word))
}

fn exec_arg(instrs: &[Instr], v: &str) -> bool {
    instrs
        .iter()
        .any(|i| i.exec.as_ref().is_some_and(|a| a.len() == 6 && a[5] == v))
}

type Place = fn(&[Instr], &str) -> bool;

/// (template, line replaced, replacement with `{}` for the value, field path, where it shows)
type Field = (
    fn(&str) -> String,
    &'static str,
    &'static str,
    &'static str,
    Place,
);

fn fields() -> Vec<Field> {
    vec![
        (
            fixture_ok,
            "description: CPU fixture on the local Debian base image",
            "description: {}",
            "description",
            |i, v| label(i, "org.opencontainers.image.description").as_deref() == Some(v),
        ),
        (
            fixture_ok,
            "env:\n",
            "env:\n  MY_VAR: {}\n",
            "env.MY_VAR",
            |i, v| label(i, "MY_VAR").as_deref() == Some(v),
        ),
        (
            fixture_ok,
            "MIOPEN_USER_DB_PATH: /var/cache/miopen/db",
            "MIOPEN_USER_DB_PATH: {}",
            "env.MIOPEN_USER_DB_PATH",
            |i, v| runs_with_word(i, v),
        ),
        (
            fixture_ok,
            "source_date_epoch: 1764028800\n",
            "source_date_epoch: 1764028800\nsteps:\n  - {}\n",
            "steps[0]",
            exec_arg,
        ),
        (
            fixture_ok,
            "image: rdna1-test-base:bookworm",
            "image: {}",
            "base.image",
            |i, v| i.iter().any(|x| x.keyword == "FROM" && x.rest == v),
        ),
        (fixture_ok, "rocm: none", "rocm: {}", "rocm", |i, v| {
            label(i, "io.github.rdna1-images.rocm").as_deref() == Some(v)
        }),
        (
            fixture_ok,
            "version: 1.13.0a0  #",
            "version: {}  #",
            "pytorch.preinstalled.version",
            |i, v| label(i, "io.github.rdna1-images.pytorch").as_deref() == Some(v),
        ),
        (
            fixture_ok,
            "env:\n",
            "system_packages:\n  apt:\n    - {}\n  unpinned_reason: t\nenv:\n",
            "system_packages.apt[0]",
            |i, v| runs_with_word(i, v),
        ),
        (
            fixture_ok,
            "torch: \"1.13.0a0\"",
            "torch: {}",
            "smoke.expect.torch",
            |_, _| true,
        ),
        (
            fixture_ok,
            "unpinned_reason: local test image made by ci/test-base.sh, never pulled",
            "unpinned_reason: {}",
            "base.unpinned_reason",
            |_, _| true,
        ),
        (
            source,
            "repository: https://example.invalid/pytorch",
            "repository: {}",
            "pytorch.source.repository",
            |i, v| runs_with_word(i, v),
        ),
        (
            source,
            "dir: /root/.ccache",
            "dir: {}",
            "pytorch.source.ccache.dir",
            |i, v| {
                i.iter()
                    .any(|x| x.flags.contains(&format!("--mount=type=cache,target={v}")))
            },
        ),
        (
            source,
            "FORCE_CUDA: \"1\"",
            "FORCE_CUDA: {}",
            "pytorch.source.torchvision.env.FORCE_CUDA",
            |i, v| runs_with_word(i, &format!("FORCE_CUDA={v}")),
        ),
        (
            source,
            "- \"true\"",
            "- {}",
            "pytorch.source.preflight[0]",
            exec_arg,
        ),
        (source, "bin: python3", "bin: {}", "python.bin", |i, v| {
            runs_with_word(i, v)
        }),
        (
            source,
            "ref: v2.4.1",
            "ref: {}",
            "pytorch.source.ref",
            |_, _| true,
        ),
    ]
}

fn keywords(df: &str) -> Vec<String> {
    parse(df).into_iter().map(|i| i.keyword).collect()
}

fn hostile_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        3 => prop::sample::select(vec![
            '\n', '\r', '\t', '\0', '\u{2028}', '\u{2029}', '\u{85}', '\u{feff}', '\u{1b}', '"', '\'',
            '\\', '$', '(', ')', '`', '#', ' ', '[', ']', '{', '}', ':', '-', '&', ';', '|', '=', ',',
            '@', '/', '.', '*', '<', '>', '!', '%', '+',
            // Round 2: C1 and DEL, bidi controls, zero-width and other invisible spaces.
            '\u{7f}', '\u{9b}', '\u{a0}', '\u{202a}', '\u{202e}', '\u{2066}', '\u{2069}',
            '\u{200b}', '\u{200d}', '\u{2060}', '\u{3000}', '\u{e0001}',
        ]),
        2 => prop::char::range('a', 'z'),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn any_value_is_refused_where_it_is_or_stays_one_value(
        field in 0usize..16,
        chars in prop::collection::vec(hostile_char(), 0..24),
    ) {
        let v: String = chars.into_iter().collect();
        let (template, find, replace, path, place) = fields()[field];
        let name = "prop";
        let base = template(name);
        assert!(base.contains(find), "{path}: template has `{find}`");
        let benign = if path.contains("MIOPEN") || path.ends_with("ccache.dir") {
            "/var/cache/x"
        } else if path.ends_with("version") {
            "1.0"
        } else if path.ends_with("repository") {
            "https://example.invalid/x"
        } else {
            "xx"
        };
        let benign = base.replacen(find, &replace.replace("{}", benign), 1);
        let baseline = recipe::parse("recipes/prop.yaml", &benign).expect("the template is valid");
        let expected = keywords(&render::dockerfile(&baseline));
        let text = base.replacen(find, &replace.replace("{}", &yaml_dq(&v)), 1);
        match recipe::parse("recipes/prop.yaml", &text) {
            Err(e) => {
                prop_assert!(e.line.is_some(), "{path} {v:?}: unlocated: {e}");
                // An empty reason is refused where the pin it excuses is missing.
                let also = if path == "base.unpinned_reason" { "base.digest" } else { path };
                prop_assert!(e.field == path || e.field == also, "{:?}: {}", v, e);
            }
            Ok(r) => {
                let df = render::dockerfile(&r);
                prop_assert_eq!(keywords(&df), expected.clone(), "{} {:?}:\n{}", path, v, df);
                let instrs = parse(&df);
                prop_assert!(place(&instrs, &v), "{} {:?} not intact:\n{}", path, v, df);
                let _ = expected;
            }
        }
    }
}

/// A path of the characters that matter to the tar header: letters, `.`, `/`.
fn tar_path() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            6 => Just('a'),
            2 => Just('.'),
            2 => Just('/'),
        ],
        1..300,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn pip_name() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(hostile_char(), 0..6),
        prop::collection::vec(
            prop_oneof![
                3 => prop::char::range('a', 'z'),
                1 => prop::sample::select(vec![',', '\t', '\n', ' ', '\u{a0}', '\u{85}', '\u{3000}', '-', '.', '_']),
            ],
            0..8,
        ),
    )
        .prop_map(|(pre, extras)| {
            let pre: String = pre.into_iter().collect();
            let extras: String = extras.into_iter().collect();
            format!("numpy{pre}[{extras}]")
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// The grammars accept exactly what the writers accept: a `files` entry the recipe
    /// takes is one the context's tar writer stores, and one the writer stores (and the
    /// path grammar allows) the recipe takes.
    #[test]
    fn files_grammar_and_tar_writer_agree(p in tar_path()) {
        let text = fixture_ok("prop").replace(
            "source_date_epoch:",
            &format!("files:\n  - {}\nsource_date_epoch:", yaml_dq(&p)),
        );
        let accepted = recipe::parse("recipes/prop.yaml", &text).is_ok();
        let mut files = std::collections::BTreeMap::new();
        files.insert(
            format!("files/{p}"),
            rdna1_images::context::ContextFile { data: vec![], mode: 0o644 },
        );
        let ctx = rdna1_images::context::Context { files, dockerfile: "Dockerfile".into(), epoch: 0 };
        let written = std::panic::catch_unwind(|| ctx.tar()).map(|r| r.is_ok());
        prop_assert!(written.is_ok(), "{p:?}: the writer panicked");
        let grammar = rdna1_images::values::RelPath::parse(&p).is_ok();
        if accepted {
            prop_assert_eq!(written.ok(), Some(true), "{:?} accepted but not written", p);
        } else if grammar {
            prop_assert_eq!(written.ok(), Some(false), "{:?} refused but the writer stores it", p);
        }
    }

    /// A pip name the grammar accepts is one the requirements writer writes (one line, the
    /// name intact); none reaches its assertion.
    #[test]
    fn pip_grammar_and_requirements_writer_agree(n in pip_name()) {
        if let Ok(name) = rdna1_images::values::PipName::parse(&n) {
            let v = rdna1_images::values::Version::parse("1.0").unwrap();
            let line = std::panic::catch_unwind(|| {
                rdna1_images::quote::requirements::line(&name, &v, None, &[])
            });
            prop_assert!(line.is_ok(), "{:?} passed the grammar but the writer panicked", n);
            let line = line.unwrap();
            prop_assert!(line.starts_with(&format!("{n}==1.0")), "{}", line);
            prop_assert_eq!(line.lines().count(), 1);
        }
    }
}
