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
        for (path, rel) in named {
            let data = l.read_input(&rel).map_err(|m| {
                let p: Vec<&str> = path.iter().map(|s| s.as_str()).collect();
                l.error_at(&p, m)
            })?;
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
        Self::located(file, locate(text, path), path, message)
    }

    fn located(
        file: &str,
        loc: Option<(usize, usize)>,
        path: &[&str],
        message: impl Into<String>,
    ) -> Self {
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

/// Finds the (line, column), 1-based, of a field path; when the leaf is missing, of the
/// deepest parent found, which is where the user has to add it. Builds an index of the whole
/// text: to locate many fields of one recipe, use [`Loaded::error_at`].
pub fn locate(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    PathIndex::build(text).locate(path)
}

/// The YAML limits: nesting depth, alias expansion, and duplicate keys as errors (a
/// duplicate `gfx1010:` would otherwise silently replace the first).
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_YAML_DEPTH,
            max_aliases: 1_000,
            max_events: 2_000_000,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_ALIAS_EVENTS,
            max_replay_stack_depth: 16,
        },
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        with_snippet: false,
    }
}

/// Deepest nesting a recipe may have (the shipped ones use 6).
pub const MAX_YAML_DEPTH: usize = 32;
/// Most YAML events that aliases may replay in one recipe (a 1 MiB recipe has fewer events
/// than bytes, so this bounds expansion at about ten times the text).
pub const MAX_ALIAS_EVENTS: usize = 100_000;

/// Parses and validates one recipe. `file` is how errors name it.
pub fn parse(file: &str, text: &str) -> Result<Recipe, RecipeError> {
    let recipe = parse_unvalidated(file, text)?;
    validate(file, text, &recipe)?;
    Ok(recipe)
}

/// Parses a recipe and checks every value's grammar, but not the rules across fields
/// (pins present, names unique...): what `lock` needs to read a recipe it is about to pin.
pub fn parse_unvalidated(file: &str, text: &str) -> Result<Recipe, RecipeError> {
    if text.len() as u64 > crate::recipe_files::MAX_RECIPE_BYTES {
        return Err(RecipeError::located(
            file,
            None,
            &[],
            format!(
                "the recipe is {} bytes, more than the limit of 1 MiB",
                text.len()
            ),
        ));
    }
    let mut track = serde_path_to_error::Track::new();
    let parsed =
        serde_saphyr::with_deserializer_from_str_with_options(text, yaml_options(), |de| {
            Recipe::deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
        });
    let recipe = parsed.map_err(|e| {
        let path = track.path().to_string();
        let loc = e.location().filter(|l| l.line() > 0);
        RecipeError {
            file: file.to_string(),
            line: loc.map(|l| l.line() as usize),
            column: loc.map(|l| l.column() as usize),
            field: if path == "." { String::new() } else { path },
            message: explain_serde(&e.to_string()),
        }
    })?;
    Ok(recipe)
}

/// The parser's messages end with the place, which we print ourselves.
fn explain_serde(msg: &str) -> String {
    let msg = msg.lines().next().unwrap_or(msg);
    let msg = match msg.find(" at line ") {
        Some(i) => &msg[..i],
        None => msg,
    };
    msg.trim().to_string()
}

pub use crate::values::is_plain_name;

/// `MIOPEN_FIND_ENFORCE` values that do no search: 1 NONE, 2 DB_UPDATE, 5 DB_CLEAN. Every
/// other value (3 SEARCH, 4 SEARCH_DB_UPDATE, or one MIOpen might read as those, like `03`)
/// is refused: SEARCH made one Conv2d take over 2000 s on an RX 5600 XT.
fn find_enforce_allowed(v: &str) -> bool {
    let v = v.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        let n = v.trim_start_matches('0');
        return matches!(n, "1" | "2" | "5");
    }
    matches!(
        v.to_ascii_uppercase().as_str(),
        "NONE" | "DB_UPDATE" | "DB_CLEAN"
    )
}

/// Context names must be unique: two patches called `fix.patch` in different folders would
/// otherwise overwrite each other in the build context.
fn unique_names(
    file: &str,
    text: &str,
    list: &[RelPath],
    path: &[&str],
    basename: bool,
) -> Result<(), RecipeError> {
    let mut seen = std::collections::BTreeMap::new();
    for (i, p) in list.iter().enumerate() {
        let name = if basename {
            p.rsplit('/').next().unwrap_or(p)
        } else {
            p.as_str()
        };
        if let Some(first) = seen.insert(name.to_string(), i) {
            let idx = i.to_string();
            let mut full = path.to_vec();
            full.push(&idx);
            return Err(RecipeError::at(
                file,
                text,
                &full,
                format!(
                    "`{p}` has the same name in the build context as entry {first} (`{}`): give each its own file name",
                    list[first]
                ),
            ));
        }
    }
    Ok(())
}

fn validate(file: &str, text: &str, r: &Recipe) -> Result<(), RecipeError> {
    let err = |path: &[&str], msg: String| Err(RecipeError::at(file, text, path, msg));
    let stem = Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if r.name != stem {
        return err(
            &["name"],
            format!(
                "`{}` must match the file name `{stem}.yaml` (the name is how the recipe is found)",
                r.name
            ),
        );
    }
    if r.source_date_epoch > crate::values::MAX_EPOCH {
        return err(
            &["source_date_epoch"],
            format!(
                "{} is past 9999-12-31T23:59:59Z ({}): give seconds since 1970",
                r.source_date_epoch,
                crate::values::MAX_EPOCH
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
                r.gpu
                    .targets
                    .keys()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    if r.env.contains_key("HSA_OVERRIDE_GFX_VERSION") {
        return err(
            &["env", "HSA_OVERRIDE_GFX_VERSION"],
            "set the override per target in `gpu.targets`, not in `env` (run adjusts it to the detected GPU)".into(),
        );
    }
    // The MIOpen caches are folders the image creates and `run` mounts volumes on.
    for key in ["MIOPEN_USER_DB_PATH", "MIOPEN_CUSTOM_CACHE_DIR"] {
        if let Some(v) = r.env.get(key) {
            if let Err(m) = AbsPath::parse(v) {
                return err(&["env", key], m);
            }
        }
    }
    if let Some(v) = r.env.get("MIOPEN_FIND_ENFORCE") {
        if !find_enforce_allowed(v) {
            return err(
                &["env", "MIOPEN_FIND_ENFORCE"],
                format!(
                    "`{v}` is not allowed: only 1 (NONE), 2 (DB_UPDATE) or 5 (DB_CLEAN); SEARCH (3, 4) makes a single Conv2d take over 2000 s on RDNA1, so leave it unset"
                ),
            );
        }
    }
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
            if let Some(rb) = &s.runtime_base {
                validate_base(file, text, rb, &["pytorch", "source", "runtime_base"])?;
            }
            unique_names(
                file,
                text,
                &s.patches,
                &["pytorch", "source", "patches"],
                true,
            )?;
        }
        PyTorch::Preinstalled(_) => {}
    }
    unique_names(file, text, &r.files, &["files"], false)?;
    crate::smoke::validate_spec(&r.smoke).map_err(|(path, msg)| {
        let mut full = vec!["smoke"];
        full.extend(path.iter().map(|s| s.as_str()));
        RecipeError::at(file, text, &full, msg)
    })?;
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
    }
    Ok(())
}

fn validate_base(file: &str, text: &str, b: &Base, path: &[&str]) -> Result<(), RecipeError> {
    match (&b.digest, &b.unpinned_reason) {
        (Some(_), _) => Ok(()),
        (None, Some(reason)) if !reason.trim().is_empty() => Ok(()),
        (None, _) => {
            let mut p = path.to_vec();
            p.push("digest");
            Err(RecipeError::at(
                file,
                text,
                &p,
                "missing: pin the base with `digest: sha256:...` or say why not in `unpinned_reason`",
            ))
        }
    }
}

/// Inputs of a recipe that are not pinned, for `check --strict`: each names its place.
///
/// An input with an explicit, non-empty reason (`unpinned_reason`, `unconfirmed`) is an
/// accepted exemption and not listed.
pub fn unpinned(l: &Loaded) -> Vec<RecipeError> {
    let r = &l.recipe;
    let mut out = Vec::new();
    let mut base = |b: &Base, path: &[&str]| {
        if b.digest.is_none() && b.unpinned_reason.is_none() {
            let mut p = path.to_vec();
            p.push("digest");
            out.push(l.error_at(
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
            out.push(l.error_at(
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
        let builder: &[AptPackage] = match &r.pytorch {
            PyTorch::Source(s) => &s.builder_apt,
            _ => &[],
        };
        for (list, path) in [
            (&r.system_packages.apt[..], &["system_packages", "apt"][..]),
            (builder, &["pytorch", "source", "builder_apt"][..]),
        ] {
            for (i, p) in list.iter().enumerate() {
                if p.version().is_none() {
                    let idx = i.to_string();
                    let mut full = path.to_vec();
                    full.push(&idx);
                    out.push(l.error_at(
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
                let shown = path.display().to_string();
                let bytes = match crate::recipe_files::read_recipe(&path) {
                    Ok(b) => b,
                    Err((std::io::ErrorKind::NotFound, _)) => return Err(unknown()),
                    Err((_, message)) => {
                        let message = format!("cannot read the recipe: {message}");
                        return Err(RecipeError::located(&shown, None, &[], message).into());
                    }
                };
                let text = String::from_utf8(bytes).map_err(|e| {
                    let message = format!("the recipe is not UTF-8 text: {e}");
                    RecipeError::located(&shown, None, &[], message)
                })?;
                (shown, text, Origin::Dir(dir.clone()))
            }
        };
        let recipe = parse(&file, &text)?;
        Ok(Loaded::new(recipe, file, text, origin)?)
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
