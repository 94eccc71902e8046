//! The conformance suite: the cases `program.py` knows beyond the seed's Conv2d ones (its
//! `SUITE`), and what a recipe expects of each (`smoke.conformance`).
//!
//! Each case is an operation that public reports name as breaking on RDNA1 (DOMAIN.md 7b). A
//! recipe lists the cases to run; `required` ones gate the tag, the others are informational:
//! their verdict is shown and compared with what the recipe expects, so that a card that runs
//! them tells the recipe when a known failure is gone or a new one appeared.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One case of the suite, as `program.py --list` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuiteCase {
    pub name: &'static str,
    /// What it runs.
    pub what: &'static str,
    /// The public report of it breaking on RDNA1.
    pub source: &'static str,
}

/// The suite, in the order the program runs it (after the Conv2d cases). A unit test keeps
/// it equal to `program.py`'s `SUITE`.
pub const SUITE: &[SuiteCase] = &[
    SuiteCase {
        name: "layernorm_fp16",
        what: "LayerNorm(4, eps=1e-5) in fp16 on (64, 4)",
        source: "vladmandic/sdnext #900 (its fp16 check); AUTOMATIC1111 #4634; ROCm #1857",
    },
    SuiteCase {
        name: "conv2d_fp16",
        what: "Conv2d 16->32, 1x16x48x48, k3, in fp16",
        source: "AUTOMATIC1111 #4634 (gray/black images, --no-half); ROCm #1857",
    },
    SuiteCase {
        name: "conv1d_fp16",
        what: "fp16 conv1d k=1 and k=7 dilation 3, conv_transpose1d k=4 stride 2, on 1x16x64",
        source: "Comfy-Org/ComfyUI PR #15615 (MIOpen segfault on RDNA1/2)",
    },
    SuiteCase {
        name: "batchnorm_backward",
        what: "BatchNorm2d(8) forward and backward, fp32, (2, 8, 16, 16), training mode",
        source: "jc1122/pytorch-gfx1010 README; lamikr/rocm_sdk_builder #98 (DPP row_bcast)",
    },
    SuiteCase {
        name: "index_ops",
        what: "nonzero, masked_select, boolean indexing, unique, printing a device tensor",
        source: "jc1122/pytorch-gfx1010 commits 1f6421b, 9e661ae (rocPRIM without gfx1010 code)",
    },
    SuiteCase {
        name: "rnn",
        what: "LSTM(8, 16) and GRU(8, 16), fp32, sequence 5 x batch 2",
        source: "jc1122/pytorch-gfx1010 commit 2581b26 (MIOpen RNN compile path)",
    },
    SuiteCase {
        name: "matmul_fp32",
        what: "matmul 128x256 @ 256x64, fp32 (TF32 off)",
        source: "pytorch #132570 (invalid device function); TheRock #1062 (no hipBLASLt)",
    },
    SuiteCase {
        name: "matmul_fp16",
        what: "matmul 128x256 @ 256x64, fp16",
        source: "pytorch #132570; TheRock #1062",
    },
    SuiteCase {
        name: "matmul_bf16",
        what: "matmul 128x256 @ 256x64, bf16",
        source: "pytorch #132570; TheRock #1062; ComfyUI treats gfx101x as without bf16",
    },
    SuiteCase {
        name: "sdpa",
        what: "scaled_dot_product_attention, (1, 2, 16, 32) fp16 (fp32 at level cpu)",
        source: "TheRock commit 730319d; build_prod_wheels.py AOTriton arch list (math backend only)",
    },
    SuiteCase {
        name: "compile",
        what: "torch.compile of an elementwise + reduction function on (64, 32) fp32 (inductor/Triton at level gpu, aot_eager at level cpu); zeros are wrong",
        source: "unslothai/unsloth #11614 (zeros under AMD buffer ops; AMDGCN_USE_BUFFER_OPS=0)",
    },
    SuiteCase {
        name: "int_mm",
        what: "torch._int_mm, int8 32x64 @ 64x32 -> int32, exact",
        source: "comfy-kitchen rdna1 report; warpfront/hipfire #301 (no v_dot4_i32_i8 on gfx1010)",
    },
    SuiteCase {
        name: "randn_to_print",
        what: "torch.randn(2, 2).to(0), then print it",
        source: "pytorch #106728 (segfault with the override on torch >= 2.0)",
    },
    SuiteCase {
        name: "sustained",
        what: "conv2d + matmul in a loop for a few seconds, results checked",
        source: "lamikr/rocm_sdk_builder #98; Efenstor/PyTorch-ROCm-gfx1010 README (hangs under load)",
    },
    SuiteCase {
        name: "train_fp32",
        what: "4 SGD steps of a small conv net with BatchNorm, fp32; losses against the CPU run",
        source: "the workload itself (Stable Diffusion, ComfyUI training)",
    },
    SuiteCase {
        name: "train_fp16_autocast",
        what: "the same 4 steps under fp16 autocast; losses against the fp32 CPU run",
        source: "the workload itself; AUTOMATIC1111 #4634 (fp16 on RDNA1)",
    },
    SuiteCase {
        name: "memory",
        what: "allocate and free 80% of the free device memory, twice, under the image's allocator setting (64 MiB at level cpu)",
        source: "8 GB cards running out mid-job; PYTORCH_HIP_ALLOC_CONF (DOMAIN.md section 4)",
    },
];

/// The suite case called `name`.
pub fn suite_case(name: &str) -> Option<&'static SuiteCase> {
    SUITE.iter().find(|c| c.name == name)
}

/// What a recipe expects of a suite case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// Must pass: gates the tag.
    Required,
    /// Expected to pass, but informational.
    Pass,
    /// A clean "not available" is expected (e.g. `_int_mm` without hipBLASLt on gfx101X).
    Unsupported,
    /// A known failure, with the public source that reports it: `verdict` is `wrong` (a
    /// wrong result), `error`, `crash` or `hang`.
    Fails {
        verdict: &'static str,
        source: String,
    },
}

/// The failing verdicts a recipe may expect, with a source.
pub const KNOWN_FAILURES: &[&str] = &["wrong", "error", "crash", "hang"];

impl Expectation {
    /// Whether the case's verdict decides the tag.
    pub fn gates(&self) -> bool {
        matches!(self, Expectation::Required)
    }

    /// The verdict the recipe expects: `pass`, `unsupported` or `wrong`.
    pub fn verdict(&self) -> &'static str {
        match self {
            Expectation::Required | Expectation::Pass => "pass",
            Expectation::Unsupported => "unsupported",
            Expectation::Fails { verdict, .. } => verdict,
        }
    }

    /// The public source of a known failure.
    pub fn source(&self) -> Option<&str> {
        match self {
            Expectation::Fails { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expectation::Required => f.write_str("required"),
            Expectation::Pass => f.write_str("pass"),
            Expectation::Unsupported => f.write_str("unsupported"),
            Expectation::Fails { verdict, source } => write!(f, "{verdict} ({source})"),
        }
    }
}

const WORDS: &str =
    "`required`, `pass`, `unsupported`, or `{wrong|error|crash|hang: <public source>}`";

/// A word (`required`, `pass`, `unsupported`) or a map `{wrong: <source>}`; the same shape in
/// YAML and in the JSON the program reads.
impl Serialize for Expectation {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Expectation::Fails { verdict, source } => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(verdict, source)?;
                m.end()
            }
            other => s.serialize_str(other.verdict_word()),
        }
    }
}

impl Expectation {
    fn verdict_word(&self) -> &'static str {
        match self {
            Expectation::Required => "required",
            Expectation::Pass => "pass",
            Expectation::Unsupported => "unsupported",
            Expectation::Fails { verdict, .. } => verdict,
        }
    }
}

impl<'de> Deserialize<'de> for Expectation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Expectation;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "{WORDS}")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Expectation, E> {
                match v {
                    "required" => Ok(Expectation::Required),
                    "pass" => Ok(Expectation::Pass),
                    "unsupported" => Ok(Expectation::Unsupported),
                    w if KNOWN_FAILURES.contains(&w) => Err(E::custom(format!(
                        "`{w}` needs the public source that reports it: `{{{w}: <URL or \
                         owner/repo #N>}}`"
                    ))),
                    other => Err(E::custom(format!(
                        "unknown expectation `{}`: use {WORDS}",
                        other.escape_debug()
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Expectation, A::Error> {
                let mut found = None;
                while let Some(key) = m.next_key::<String>()? {
                    let known = KNOWN_FAILURES.iter().find(|w| **w == key);
                    let Some(verdict) = known.filter(|_| found.is_none()) else {
                        return Err(de::Error::custom(format!(
                            "unknown key `{}`: use {WORDS}",
                            key.escape_debug()
                        )));
                    };
                    found = Some(Expectation::Fails {
                        verdict,
                        source: m.next_value::<String>()?,
                    });
                }
                found.ok_or_else(|| de::Error::custom(format!("empty map: use {WORDS}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// Checks a recipe's `conformance` entry: the case exists and a `wrong` names a source.
pub fn validate_entry(name: &str, e: &Expectation) -> Result<(), String> {
    if suite_case(name).is_none() {
        let known: Vec<&str> = SUITE.iter().map(|c| c.name).collect();
        return Err(format!(
            "unknown conformance case `{}`: the suite has {}",
            name.escape_debug(),
            known.join(", ")
        ));
    }
    if let Expectation::Fails { source, .. } = e {
        let s = source.trim();
        if s.is_empty() || s.len() > 300 || s.chars().any(char::is_control) {
            return Err(format!(
                "`{}` needs the public source that reports it (a URL or `owner/repo #N`, one \
                 line, at most 300 characters)",
                e.verdict()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suite_matches_the_program() {
        let program = super::super::PROGRAM;
        let start = program.find("SUITE = {").unwrap();
        let end = program[start..].find("\n}\n").unwrap() + start;
        let block = &program[start..end];
        let names: Vec<&str> = block
            .lines()
            .filter_map(|l| l.strip_prefix("    \"")?.strip_suffix("\": ("))
            .collect();
        let ours: Vec<&str> = SUITE.iter().map(|c| c.name).collect();
        assert_eq!(names, ours);
        for c in SUITE {
            assert!(block.contains(&format!("\"{}\"", c.source)), "{}", c.name);
        }
        // Every case has a function in the program.
        for c in SUITE {
            assert!(
                program.contains(&format!("    \"{0}\": case_{0},\n", c.name)),
                "{}",
                c.name
            );
        }
    }

    #[test]
    fn expectations_read_words_and_a_wrong_with_its_source() {
        let e: Expectation = serde_json::from_str("\"required\"").unwrap();
        assert_eq!(e, Expectation::Required);
        assert!(e.gates());
        let e: Expectation = serde_json::from_str("{\"wrong\": \"ROCm #1857\"}").unwrap();
        assert_eq!(e.source(), Some("ROCm #1857"));
        assert_eq!(e.verdict(), "wrong");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            "{\"wrong\":\"ROCm #1857\"}"
        );
        assert_eq!(
            serde_json::to_string(&Expectation::Unsupported).unwrap(),
            "\"unsupported\""
        );
        let err = serde_json::from_str::<Expectation>("\"fine\"").unwrap_err();
        assert!(
            err.to_string().starts_with("unknown expectation `fine`"),
            "{err}"
        );
        let err = serde_json::from_str::<Expectation>("\"wrong\"").unwrap_err();
        assert!(err.to_string().contains("needs the public source"), "{err}");
        let e: Expectation = serde_json::from_str("{\"crash\": \"ComfyUI PR #15615\"}").unwrap();
        assert_eq!(e.verdict(), "crash");
        let err = serde_json::from_str::<Expectation>("{\"right\": \"x\"}").unwrap_err();
        assert!(err.to_string().starts_with("unknown key `right`"), "{err}");
    }

    #[test]
    fn entries_name_known_cases_and_sources() {
        assert!(validate_entry("sdpa", &Expectation::Pass).is_ok());
        let e = validate_entry("flash_attn", &Expectation::Pass).unwrap_err();
        assert!(
            e.starts_with("unknown conformance case `flash_attn`: the suite has layernorm_fp16, "),
            "{e}"
        );
        let w = Expectation::Fails {
            verdict: "wrong",
            source: " ".into(),
        };
        assert!(validate_entry("sdpa", &w)
            .unwrap_err()
            .contains("public source"));
        let w = Expectation::Fails {
            verdict: "crash",
            source: "a\nb".into(),
        };
        assert!(validate_entry("sdpa", &w).is_err());
    }
}
