//! The YAML recipe: one file per stack, parsed strictly and validated before anything runs.
//!
//! Every error names the file, the line and column, and the field, and says what is allowed:
//! a user who mistypes a key in a recipe for a two-hour build should learn it in a second.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::smoke::SmokeSpec;
use crate::values::{
    AbsPath, AptPackage, ByteSize, CommitId, Digest, EnvName, Executable, GfxTarget, GfxVersion,
    GitRef, GitUrl, HttpsUrl, ImageRef, NonEmptyText, PipName, PythonVersion, RecipeName, RelPath,
    ReleaseName, Sha256, ShellStep, Text, Version,
};
use crate::yaml_paths::PathIndex;

pub mod app;
mod catalog;
mod guards;
mod parse;
mod validate;
mod yaml_guard;

pub use app::{AppRecipe, LoadedApp};
pub use catalog::*;
pub use parse::*;
pub use validate::*;

/// The recipes shipped with the tool, so `rdna1-images build rocm52` works from any folder.
pub const EMBEDDED: &[(&str, &str)] = &[
    ("rocm52", include_str!("../recipes/rocm52.yaml")),
    ("rocm62", include_str!("../recipes/rocm62.yaml")),
    ("therock", include_str!("../recipes/therock.yaml")),
];

/// Files that embedded recipes refer to (`files:` and `source.patches`), keyed by their path
/// relative to the recipes folder.
pub const EMBEDDED_FILES: &[(&str, &[u8])] = &[(
    "patches/pytorch-2.4.1-aotriton-guard.patch",
    include_bytes!("../recipes/patches/pytorch-2.4.1-aotriton-guard.patch"),
)];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Recommended,
    Advanced,
    Experimental,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Recommended => "recommended",
            Status::Advanced => "advanced",
            Status::Experimental => "experimental",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Plain name; must equal the file stem.
    pub name: RecipeName,
    pub description: NonEmptyText,
    pub status: Status,
    /// ROCm release the stack is built on ("5.2", "6.2"); "none" for CPU fixtures.
    pub rocm: ReleaseName,
    pub base: Base,
    pub gpu: Gpu,
    pub python: Python,
    #[serde(default)]
    pub system_packages: SystemPackages,
    /// Environment baked into the image (`ENV`), in this order.
    #[serde(default)]
    pub env: BTreeMap<EnvName, Text>,
    /// Exactly one of `wheels:`, `source:` or `preinstalled:`.
    pub pytorch: PyTorch,
    /// Extra files from the recipes folder copied into the build context, relative paths.
    #[serde(default)]
    pub files: Vec<RelPath>,
    /// Extra shell steps run after PyTorch is installed (one `RUN` each).
    #[serde(default)]
    pub steps: Vec<ShellStep>,
    pub smoke: SmokeSpec,
    /// Seconds since the epoch used for every timestamp the build writes (labels, history,
    /// file mtimes where the engine allows it).
    pub source_date_epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Base {
    /// Image reference with a tag, e.g. `ubuntu:jammy-20260901.2`.
    pub image: ImageRef,
    /// Content digest `sha256:<64 hex>`; the image is pulled by it.
    #[serde(default)]
    pub digest: Option<Digest>,
    /// Why the base is not pinned (required when `digest` is absent).
    #[serde(default)]
    pub unpinned_reason: Option<Text>,
    /// Why the digest could not be confirmed against the registry, shown by `check` (like
    /// `Wheel::unconfirmed`); `lock` clears it when it resolves the digest itself.
    #[serde(default)]
    pub unconfirmed: Option<Text>,
    /// The base's glibc, `major.minor` (`ldd --version`): the lock chooses only wheels whose
    /// manylinux floor pip accepts on it. Needed by recipes whose wheels are locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glibc: Option<Version>,
}

impl Base {
    /// The reference the Dockerfile's `FROM` uses: `image@digest` when pinned.
    pub fn reference(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}@{}", self.image, d),
            None => self.image.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    /// The gfx target the image is built and labelled for.
    pub target: GfxTarget,
    /// Per supported gfx target: the `HSA_OVERRIDE_GFX_VERSION` it needs, or null for native.
    pub targets: BTreeMap<GfxTarget, Option<GfxVersion>>,
}

impl Gpu {
    /// The override baked into the image: the one the primary target needs.
    pub fn hsa_override(&self) -> Option<&str> {
        self.targets
            .get(&self.target)
            .and_then(|o| o.as_ref().map(|v| v.as_str()))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Python {
    /// Major.minor, e.g. "3.10".
    pub version: PythonVersion,
    /// The interpreter inside the image.
    #[serde(default = "default_python_bin")]
    pub bin: Executable,
    /// The distribution marks its Python as externally managed (PEP 668: Debian 12 and
    /// later, Ubuntu 23.04 and later), so pip refuses to install into it unless told to.
    /// In an image nothing else manages those packages: pip runs with
    /// `--break-system-packages`, which on Debian installs under /usr/local, apart from apt's.
    #[serde(default, skip_serializing_if = "is_false")]
    pub externally_managed: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn default_python_bin() -> Executable {
    Executable::parse("python3").expect("python3 is a command name")
}

/// apt packages of the final image. For `source:` recipes that is the runtime stage; the
/// builder stage has its own list in `pytorch.source.builder_apt`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemPackages {
    /// `name` or `name=version` (apt syntax).
    #[serde(default)]
    pub apt: Vec<AptPackage>,
    /// Why unversioned packages are acceptable (e.g. a dated base image already fixes them).
    #[serde(default)]
    pub unpinned_reason: Option<Text>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum PyTorch {
    /// Prebuilt wheels, installed with `pip --require-hashes`.
    Wheels(Wheels),
    /// Built from source in a builder stage.
    Source(Box<Source>),
    /// Already in the base image (test fixtures on the local Debian base).
    Preinstalled(Preinstalled),
}

impl PyTorch {
    pub fn version(&self) -> &str {
        match self {
            PyTorch::Wheels(w) => &w.torch_version,
            PyTorch::Source(s) => &s.version,
            PyTorch::Preinstalled(p) => &p.version,
        }
    }
    pub fn kind(&self) -> &'static str {
        match self {
            PyTorch::Wheels(_) => "wheels",
            PyTorch::Source(_) => "source",
            PyTorch::Preinstalled(_) => "preinstalled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wheels {
    /// The torch version the wheels carry, e.g. "1.13.1+rocm5.2".
    pub torch_version: Version,
    /// Where the files below come from (documentation and `lock`).
    pub index: HttpsUrl,
    /// Every package pip installs, each pinned to one file and its sha256.
    pub packages: Vec<Wheel>,
    /// Installed first, on their own, with `--no-deps`: what pip needs to build the `sdist`
    /// packages below (setuptools), since those are built without build isolation (an
    /// isolated build would fetch its build tools unhashed). Same form as `packages`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub build_requirements: Vec<Wheel>,
    /// The honest state "versions pinned, hashes to be locked": why the packages without a
    /// sha256 could not be hashed yet (their index was not reachable where the recipe was
    /// written). `check` accepts it, `check --strict` lists every such package, `build`
    /// refuses the recipe (exit 2), and `lock` fills the hashes from `index` and removes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_pending: Option<Text>,
    /// sha256 of the lock file whose pins were applied (`lock::attach`), for the image's
    /// labels; never in the recipe file.
    #[serde(skip)]
    pub lock_digest: Option<String>,
}

impl Wheels {
    /// Packages pinned by version only, whose files and hashes `lock` has still to resolve.
    /// Each as (list field, index in it, package).
    pub fn unlocked(&self) -> impl Iterator<Item = (&'static str, usize, &Wheel)> {
        let packages = self
            .packages
            .iter()
            .enumerate()
            .map(|(i, p)| ("packages", i, p));
        let build = self
            .build_requirements
            .iter()
            .enumerate()
            .map(|(i, p)| ("build_requirements", i, p));
        packages
            .chain(build)
            .filter(|(_, _, p)| p.sha256.is_empty())
    }
}

impl Recipe {
    /// Names of the packages that keep this recipe from being built: pinned by version but
    /// not hashed yet. Empty for every recipe that can be built.
    pub fn unlocked_packages(&self) -> Vec<String> {
        match &self.pytorch {
            PyTorch::Wheels(w) => w
                .unlocked()
                .map(|(_, _, p)| format!("{} {}", p.name, p.version))
                .collect(),
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wheel {
    pub name: PipName,
    pub version: Version,
    /// Full URL of the wheel, or absent for packages from pip's default index.
    #[serde(default)]
    pub url: Option<HttpsUrl>,
    /// sha256 of the file(s) pip may pick; at least one.
    #[serde(default)]
    pub sha256: Vec<Sha256>,
    /// Why a hash could not be confirmed, shown by `check`.
    #[serde(default)]
    pub unconfirmed: Option<Text>,
    /// Published only as a source archive (AMD's `rocm` meta package is a pure-Python
    /// sdist): pip builds it with `--no-binary NAME --no-build-isolation`, using the hashed
    /// `build_requirements`. Every other package stays binary-only.
    #[serde(default, skip_serializing_if = "is_false")]
    pub sdist: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The torch version the build produces, e.g. "2.4.1".
    pub version: Version,
    pub repository: GitUrl,
    /// Tag or branch, for people.
    #[serde(rename = "ref")]
    pub git_ref: GitRef,
    /// Full 40-hex commit the build checks out and verifies.
    pub commit: CommitId,
    /// `PYTORCH_ROCM_ARCH` entries.
    pub arch: Vec<GfxTarget>,
    /// Build environment (USE_ROCM, USE_FLASH_ATTENTION...).
    #[serde(default)]
    pub env: BTreeMap<EnvName, Text>,
    /// Patches (relative to the recipes folder), applied in order with `git apply`.
    #[serde(default)]
    pub patches: Vec<RelPath>,
    /// Base of the runtime stage (defaults to the builder base).
    #[serde(default)]
    pub runtime_base: Option<Base>,
    /// torchvision built against the same torch.
    #[serde(default)]
    pub torchvision: Option<SourceRepo>,
    /// Shell commands that must succeed after the build (verification of gfx code objects).
    /// They run in the builder stage with the PyTorch checkout as the working directory.
    #[serde(default)]
    pub verify: Vec<ShellStep>,
    /// Shell commands that must succeed in the builder stage before anything is compiled:
    /// checks of the base image that would otherwise fail only after hours of build.
    #[serde(default)]
    pub preflight: Vec<ShellStep>,
    /// apt packages of the builder stage only (compilers, -dev headers, ccache, git).
    #[serde(default)]
    pub builder_apt: Vec<AptPackage>,
    /// Python packages the build itself needs, installed in the builder with
    /// `pip --require-hashes --no-deps` before PyTorch is built. Same form as wheel packages.
    #[serde(default)]
    pub build_requirements: Vec<Wheel>,
    /// Runtime dependencies of the built torch and torchvision wheels, installed with
    /// `pip --require-hashes --no-deps` in the builder (before torchvision is built against
    /// torch) and in the runtime stage; the built wheels themselves follow with `--no-deps`
    /// (their hashes exist only after the build) and `pip check` proves the set complete.
    #[serde(default)]
    pub requirements: Vec<Wheel>,
    /// How many parallel compile jobs the build may run.
    #[serde(default)]
    pub max_jobs: Option<MaxJobs>,
    /// Compiler cache kept across builds in a BuildKit cache mount (never in an image).
    #[serde(default)]
    pub ccache: Option<Ccache>,
}

/// `MAX_JOBS` policy: one job per `gb_per_job` GiB of the memory the build can use (the
/// smaller of the cgroup limit and MemTotal), at least 1, at most the CPUs it has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxJobs {
    pub gb_per_job: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ccache {
    /// Absolute path of `CCACHE_DIR`, the target of `RUN --mount=type=cache`.
    pub dir: AbsPath,
    /// `ccache --max-size` value, e.g. "20G".
    pub max_size: ByteSize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRepo {
    pub version: Version,
    pub repository: GitUrl,
    #[serde(rename = "ref")]
    pub git_ref: GitRef,
    pub commit: CommitId,
    /// Build environment of this repository's `setup.py bdist_wheel`.
    #[serde(default)]
    pub env: BTreeMap<EnvName, Text>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preinstalled {
    /// The torch version the base image carries.
    pub version: Version,
}

/// Where a recipe came from: the error messages and the build context need it.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    Embedded,
    Dir(PathBuf),
}

/// A parsed, validated recipe plus the text and files it was read from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub recipe: Recipe,
    /// The file name as shown in errors (`recipes/rocm52.yaml` or a real path).
    pub file: String,
    pub text: String,
    pub origin: Origin,
    /// The `files` and `patches` the recipe names, read (safely) when it was loaded, so a
    /// missing or unsafe file is bad input before anything runs.
    inputs: BTreeMap<RelPath, Vec<u8>>,
    index: std::sync::OnceLock<PathIndex>,
}

impl Loaded {
    /// Reads the files `recipe` names and keeps them with it.
    pub fn new(
        recipe: Recipe,
        file: String,
        text: String,
        origin: Origin,
    ) -> Result<Self, RecipeError> {
        let mut l = Loaded {
            recipe,
            file,
            text,
            origin,
            inputs: BTreeMap::new(),
            index: std::sync::OnceLock::new(),
        };
        let mut named: Vec<(Vec<String>, RelPath)> = Vec::new();
        if let PyTorch::Source(s) = &l.recipe.pytorch {
            for (i, p) in s.patches.iter().enumerate() {
                named.push((
                    vec![
                        "pytorch".into(),
                        "source".into(),
                        "patches".into(),
                        i.to_string(),
                    ],
                    p.clone(),
                ));
            }
        }
        for (i, f) in l.recipe.files.iter().enumerate() {
            named.push((vec!["files".into(), i.to_string()], f.clone()));
        }
        let mut total = 0u64;
        for (path, rel) in named {
            let p: Vec<&str> = path.iter().map(|s| s.as_str()).collect();
            let data = l.read_input(&rel).map_err(|m| l.error_at(&p, m))?;
            total += data.len() as u64;
            if total > crate::recipe_files::MAX_TOTAL_BYTES {
                return Err(l.error_at(
                    &p,
                    format!(
                        "the files and patches of the recipe add up to more than the total limit of {} MiB",
                        crate::recipe_files::MAX_TOTAL_BYTES >> 20
                    ),
                ));
            }
            l.inputs.insert(rel, data);
        }
        Ok(l)
    }

    fn read_input(&self, rel: &RelPath) -> Result<Vec<u8>, String> {
        match &self.origin {
            Origin::Embedded => EMBEDDED_FILES
                .iter()
                .find(|(p, _)| *p == rel.as_str())
                .map(|(_, b)| b.to_vec())
                .ok_or_else(|| format!("file `{rel}` is not embedded in this binary")),
            Origin::Dir(dir) => crate::recipe_files::read_inside(dir, rel)
                .map_err(|e| format!("cannot use `{}`: {e}", dir.join(rel.as_str()).display())),
        }
    }

    /// Contents of a file the recipe refers to (patch, extra file), relative to the recipes folder.
    pub fn read_file(&self, rel: &RelPath) -> Result<Vec<u8>, RecipeError> {
        self.inputs.get(rel).cloned().ok_or_else(|| {
            self.error_at(
                &["files"],
                format!("file `{rel}` is not one the recipe names"),
            )
        })
    }

    /// An error about `path`, located through an index of the recipe built once.
    pub fn error_at(&self, path: &[&str], message: impl Into<String>) -> RecipeError {
        let loc = self
            .index
            .get_or_init(|| PathIndex::build(&self.text))
            .locate(path);
        RecipeError::located(&self.file, loc, path, message)
    }
}

pub use crate::values::is_plain_name;

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "name: x\nbase:\n  image: a:b\n  digest: sha256:zz\nsmoke:\n  cases:\n    - name: medium\n      limit_s: 5\n    - name: large\n      limit_s: 10\n";

    #[test]
    fn locate_finds_nested_keys_and_list_items() {
        assert_eq!(locate(DOC, &["name"]), Some((1, 1)));
        assert_eq!(locate(DOC, &["base", "digest"]), Some((4, 3)));
        assert_eq!(locate(DOC, &["smoke", "cases", "1"]), Some((9, 7)));
        assert_eq!(
            locate(DOC, &["smoke", "cases", "1", "limit_s"]),
            Some((10, 7))
        );
        assert_eq!(
            locate(DOC, &["smoke", "cases", "0", "limit_s"]),
            Some((8, 7))
        );
        // A missing leaf falls back to the deepest part found.
        assert_eq!(locate(DOC, &["base", "nope"]), Some((2, 1)));
        assert_eq!(locate(DOC, &["nope"]), None);
        let seq = "a:\n- x: 1\n  y: 2\n- x: 3\n";
        assert_eq!(locate(seq, &["a", "1", "x"]), Some((4, 3)));
        assert_eq!(locate(seq, &["a", "0", "y"]), Some((3, 3)));
    }

    #[test]
    fn plain_names() {
        assert!(is_plain_name("rocm52"));
        assert!(is_plain_name("fixture-ok_2"));
        assert!(!is_plain_name("../rocm52"));
        assert!(!is_plain_name("recipes/rocm52.yaml"));
        assert!(!is_plain_name(""));
        assert!(!is_plain_name("ROCM"));
    }

    const SOURCE: &str = r#"name: src
description: d
status: advanced
rocm: "6.2"
base:
  image: a:b
  digest: sha256:0000000000000000000000000000000000000000000000000000000000000000
gpu:
  target: gfx1010
  targets:
    gfx1010: null
python:
  version: "3.10"
pytorch:
  source:
    version: 2.4.1
    repository: https://example.invalid/pytorch
    ref: v2.4.1
    commit: ee1b6804381c57161c477caa380a840a84167676
    arch: [gfx1010]
    builder_apt: [git, ccache]
    max_jobs:
      gb_per_job: 4
    ccache:
      dir: /root/.ccache
      max_size: 20G
    requirements:
      - name: numpy
        version: 1.26.4
        sha256: [ffa75af20b44f8dba823498024771d5ac50620e6915abac414251bd971b4529f]
smoke:
  case_timeout_s: 60
  container_timeout_s: 300
  cases:
    - name: medium
      in_channels: 16
      out_channels: 32
      size: 48
      limit_s: 5
source_date_epoch: 1
"#;

    #[test]
    fn source_build_fields_parse() {
        let r = parse("recipes/src.yaml", SOURCE).unwrap();
        let PyTorch::Source(s) = r.pytorch else {
            panic!("not a source recipe")
        };
        assert_eq!(s.builder_apt, ["git", "ccache"]);
        assert_eq!(s.max_jobs, Some(MaxJobs { gb_per_job: 4 }));
        assert_eq!(s.ccache.unwrap().max_size, "20G");
        assert_eq!(s.requirements[0].name, "numpy");
    }

    #[test]
    fn source_build_fields_are_validated_with_locations() {
        let bad = SOURCE.replace(
            "        sha256: [ffa75af20b44f8dba823498024771d5ac50620e6915abac414251bd971b4529f]\n",
            "",
        );
        let e = parse("recipes/src.yaml", &bad).unwrap_err();
        assert_eq!(e.field, "pytorch.source.requirements[0].sha256");
        assert_eq!(e.line, Some(28));
        assert!(e.message.contains("--require-hashes"), "{e}");

        let bad = SOURCE.replace("gb_per_job: 4", "gb_per_job: 0");
        let e = parse("recipes/src.yaml", &bad).unwrap_err();
        assert_eq!(e.field, "pytorch.source.max_jobs.gb_per_job");
        assert_eq!(e.line, Some(23));

        let bad = SOURCE.replace("dir: /root/.ccache", "dir: ccache");
        let e = parse("recipes/src.yaml", &bad).unwrap_err();
        assert_eq!(e.field, "pytorch.source.ccache.dir");

        let bad = SOURCE.replace("builder_apt: [git, ccache]", "builder_apt: [git, \"c c\"]");
        let e = parse("recipes/src.yaml", &bad).unwrap_err();
        assert_eq!(e.field, "pytorch.source.builder_apt[1]");
        assert_eq!(e.line, Some(21));
    }

    #[test]
    fn strict_check_flags_builder_apt_without_a_reason() {
        let text = EMBEDDED.iter().find(|(n, _)| *n == "rocm62").unwrap().1;
        let loaded = |text: &str| {
            Loaded::new(
                parse("recipes/rocm62.yaml", text).unwrap(),
                "recipes/rocm62.yaml".into(),
                text.to_string(),
                Origin::Embedded,
            )
            .unwrap()
        };
        assert!(
            unpinned(&loaded(text)).is_empty(),
            "the shipped recipe carries its reason"
        );
        let reason = text
            .lines()
            .find(|l| {
                l.trim_start()
                    .starts_with("unpinned_reason: Ubuntu packages")
            })
            .unwrap();
        let stripped = text.replace(&format!("{reason}\n"), "");
        let found = unpinned(&loaded(&stripped));
        let fields: Vec<&str> = found.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"system_packages.apt[0]"), "{fields:?}");
        assert!(
            fields.contains(&"pytorch.source.builder_apt[0]"),
            "{fields:?}"
        );
        let e = found
            .iter()
            .find(|e| e.field == "pytorch.source.builder_apt[0]")
            .unwrap();
        assert!(
            e.line.is_some() && e.message.contains("`git` has no version"),
            "{e}"
        );
    }

    fn therock_text() -> &'static str {
        EMBEDDED.iter().find(|(n, _)| *n == "therock").unwrap().1
    }

    #[test]
    fn hashes_may_wait_for_lock_only_with_a_stated_reason() {
        let text = therock_text();
        let r = parse("recipes/therock.yaml", text).unwrap();
        assert!(r
            .unlocked_packages()
            .iter()
            .any(|p| p == "torch 2.12.0+rocm10.1.0"));
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with("lock_pending:"))
            .unwrap();
        // Without the reason an unhashed package is the old error, with its place.
        let e = parse(
            "recipes/therock.yaml",
            &text.replace(&format!("{line}\n"), ""),
        )
        .unwrap_err();
        assert_eq!(e.field, "pytorch.wheels.packages[0].sha256");
        assert!(e.message.contains("lock therock"), "{e}");
        assert!(e.line.is_some());
        let e = parse(
            "recipes/therock.yaml",
            &text.replace(line, "    lock_pending: \"  \""),
        )
        .unwrap_err();
        assert_eq!(e.field, "pytorch.wheels.lock_pending");
    }

    #[test]
    fn strict_check_names_each_unhashed_package_and_why() {
        let text = therock_text();
        let l = Loaded::new(
            parse("recipes/therock.yaml", text).unwrap(),
            "recipes/therock.yaml".into(),
            text.to_string(),
            Origin::Embedded,
        )
        .unwrap();
        let found = unpinned(&l);
        let torch = found
            .iter()
            .find(|e| e.field == "pytorch.wheels.packages[0].sha256")
            .expect("torch listed");
        assert!(
            torch
                .message
                .contains("`torch` 2.12.0+rocm10.1.0 is pinned by version only"),
            "{torch}"
        );
        assert!(
            torch.message.contains("not reachable"),
            "the reason is quoted: {torch}"
        );
        assert!(torch.line.is_some());
        let names: Vec<&str> = found.iter().map(|e| e.field.as_str()).collect();
        // The PyPI dependencies are hashed already; the AMD packages are not.
        assert!(!names
            .iter()
            .any(|f| f.starts_with("pytorch.wheels.build_requirements")));
        for dev in [
            "amd-torch-device-gfx1012",
            "rocm-sdk-device-gfx1011",
            "triton",
        ] {
            assert!(
                found
                    .iter()
                    .any(|e| e.message.contains(&format!("`{dev}`"))),
                "{dev}"
            );
        }
    }

    #[test]
    fn an_sdist_needs_hashed_build_tools() {
        let text = therock_text();
        let start = text.find("    build_requirements:\n").unwrap();
        let end = text[start..].find("    # Everything pip installs").unwrap() + start;
        let e = parse(
            "recipes/therock.yaml",
            &format!("{}{}", &text[..start], &text[end..]),
        )
        .unwrap_err();
        assert_eq!(e.field, "pytorch.wheels.build_requirements");
        assert!(e.message.contains("setuptools"), "{e}");
    }

    #[test]
    fn embedded_recipes_parse() {
        let cat = Catalog::embedded();
        for name in cat.names().unwrap() {
            cat.load(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}
