//! The YAML recipe: one file per stack, parsed strictly and validated before anything runs.
//!
//! Every error names the file, the line and column, and the field, and says what is allowed:
//! a user who mistypes a key in a recipe for a two-hour build should learn it in a second.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::smoke::SmokeSpec;

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
    pub name: String,
    pub description: String,
    pub status: Status,
    /// ROCm release the stack is built on ("5.2", "6.2"); "none" for CPU fixtures.
    pub rocm: String,
    pub base: Base,
    pub gpu: Gpu,
    pub python: Python,
    #[serde(default)]
    pub system_packages: SystemPackages,
    /// Environment baked into the image (`ENV`), in this order.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Exactly one of `wheels:`, `source:` or `preinstalled:`.
    #[serde(with = "serde_yaml::with::singleton_map")]
    pub pytorch: PyTorch,
    /// Extra files from the recipes folder copied into the build context, relative paths.
    #[serde(default)]
    pub files: Vec<String>,
    /// Extra shell steps run after PyTorch is installed (one `RUN` each).
    #[serde(default)]
    pub steps: Vec<String>,
    pub smoke: SmokeSpec,
    /// Seconds since the epoch used for every timestamp the build writes (labels, history,
    /// file mtimes where the engine allows it).
    pub source_date_epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Base {
    /// Image reference with a tag, e.g. `ubuntu:jammy-20260901.2`.
    pub image: String,
    /// Content digest `sha256:<64 hex>`; the image is pulled by it.
    #[serde(default)]
    pub digest: Option<String>,
    /// Why the base is not pinned (required when `digest` is absent).
    #[serde(default)]
    pub unpinned_reason: Option<String>,
    /// Why the digest could not be confirmed against the registry, shown by `check` (like
    /// `Wheel::unconfirmed`); `lock` clears it when it resolves the digest itself.
    #[serde(default)]
    pub unconfirmed: Option<String>,
}

impl Base {
    /// The reference the Dockerfile's `FROM` uses: `image@digest` when pinned.
    pub fn reference(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}@{}", self.image, d),
            None => self.image.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    /// The gfx target the image is built and labelled for.
    pub target: String,
    /// Per supported gfx target: the `HSA_OVERRIDE_GFX_VERSION` it needs, or null for native.
    pub targets: BTreeMap<String, Option<String>>,
}

impl Gpu {
    /// The override baked into the image: the one the primary target needs.
    pub fn hsa_override(&self) -> Option<&str> {
        self.targets.get(&self.target).and_then(|o| o.as_deref())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Python {
    /// Major.minor, e.g. "3.10".
    pub version: String,
    /// The interpreter inside the image.
    #[serde(default = "default_python_bin")]
    pub bin: String,
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

fn default_python_bin() -> String {
    "python3".to_string()
}

/// apt packages of the final image. For `source:` recipes that is the runtime stage; the
/// builder stage has its own list in `pytorch.source.builder_apt`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemPackages {
    /// `name` or `name=version` (apt syntax).
    #[serde(default)]
    pub apt: Vec<String>,
    /// Why unversioned packages are acceptable (e.g. a dated base image already fixes them).
    #[serde(default)]
    pub unpinned_reason: Option<String>,
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
    pub torch_version: String,
    /// Where the files below come from (documentation and `lock`).
    pub index: String,
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
    pub lock_pending: Option<String>,
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
    pub name: String,
    pub version: String,
    /// Full URL of the wheel, or absent for packages from pip's default index.
    #[serde(default)]
    pub url: Option<String>,
    /// sha256 of the file(s) pip may pick; at least one.
    #[serde(default)]
    pub sha256: Vec<String>,
    /// Why a hash could not be confirmed, shown by `check`.
    #[serde(default)]
    pub unconfirmed: Option<String>,
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
    pub version: String,
    pub repository: String,
    /// Tag or branch, for people.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// Full 40-hex commit the build checks out and verifies.
    pub commit: String,
    /// `PYTORCH_ROCM_ARCH` entries.
    pub arch: Vec<String>,
    /// Build environment (USE_ROCM, USE_FLASH_ATTENTION...).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Patches (relative to the recipes folder), applied in order with `git apply`.
    #[serde(default)]
    pub patches: Vec<String>,
    /// Base of the runtime stage (defaults to the builder base).
    #[serde(default)]
    pub runtime_base: Option<Base>,
    /// torchvision built against the same torch.
    #[serde(default)]
    pub torchvision: Option<SourceRepo>,
    /// Shell commands that must succeed after the build (verification of gfx code objects).
    /// They run in the builder stage with the PyTorch checkout as the working directory.
    #[serde(default)]
    pub verify: Vec<String>,
    /// Shell commands that must succeed in the builder stage before anything is compiled:
    /// checks of the base image that would otherwise fail only after hours of build.
    #[serde(default)]
    pub preflight: Vec<String>,
    /// apt packages of the builder stage only (compilers, -dev headers, ccache, git).
    #[serde(default)]
    pub builder_apt: Vec<String>,
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
    pub dir: String,
    /// `ccache --max-size` value, e.g. "20G".
    pub max_size: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRepo {
    pub version: String,
    pub repository: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
    pub commit: String,
    /// Build environment of this repository's `setup.py bdist_wheel`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preinstalled {
    /// The torch version the base image carries.
    pub version: String,
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
}

impl Loaded {
    /// Contents of a file the recipe refers to (patch, extra file), relative to the recipes folder.
    pub fn read_file(&self, rel: &str) -> Result<Vec<u8>, RecipeError> {
        let bad = |msg: String| RecipeError::at(&self.file, &self.text, &["files"], msg);
        if !is_safe_relative(rel) {
            return Err(bad(format!(
                "file `{rel}` must be a relative path inside the recipes folder (no `..`, no leading `/`)"
            )));
        }
        match &self.origin {
            Origin::Embedded => EMBEDDED_FILES
                .iter()
                .find(|(p, _)| *p == rel)
                .map(|(_, b)| b.to_vec())
                .ok_or_else(|| bad(format!("file `{rel}` is not embedded in this binary"))),
            Origin::Dir(dir) => std::fs::read(dir.join(rel))
                .map_err(|e| bad(format!("cannot read `{}`: {e}", dir.join(rel).display()))),
        }
    }
}

fn is_safe_relative(p: &str) -> bool {
    let path = Path::new(p);
    !p.is_empty()
        && path.is_relative()
        && path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// A recipe problem: file, line, column, field path, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipeError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub field: String,
    pub message: String,
}

impl RecipeError {
    /// An error about `path` (field names and list indices), located in `text` when possible.
    pub fn at(file: &str, text: &str, path: &[&str], message: impl Into<String>) -> Self {
        let loc = locate(text, path);
        RecipeError {
            file: file.to_string(),
            line: loc.map(|l| l.0),
            column: loc.map(|l| l.1),
            field: display_path(path),
            message: message.into(),
        }
    }
}

impl fmt::Display for RecipeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if !self.field.is_empty() {
            write!(f, ": field `{}`", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for RecipeError {}

/// Problems finding a recipe by name.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("recipe name `{0}` is not a plain name (letters, digits, `-`, `_`; no paths): use `--recipes DIR` to read recipes from another folder")]
    NotAName(String),
    #[error("unknown recipe `{name}`; recipes in {place}: {}", known.join(", "))]
    Unknown {
        name: String,
        place: String,
        known: Vec<String>,
    },
    #[error("cannot read recipes folder {dir}: {source}")]
    Dir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] RecipeError),
}

fn display_path(path: &[&str]) -> String {
    let mut s = String::new();
    for p in path {
        if p.parse::<usize>().is_ok() {
            s.push_str(&format!("[{p}]"));
        } else {
            if !s.is_empty() {
                s.push('.');
            }
            s.push_str(p);
        }
    }
    s
}

/// Finds the (line, column), 1-based, of a field path in block-style YAML.
///
/// serde_yaml reports positions for syntax and type errors but not for values that pass
/// deserialization and fail validation; this walks the indentation to find them (all our
/// recipes are block style). When the leaf is missing it returns the deepest parent found,
/// which is where the user has to add it.
pub fn locate(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    let lines: Vec<YamlLine> = text
        .lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let t = l.trim_start();
            (!t.is_empty() && !t.starts_with('#')).then(|| YamlLine {
                number: i + 1,
                indent: l.len() - t.len(),
                text: t.to_string(),
            })
        })
        .collect();
    locate_in(&lines, path)
}

#[derive(Clone)]
struct YamlLine {
    number: usize,
    indent: usize,
    text: String,
}

fn locate_in(block: &[YamlLine], path: &[&str]) -> Option<(usize, usize)> {
    let (part, rest) = path.split_first()?;
    let first = block.first()?;
    let indent = first.indent;
    // The lines that belong to the entry starting at block[i]: deeper ones, plus list items
    // at the same indent under a mapping key (`key:\n- a`).
    let children = |i: usize| -> &[YamlLine] {
        let own = &block[i];
        let is_item = own.text.starts_with("- ") || own.text == "-";
        let len = block[i + 1..]
            .iter()
            .take_while(|l| {
                l.indent > own.indent
                    || (!is_item && l.indent == own.indent && l.text.starts_with("- "))
            })
            .count();
        &block[i + 1..i + 1 + len]
    };
    let at_level = |l: &YamlLine| l.indent == indent;
    let (i, col) = if let Ok(n) = part.parse::<usize>() {
        let i = block
            .iter()
            .enumerate()
            .filter(|(_, l)| at_level(l) && (l.text.starts_with("- ") || l.text == "-"))
            .nth(n)?
            .0;
        (i, indent + 2)
    } else {
        let key = format!("{part}:");
        let i = block.iter().position(|l| {
            at_level(l) && (l.text.starts_with(&key) || l.text.starts_with(&format!("\"{part}\":")))
        })?;
        (i, indent)
    };
    let here = (block[i].number, col + 1);
    if rest.is_empty() {
        return Some(here);
    }
    let mut sub: Vec<YamlLine> = Vec::new();
    if part.parse::<usize>().is_ok() {
        // `- key: v` opens a mapping whose keys sit two columns right of the dash.
        let item = &block[i].text[2.min(block[i].text.len())..];
        if !item.trim().is_empty() {
            sub.push(YamlLine {
                number: block[i].number,
                indent: indent + 2,
                text: item.trim_start().to_string(),
            });
        }
    }
    sub.extend(children(i).iter().cloned());
    Some(locate_in(&sub, rest).unwrap_or(here))
}

/// Parses and validates one recipe. `file` is how errors name it.
pub fn parse(file: &str, text: &str) -> Result<Recipe, RecipeError> {
    let de = serde_yaml::Deserializer::from_str(text);
    let recipe: Recipe = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let loc = inner.location();
        let msg = explain_serde(&inner.to_string());
        // serde_yaml prefixes the message with the path we already print as the field.
        let msg = msg
            .strip_prefix(&format!("{path}: "))
            .or_else(|| {
                msg.strip_prefix(&format!(
                    "{}: ",
                    path.rsplit_once('.').map(|p| p.0).unwrap_or("")
                ))
            })
            .map(String::from)
            .unwrap_or(msg.clone());
        RecipeError {
            file: file.to_string(),
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
            field: if path == "." { String::new() } else { path },
            message: msg,
        }
    })?;
    validate(file, text, &recipe)?;
    Ok(recipe)
}

/// serde_yaml's messages end with " at line N column M"; we print the place ourselves.
fn explain_serde(msg: &str) -> String {
    let msg = match msg.find(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    msg.to_string()
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// A recipe name: what may follow `rdna1-images build`.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

fn validate(file: &str, text: &str, r: &Recipe) -> Result<(), RecipeError> {
    let err = |path: &[&str], msg: String| Err(RecipeError::at(file, text, path, msg));
    let stem = Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if !is_plain_name(&r.name) {
        return err(
            &["name"],
            format!(
                "`{}` is not a plain name: use lowercase letters, digits, `-` and `_`",
                r.name
            ),
        );
    }
    if r.name != stem {
        return err(
            &["name"],
            format!(
                "`{}` must match the file name `{stem}.yaml` (the name is how the recipe is found)",
                r.name
            ),
        );
    }
    validate_base(file, text, &r.base, &["base"])?;
    if !r.gpu.targets.contains_key(&r.gpu.target) {
        return err(
            &["gpu", "target"],
            format!(
                "`{}` must be one of the keys of `gpu.targets` ({})",
                r.gpu.target,
                r.gpu.targets.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        );
    }
    for (t, o) in &r.gpu.targets {
        if !t.starts_with("gfx") || t.len() < 6 {
            return err(
                &["gpu", "targets", t],
                format!("`{t}` is not a gfx target (like gfx1010)"),
            );
        }
        if let Some(o) = o {
            let parts: Vec<&str> = o.split('.').collect();
            if parts.len() != 3 || parts.iter().any(|p| p.parse::<u32>().is_err()) {
                return err(
                    &["gpu", "targets", t],
                    format!(
                        "override `{o}` must look like 10.3.0 (major.minor.stepping) or be null"
                    ),
                );
            }
        }
    }
    if r.env.contains_key("HSA_OVERRIDE_GFX_VERSION") {
        return err(
            &["env", "HSA_OVERRIDE_GFX_VERSION"],
            "set the override per target in `gpu.targets`, not in `env` (run adjusts it to the detected GPU)".into(),
        );
    }
    if r.env.get("MIOPEN_FIND_ENFORCE").map(|v| v.trim()) == Some("3")
        || r.env
            .get("MIOPEN_FIND_ENFORCE")
            .map(|v| v.trim().to_ascii_uppercase())
            == Some("SEARCH".into())
    {
        return err(
            &["env", "MIOPEN_FIND_ENFORCE"],
            "MIOPEN_FIND_ENFORCE=3 (SEARCH) makes a single Conv2d take over 2000 s on RDNA1; leave it unset".into(),
        );
    }
    for k in r.env.keys() {
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return err(
                &["env", k],
                format!("`{k}` is not an environment variable name"),
            );
        }
    }
    let pv: Vec<&str> = r.python.version.split('.').collect();
    if pv.len() != 2 || pv.iter().any(|p| p.parse::<u32>().is_err()) {
        return err(
            &["python", "version"],
            format!(
                "`{}` must be major.minor, like 3.10 (quote it in YAML: \"3.10\")",
                r.python.version
            ),
        );
    }
    validate_apt(
        file,
        text,
        &r.system_packages.apt,
        &["system_packages", "apt"],
    )?;
    match &r.pytorch {
        PyTorch::Wheels(w) => {
            if w.packages.is_empty() {
                return err(
                    &["pytorch", "wheels", "packages"],
                    "list at least the torch wheel".into(),
                );
            }
            let pending = match &w.lock_pending {
                Some(reason) if reason.trim().is_empty() => {
                    return err(
                        &["pytorch", "wheels", "lock_pending"],
                        "say why the hashes are not locked yet, or remove the key".into(),
                    )
                }
                Some(_) => true,
                None => false,
            };
            for (list, field) in [
                (&w.packages, "packages"),
                (&w.build_requirements, "build_requirements"),
            ] {
                let path = ["pytorch", "wheels", field];
                validate_wheels(file, text, &r.name, list, &path, pending)?;
            }
            if pending && w.unlocked().next().is_none() {
                return err(
                    &["pytorch", "wheels", "lock_pending"],
                    "every package has its sha256: the recipe is locked, remove `lock_pending`"
                        .into(),
                );
            }
            if w.packages.iter().any(|p| p.sdist) && w.build_requirements.is_empty() {
                return err(
                    &["pytorch", "wheels", "build_requirements"],
                    "a package marked `sdist: true` is built without build isolation: list its build tools (setuptools) here, pinned and hashed".into(),
                );
            }
            if let Some((i, _)) = w
                .build_requirements
                .iter()
                .enumerate()
                .find(|(_, p)| p.sdist)
            {
                return err(
                    &[
                        "pytorch",
                        "wheels",
                        "build_requirements",
                        &i.to_string(),
                        "sdist",
                    ],
                    "build requirements must be wheels (they are what builds the sdists)".into(),
                );
            }
        }
        PyTorch::Source(s) => {
            validate_apt(
                file,
                text,
                &s.builder_apt,
                &["pytorch", "source", "builder_apt"],
            )?;
            validate_wheels(
                file,
                text,
                &r.name,
                &s.build_requirements,
                &["pytorch", "source", "build_requirements"],
                false,
            )?;
            validate_wheels(
                file,
                text,
                &r.name,
                &s.requirements,
                &["pytorch", "source", "requirements"],
                false,
            )?;
            if let Some(m) = &s.max_jobs {
                if m.gb_per_job == 0 {
                    return err(
                        &["pytorch", "source", "max_jobs", "gb_per_job"],
                        "must be at least 1 (GiB of memory per compile job)".into(),
                    );
                }
            }
            if let Some(c) = &s.ccache {
                if !c.dir.starts_with('/') || c.dir.contains(char::is_whitespace) {
                    return err(
                        &["pytorch", "source", "ccache", "dir"],
                        format!("`{}` must be an absolute path without spaces", c.dir),
                    );
                }
                let size = c.max_size.trim_end_matches(['K', 'M', 'G', 'T']);
                if size.is_empty() || size.parse::<u64>().is_err() {
                    return err(
                        &["pytorch", "source", "ccache", "max_size"],
                        format!("`{}` must be a size like 20G", c.max_size),
                    );
                }
            }
            for (list, name) in [(&s.verify, "verify"), (&s.preflight, "preflight")] {
                for (i, c) in list.iter().enumerate() {
                    if c.trim().is_empty() {
                        return err(
                            &["pytorch", "source", name, &i.to_string()],
                            "empty command".into(),
                        );
                    }
                }
            }
            if !is_hex(&s.commit, 40) {
                return err(
                    &["pytorch", "source", "commit"],
                    format!("`{}` must be a full 40-hex commit id", s.commit),
                );
            }
            if s.arch.is_empty() {
                return err(
                    &["pytorch", "source", "arch"],
                    "name at least one gfx target (PYTORCH_ROCM_ARCH): no GPU is visible during a build".into(),
                );
            }
            if s.env.contains_key("PYTORCH_ROCM_ARCH") {
                return err(
                    &["pytorch", "source", "env", "PYTORCH_ROCM_ARCH"],
                    "set the gfx targets in `pytorch.source.arch` (the build exports PYTORCH_ROCM_ARCH from it)".into(),
                );
            }
            validate_env_names(file, text, &s.env, &["pytorch", "source", "env"])?;
            if let Some(tv) = &s.torchvision {
                if !is_hex(&tv.commit, 40) {
                    return err(
                        &["pytorch", "source", "torchvision", "commit"],
                        format!("`{}` must be a full 40-hex commit id", tv.commit),
                    );
                }
                validate_env_names(
                    file,
                    text,
                    &tv.env,
                    &["pytorch", "source", "torchvision", "env"],
                )?;
            }
            if let Some(rb) = &s.runtime_base {
                validate_base(file, text, rb, &["pytorch", "source", "runtime_base"])?;
            }
            for (i, p) in s.patches.iter().enumerate() {
                if !is_safe_relative(p) {
                    return err(
                        &["pytorch", "source", "patches", &i.to_string()],
                        format!("`{p}` must be a relative path inside the recipes folder"),
                    );
                }
            }
        }
        PyTorch::Preinstalled(_) => {}
    }
    for (i, f) in r.files.iter().enumerate() {
        if !is_safe_relative(f) {
            return err(
                &["files", &i.to_string()],
                format!("`{f}` must be a relative path inside the recipes folder"),
            );
        }
    }
    crate::smoke::validate_spec(&r.smoke).map_err(|(path, msg)| {
        let mut full = vec!["smoke"];
        full.extend(path.iter().map(|s| s.as_str()));
        RecipeError::at(file, text, &full, msg)
    })?;
    Ok(())
}

fn validate_env_names(
    file: &str,
    text: &str,
    env: &BTreeMap<String, String>,
    path: &[&str],
) -> Result<(), RecipeError> {
    for k in env.keys() {
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            let mut full = path.to_vec();
            full.push(k);
            return Err(RecipeError::at(
                file,
                text,
                &full,
                format!("`{k}` is not an environment variable name"),
            ));
        }
    }
    Ok(())
}

fn validate_apt(file: &str, text: &str, pkgs: &[String], path: &[&str]) -> Result<(), RecipeError> {
    for (i, p) in pkgs.iter().enumerate() {
        if p.is_empty()
            || !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.:=~_".contains(&b))
        {
            let idx = i.to_string();
            let mut full = path.to_vec();
            full.push(&idx);
            return Err(RecipeError::at(
                file,
                text,
                &full,
                format!("`{p}` is not an apt package (`name` or `name=version`)"),
            ));
        }
    }
    Ok(())
}

/// Every pip package is pinned to files by sha256 (`pip --require-hashes`), or, while the
/// recipe states `lock_pending`, at least to one version (`pending`).
fn validate_wheels(
    file: &str,
    text: &str,
    recipe: &str,
    wheels: &[Wheel],
    path: &[&str],
    pending: bool,
) -> Result<(), RecipeError> {
    for (i, p) in wheels.iter().enumerate() {
        let idx = i.to_string();
        let at = |field: &str, msg: String| {
            let mut full = path.to_vec();
            full.push(&idx);
            full.push(field);
            Err(RecipeError::at(file, text, &full, msg))
        };
        for h in &p.sha256 {
            if !is_hex(h, 64) {
                return at(
                    "sha256",
                    format!("`{h}` is not a sha256 (64 lowercase hex digits)"),
                );
            }
        }
        if p.sdist && path.contains(&"source") {
            return at(
                "sdist",
                "a source build installs its requirements as wheels only".into(),
            );
        }
        if p.sha256.is_empty() && !pending {
            return at(
                "sha256",
                format!(
                    "package `{}` has no sha256: pip installs with --require-hashes (run `rdna1-images lock {recipe}` to fill it in)",
                    p.name
                ),
            );
        }
        if p.version.is_empty() {
            return at(
                "version",
                format!("package `{}` must be pinned to one version", p.name),
            );
        }
        if let Some(u) = &p.url {
            // Plain http only from this machine (a local mirror, the tests).
            let loopback = [
                "http://127.0.0.1:",
                "http://127.0.0.1/",
                "http://localhost:",
                "http://localhost/",
            ]
            .iter()
            .any(|l| u.starts_with(l));
            if !u.starts_with("https://") && !loopback {
                return at(
                    "url",
                    format!("`{u}` must be an https URL (or http on 127.0.0.1)"),
                );
            }
        }
    }
    Ok(())
}

fn validate_base(file: &str, text: &str, b: &Base, path: &[&str]) -> Result<(), RecipeError> {
    let at = |field: &str, msg: String| {
        let mut p = path.to_vec();
        p.push(field);
        Err(RecipeError::at(file, text, &p, msg))
    };
    if b.image.is_empty() || b.image.contains('@') || b.image.contains(char::is_whitespace) {
        return at(
            "image",
            format!(
                "`{}` must be an image reference with a tag and without a digest (put the digest in `digest`)",
                b.image
            ),
        );
    }
    match (&b.digest, &b.unpinned_reason) {
        (Some(d), _) => {
            if !(d.starts_with("sha256:") && is_hex(&d[7..], 64)) {
                return at(
                    "digest",
                    format!("`{d}` must be sha256:<64 lowercase hex digits>"),
                );
            }
        }
        (None, Some(reason)) if !reason.trim().is_empty() => {}
        (None, _) => return at(
            "digest",
            "missing: pin the base with `digest: sha256:...` or say why not in `unpinned_reason`"
                .into(),
        ),
    }
    Ok(())
}

/// Inputs of a recipe that are not pinned, for `check --strict`: each names its place.
///
/// An input with an explicit, non-empty reason (`unpinned_reason`, `unconfirmed`) is an
/// accepted exemption and not listed.
pub fn unpinned(l: &Loaded) -> Vec<RecipeError> {
    let r = &l.recipe;
    let at = |path: &[&str], msg: String| RecipeError::at(&l.file, &l.text, path, msg);
    let mut out = Vec::new();
    let mut base = |b: &Base, path: &[&str]| {
        if b.digest.is_none() && b.unpinned_reason.is_none() {
            let mut p = path.to_vec();
            p.push("digest");
            out.push(at(
                &p,
                format!(
                    "base `{}` is not pinned by digest (run `rdna1-images lock {}`)",
                    b.image, r.name
                ),
            ));
        }
    };
    base(&r.base, &["base"]);
    if let PyTorch::Source(s) = &r.pytorch {
        if let Some(rb) = &s.runtime_base {
            base(rb, &["pytorch", "source", "runtime_base"]);
        }
    }
    if let PyTorch::Wheels(w) = &r.pytorch {
        for (field, i, p) in w.unlocked() {
            let idx = i.to_string();
            out.push(at(
                &["pytorch", "wheels", field, &idx, "sha256"],
                format!(
                    "`{}` {} is pinned by version only, its hash is still to be locked ({}): run `rdna1-images --recipes DIR lock {}` where {} is reachable",
                    p.name,
                    p.version,
                    w.lock_pending.as_deref().unwrap_or("no reason given"),
                    r.name,
                    w.index
                ),
            ));
        }
    }
    // One reason covers every apt list of the recipe: the runtime's and a builder's.
    if r.system_packages.unpinned_reason.is_none() {
        let builder: &[String] = match &r.pytorch {
            PyTorch::Source(s) => &s.builder_apt,
            _ => &[],
        };
        for (list, path) in [
            (&r.system_packages.apt[..], &["system_packages", "apt"][..]),
            (builder, &["pytorch", "source", "builder_apt"][..]),
        ] {
            for (i, p) in list.iter().enumerate() {
                if !p.contains('=') {
                    let idx = i.to_string();
                    let mut full = path.to_vec();
                    full.push(&idx);
                    out.push(at(
                        &full,
                        format!("apt package `{p}` has no version (`{p}=<version>`), and `system_packages.unpinned_reason` gives no reason"),
                    ));
                }
            }
        }
    }
    out
}

/// The recipe set a command works on.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub source: Origin,
}

impl Catalog {
    pub fn embedded() -> Self {
        Catalog {
            source: Origin::Embedded,
        }
    }
    pub fn dir(dir: impl Into<PathBuf>) -> Self {
        Catalog {
            source: Origin::Dir(dir.into()),
        }
    }

    fn place(&self) -> String {
        match &self.source {
            Origin::Embedded => "the recipes built into this binary".into(),
            Origin::Dir(d) => d.display().to_string(),
        }
    }

    /// Recipe names, sorted.
    pub fn names(&self) -> Result<Vec<String>, LookupError> {
        let mut names: Vec<String> = match &self.source {
            Origin::Embedded => EMBEDDED.iter().map(|(n, _)| n.to_string()).collect(),
            Origin::Dir(dir) => std::fs::read_dir(dir)
                .map_err(|source| LookupError::Dir {
                    dir: dir.clone(),
                    source,
                })?
                .filter_map(|e| e.ok())
                .filter_map(|e| {
                    let p = e.path();
                    (p.extension().and_then(|x| x.to_str()) == Some("yaml"))
                        .then(|| p.file_stem()?.to_str().map(String::from))
                        .flatten()
                })
                .filter(|n| is_plain_name(n))
                .collect(),
        };
        names.sort();
        Ok(names)
    }

    /// Finds, parses and validates one recipe by name.
    pub fn load(&self, name: &str) -> Result<Loaded, LookupError> {
        if !is_plain_name(name) {
            return Err(LookupError::NotAName(name.to_string()));
        }
        let unknown = || -> LookupError {
            LookupError::Unknown {
                name: name.to_string(),
                place: self.place(),
                known: self.names().unwrap_or_default(),
            }
        };
        let (file, text, origin) = match &self.source {
            Origin::Embedded => {
                let (_, text) = EMBEDDED
                    .iter()
                    .find(|(n, _)| *n == name)
                    .ok_or_else(unknown)?;
                (
                    format!("recipes/{name}.yaml"),
                    text.to_string(),
                    Origin::Embedded,
                )
            }
            Origin::Dir(dir) => {
                let path = dir.join(format!("{name}.yaml"));
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(unknown()),
                    Err(source) => return Err(LookupError::Dir { dir: path, source }),
                };
                (path.display().to_string(), text, Origin::Dir(dir.clone()))
            }
        };
        let recipe = parse(&file, &text)?;
        Ok(Loaded {
            recipe,
            file,
            text,
            origin,
        })
    }

    /// Every recipe, each parsed on its own so one bad file does not hide the others.
    pub fn load_all(&self) -> Result<Vec<Result<Loaded, LookupError>>, LookupError> {
        Ok(self.names()?.iter().map(|n| self.load(n)).collect())
    }
}

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
        let loaded = |text: &str| Loaded {
            recipe: parse("recipes/rocm62.yaml", text).unwrap(),
            file: "recipes/rocm62.yaml".into(),
            text: text.to_string(),
            origin: Origin::Embedded,
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
        let l = Loaded {
            recipe: parse("recipes/therock.yaml", text).unwrap(),
            file: "recipes/therock.yaml".into(),
            text: text.to_string(),
            origin: Origin::Embedded,
        };
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
