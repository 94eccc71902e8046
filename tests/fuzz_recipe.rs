//! The `recipe_render` fuzz target (fuzz/) on the stable toolchain: cargo-fuzz needs a
//! nightly compiler, so this harness runs the same check (`src/fuzz_check.rs`,
//! feature `testing`) over inputs mutated from the shipped and fixture recipes, for
//! a bounded time, and prints how many inputs it ran. `cargo test` runs it for
//! RDNA1_FUZZ_SECONDS (default 5); ci/test.sh runs it for 60 s. RDNA1_FUZZ_SEED replays a
//! run; a panic prints the seed and the input.

use std::path::Path;
use std::time::{Duration, Instant};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*: enough for picking mutations; the seed is printed to replay.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Tokens that YAML, the grammars, the quoting and the terminal care about.
const DICT: &[&str] = &[
    "\n",
    "\r\n",
    "\t",
    " ",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\"",
    "'",
    "\\",
    "#",
    "&a ",
    "*a",
    "<<: *a",
    "!!binary ",
    "!!str ",
    "!x ",
    "---\n",
    "...\n",
    "|\n",
    ">\n",
    "\"yes\"",
    "\"1764028800\"",
    "true",
    "null",
    "~",
    "0",
    "-1",
    "1e9",
    ".inf",
    "\u{0}",
    "\u{1b}[31m",
    "\u{7f}",
    "\u{85}",
    "\u{9b}",
    "\u{a0}",
    "\u{200b}",
    "\u{202e}",
    "\u{2066}",
    "\u{2028}",
    "\u{3000}",
    "\u{feff}",
    "..",
    "/",
    "//",
    "../",
    "/etc",
    "/usr/bin",
    "$(id)",
    "`id`",
    ";",
    "&&",
    "|",
    ">",
    "<",
    "=",
    "==",
    "@",
    "%",
    "+",
    "--",
    "-r x",
    "--hash=sha256:",
    "[a,\tb]",
    "torch[a, b]",
    "LD_PRELOAD",
    "PIP_INDEX_URL",
    "BASH_ENV",
    "HSA_OVERRIDE_GFX_VERSION",
    "MIOPEN_USER_DB_PATH",
    "0G",
    "gfx1010",
    "10.3.0",
    "sha256:",
    "https://x.invalid/a",
    "http://127.0.0.1/a",
    "a:b",
    "--platform.linux/arm64:1",
    "-.-:5000/x:1",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let len = input.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 | 2 => {
                let i = rng.below(len + 1);
                let t = DICT[rng.below(DICT.len())].as_bytes();
                input.splice(i..i, t.iter().copied());
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = rng.below(32.min(len - i) + 1);
                input.drain(i..i + n);
            }
            4 if len > 0 => {
                // Repeat a slice: long values, many aliases, deep nesting.
                let i = rng.below(len);
                let n = rng.below(64.min(len - i) + 1);
                let chunk: Vec<u8> = input[i..i + n].to_vec();
                let times = 1 + rng.below(200);
                let at = rng.below(input.len() + 1);
                let rep: Vec<u8> = chunk.iter().copied().cycle().take(n * times).collect();
                input.splice(at..at, rep);
            }
            5 => {
                // A line from another seed at a random line start.
                let other = &seeds[rng.below(seeds.len())];
                let lines: Vec<&[u8]> = other.split(|b| *b == b'\n').collect();
                let line = lines[rng.below(lines.len())];
                let starts: Vec<usize> = std::iter::once(0)
                    .chain(
                        input
                            .iter()
                            .enumerate()
                            .filter(|(_, b)| **b == b'\n')
                            .map(|(i, _)| i + 1),
                    )
                    .collect();
                let at = starts[rng.below(starts.len())];
                let mut l = line.to_vec();
                l.push(b'\n');
                input.splice(at..at, l);
            }
            _ => {
                // Replace a value after `: ` with a token.
                if let Some(i) = input
                    .windows(2)
                    .skip(rng.below(len))
                    .position(|w| w == b": ")
                {
                    let start = i + 2 + (input.len() - input.len());
                    let start = start.min(input.len());
                    let end = input[start..]
                        .iter()
                        .position(|b| *b == b'\n')
                        .map_or(input.len(), |e| start + e);
                    let t = DICT[rng.below(DICT.len())].as_bytes();
                    input.splice(start..end, t.iter().copied());
                }
            }
        }
    }
    input.truncate(1 << 20);
}

fn seeds() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["recipes", "tests/fixtures/recipes"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yaml") {
                out.push(std::fs::read(p).unwrap());
            }
        }
    }
    assert!(!out.is_empty());
    out
}

#[test]
fn recipe_render_target_holds_for_a_bounded_time() {
    let secs: u64 = std::env::var("RDNA1_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let seed: u64 = std::env::var("RDNA1_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    let seeds = seeds();
    let mut rng = Rng(seed);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (mut runs, mut parsed, mut rendered) = (0u64, 0u64, 0u64);
    // The seeds themselves first: each renders.
    for s in &seeds {
        rdna1_images::fuzz_check::check(s);
    }
    while Instant::now() < deadline {
        let mut input = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &seeds, &mut input);
        let ran = std::panic::catch_unwind(|| rdna1_images::fuzz_check::check(&input));
        match ran {
            Ok(stage) => {
                parsed += u64::from(stage >= 1);
                rendered += u64::from(stage == 2);
            }
            Err(_) => {
                let shown = String::from_utf8_lossy(&input);
                panic!(
                    "the recipe_render check failed after {runs} inputs (RDNA1_FUZZ_SEED={seed}) on:\n{shown:?}"
                );
            }
        }
        runs += 1;
    }
    println!(
        "fuzz recipe_render: {runs} inputs in {secs} s (RDNA1_FUZZ_SEED={seed}): {parsed} parsed, {rendered} rendered and written"
    );
    assert!(runs > 0, "no input ran in {secs} s");
}
