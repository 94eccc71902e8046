//! Locking: the recipe pins versions, the lock file beside it ([`file`]) records the exact
//! file and sha256 pip installs for each package pinned by version only, as Cargo.lock
//! does for Cargo.toml. `lock <recipe>` resolves what is missing (and with `--verify`
//! re-checks what is there); a `build` without `--locked` does the same for a missing or
//! incomplete lock; `--locked` never resolves. The recipe file is never written.

use std::sync::Arc;

use serde::Serialize;

use crate::index_client::IndexClient;
use crate::recipe::{Loaded, PyTorch, Recipe, Wheel};
use crate::simple_index::Target;
use crate::values::HttpsUrl;

pub mod app;
pub mod file;
pub mod resolve;

pub use file::{LockEntry, LockFile};
pub use resolve::{Recheck, Requirement};

/// What `lock` changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LockReport {
    /// The lock file written (or that would be).
    pub file: String,
    /// (field, value) for every pin written; JSON: `[{"field", "value"}]`.
    #[serde(serialize_with = "pins_as_objects")]
    pub pinned: Vec<(String, String)>,
    /// Inputs left as they were, and why.
    pub left: Vec<String>,
    /// With `--verify`: packages whose recorded file and hash the index still serves.
    pub verified: Vec<String>,
    /// With `--verify`: packages not re-checked, and why (a URL off the index, a package
    /// from pip's default index).
    pub skipped: Vec<String>,
}

fn pins_as_objects<S: serde::Serializer>(
    pins: &[(String, String)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(pins.len()))?;
    for (field, value) in pins {
        seq.serialize_element(&serde_json::json!({ "field": field, "value": value }))?;
    }
    seq.end()
}

/// What `lock` may do besides filling in what is missing.
#[derive(Debug, Clone, Copy, Default)]
pub struct LockOptions {
    /// Also look up every locked file, and every package hashed in the recipe whose file
    /// comes from the recipe's index, and fail, writing nothing, when the index now has
    /// another file or hash for the same version. The nightly runs this before building.
    pub verify: bool,
    /// Change nothing: a package the lock lacks is an error (exit 2) naming it.
    pub locked: bool,
}

/// How `lock` failed; each maps to an exit code of the CLI contract.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The recipe or its lock file (2).
    #[error("{0}")]
    Recipe(String),
    /// A field of the recipe, with its file, line and path (2).
    #[error(transparent)]
    Invalid(#[from] crate::recipe::RecipeError),
    /// `--locked`, and the lock lacks entries (2).
    #[error("{file}: no locked file for {} ({recipe} pins them by version only), and --locked forbids resolving them: run `rdna1-images{dir} lock {recipe}` where {index} is reachable, or build without --locked", packages.join(", "))]
    Missing {
        recipe: String,
        file: String,
        dir: String,
        index: String,
        packages: Vec<String>,
    },
    /// pip could not say which index it uses: python3 or pip is missing here (3).
    #[error("{what}: locking an app needs python3 with pip (pip's configuration names the index)")]
    Pip {
        what: String,
        #[source]
        source: Option<std::io::Error>,
    },
    /// The index or a file could not be reached (3).
    #[error(transparent)]
    Unreachable(crate::index_client::FetchError),
    /// A package has a different hash than recorded for the same version (1).
    #[error("{file}: the index serves different files for versions the lock pins (nothing was written): {}", changed.join("; "))]
    Changed { file: String, changed: Vec<String> },
    /// The index answered, but not with what the recipe pins (1).
    #[error("{0}")]
    Resolve(String),
    /// The index answered with something unusable (1).
    #[error(transparent)]
    Answer(crate::index_client::FetchError),
    /// The blocking look-up task itself failed (1).
    #[error("index lookup failed")]
    Lookup(#[source] tokio::task::JoinError),
}

impl LockError {
    pub fn exit_code(&self) -> i32 {
        match self {
            LockError::Recipe(_) | LockError::Invalid(_) | LockError::Missing { .. } => 2,
            LockError::Unreachable(_) | LockError::Pip { .. } => 3,
            LockError::Changed { .. }
            | LockError::Resolve(_)
            | LockError::Answer(_)
            | LockError::Lookup(_) => 1,
        }
    }
}

impl From<crate::index_client::FetchError> for LockError {
    fn from(e: crate::index_client::FetchError) -> Self {
        match e {
            crate::index_client::FetchError::Unreachable { .. } => LockError::Unreachable(e),
            crate::index_client::FetchError::Answer { .. } => LockError::Answer(e),
        }
    }
}

/// Runs blocking index I/O off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::index_client::FetchError> + Send + 'static,
) -> Result<T, LockError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(LockError::Lookup)?
        .map_err(LockError::from)
}

/// The interpreter and platform pip sees in the image: the recipe's Python and its base's
/// glibc (`base.glibc`), x86_64 Linux.
pub fn target_of(l: &Loaded) -> Result<Target, LockError> {
    let r = &l.recipe;
    let glibc = r.base.glibc.as_ref().ok_or_else(|| {
        LockError::Invalid(l.error_at(
            &["base"],
            "`glibc` is needed to choose wheels as pip would on this base (e.g. glibc: \"2.41\" for Debian 13; `ldd --version` in the base says)",
        ))
    })?;
    Target::parse(r.python.version.as_str(), glibc.as_str())
        .map_err(|e| LockError::Invalid(l.error_at(&["base", "glibc"], e)))
}

/// The lock as applied to a loaded recipe.
#[derive(Debug, Clone)]
pub struct Attached {
    /// The lock file (or the shipped one, for an embedded recipe without its own yet).
    pub file: String,
    pub lock: Option<LockFile>,
    /// `name version` of every package still pinned by version only.
    pub missing: Vec<String>,
}

/// Reads the recipe's lock and fills the packages it pins into `l.recipe` (and its digest
/// into the image's labels); what is still missing is listed.
pub fn attach(l: &mut Loaded) -> Result<Attached, LockError> {
    let name = l.recipe.name.to_string();
    let (file, lock) = file::read(&l.origin, &name).map_err(LockError::Recipe)?;
    if let Some(lock) = &lock {
        if file::apply(&mut l.recipe, lock) > 0 {
            if let PyTorch::Wheels(w) = &mut l.recipe.pytorch {
                w.lock_digest = Some(lock.digest(&name));
            }
        }
    }
    Ok(Attached {
        file,
        lock,
        missing: l.recipe.unlocked_packages(),
    })
}

/// `--locked`: every package pinned by version must have its locked file, else exit 2
/// naming them.
pub fn require_complete(l: &Loaded, a: &Attached) -> Result<(), LockError> {
    if a.missing.is_empty() {
        return Ok(());
    }
    let index = match &l.recipe.pytorch {
        PyTorch::Wheels(w) => w.index.to_string(),
        _ => "its index".into(),
    };
    Err(LockError::Missing {
        recipe: l.recipe.name.to_string(),
        file: a.file.clone(),
        dir: recipes_flag(&l.origin),
        index,
        packages: a.missing.clone(),
    })
}

/// ` --recipes DIR` for the command a message tells to run, or nothing (embedded recipes).
fn recipes_flag(origin: &crate::recipe::Origin) -> String {
    match origin {
        crate::recipe::Origin::Dir(d) => format!(" --recipes {}", d.display()),
        crate::recipe::Origin::Embedded => String::new(),
    }
}

fn requirement(p: &Wheel) -> Requirement {
    Requirement {
        name: p.name.clone(),
        version: p.version.clone(),
        sdist: p.sdist,
        url: p.url.clone(),
    }
}

/// Every package of the recipe, with the list it is in (packages, build_requirements).
fn all_packages(r: &Recipe) -> Vec<(&'static str, usize, &Wheel)> {
    match &r.pytorch {
        PyTorch::Wheels(w) => {
            let a = w
                .packages
                .iter()
                .enumerate()
                .map(|(i, p)| ("packages", i, p));
            let b = w
                .build_requirements
                .iter()
                .enumerate()
                .map(|(i, p)| ("build_requirements", i, p));
            a.chain(b).collect()
        }
        _ => Vec::new(),
    }
}

/// Locks a recipe (as loaded, before [`attach`]): resolves every package it pins by version
/// only that its lock lacks, records `base` (the resolved digest, when the caller could ask
/// the registry), and with `verify` re-checks what is locked. Writes the lock atomically,
/// only when it changed; the recipe is never written.
pub async fn lock(
    l: &Loaded,
    opts: LockOptions,
    base: Option<Result<String, String>>,
) -> Result<LockReport, LockError> {
    let name = l.recipe.name.to_string();
    let path = file::path_for(&l.origin, &name);
    let (_, old) = file::read(&l.origin, &name).map_err(LockError::Recipe)?;
    let old = old.unwrap_or_default();
    let mut report = LockReport {
        file: path.display().to_string(),
        ..Default::default()
    };
    let mut new = LockFile {
        base: old.base.clone(),
        entries: Vec::new(),
    };
    match base {
        Some(Ok(d)) => {
            if let Some(pinned) = l.recipe.base.digest.as_ref().filter(|p| p.as_str() != d) {
                // The recipe's digest decides the FROM line; the lock records what the tag
                // names now, and this says they differ.
                report.left.push(format!(
                    "base: the recipe pins {} @ {pinned}, the registry's tag now names {d} (the recipe's digest is what builds use)",
                    l.recipe.base.image
                ));
            }
            let reference = format!("{}@{d}", l.recipe.base.image);
            if new.base.as_deref() != Some(reference.as_str()) {
                report.pinned.push(("base".into(), reference.clone()));
            }
            new.base = Some(reference);
        }
        Some(Err(e)) => report
            .left
            .push(format!("base: {} not resolved: {e}", l.recipe.base.image)),
        None => {}
    }
    if new.base.is_none() {
        new.base = l
            .recipe
            .base
            .digest
            .as_ref()
            .map(|_| l.recipe.base.reference());
    }
    let mut changed = Vec::new();
    if let PyTorch::Wheels(w) = &l.recipe.pytorch {
        let client = Arc::new(IndexClient::new());
        let index: HttpsUrl = w.index.clone();
        let unlocked: Vec<&Wheel> = w.unlocked().map(|(_, _, p)| p).collect();
        let target = if unlocked.is_empty() && !opts.verify {
            None
        } else {
            Some(target_of(l)?)
        };
        for p in unlocked {
            let target = target.expect("set when a package is unlocked");
            match file::entry_for(&old, p) {
                Some(e) => {
                    if opts.verify {
                        let sdist = p.sdist;
                        verify_entry(&client, e, target, sdist, None, &mut report, &mut changed)
                            .await?;
                    }
                    new.put(e.clone());
                }
                None if opts.locked => {
                    let a = Attached {
                        file: report.file.clone(),
                        lock: None,
                        missing: vec![format!("{} {}", p.name, p.version)],
                    };
                    require_complete(l, &a)?;
                }
                None => {
                    let (c, i, req) = (client.clone(), index.clone(), requirement(p));
                    let e = blocking(move || resolve::resolve_one(&c, &i, &req, &target)).await?;
                    report.pinned.push((
                        format!("{} {}", e.name, e.version),
                        format!(
                            "{} sha256 {} from {}",
                            e.filename,
                            e.sha256,
                            e.shown_index()
                        ),
                    ));
                    new.put(e);
                }
            }
        }
        if opts.verify {
            let target = target.expect("set with verify");
            for (_, _, p) in all_packages(&l.recipe) {
                if p.sha256.is_empty() {
                    continue;
                }
                let shown = format!("{} {}", p.name, p.version);
                let Some(u) = p.url.as_ref() else {
                    report.skipped.push(format!(
                        "{shown}: hashed in the recipe, from pip's default index (no URL to compare)"
                    ));
                    continue;
                };
                if !resolve::on_index(u.as_str(), index.as_str()) {
                    report.skipped.push(format!(
                        "{shown}: {u} is not on the index {index}, so there is nothing to compare it with"
                    ));
                    continue;
                }
                let mut req = requirement(p);
                req.url = None;
                let (c, i) = (client.clone(), index.clone());
                let now = blocking(move || resolve::resolve_one(&c, &i, &req, &target)).await?;
                if now.url.as_ref() != Some(u) || !p.sha256.contains(&now.sha256) {
                    changed.push(format!(
                        "{shown}: the recipe has {} ({u}), the index now has {} ({})",
                        p.sha256
                            .iter()
                            .map(|h| h.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        now.sha256,
                        now.shown_source()
                    ));
                } else {
                    report.verified.push(shown);
                }
            }
        }
    }
    finish(report, changed, (&old, &new), &path, &name, opts)
}

/// Re-checks one locked entry (an app's on `pip_index`) and records what the index says:
/// the same file in `report.verified`, a skip in `report.skipped`, another one in `changed`.
async fn verify_entry(
    client: &Arc<IndexClient>,
    e: &LockEntry,
    target: Target,
    sdist: bool,
    pip_index: Option<HttpsUrl>,
    report: &mut LockReport,
    changed: &mut Vec<String>,
) -> Result<(), LockError> {
    let (c, e2) = (client.clone(), e.clone());
    match blocking(move || resolve::recheck(&c, &e2, &target, sdist, pip_index.as_ref())).await? {
        Recheck::Same => report.verified.push(format!("{} {}", e.name, e.version)),
        Recheck::Changed { url, sha256 } => changed.push(format!(
            "{} {}: the lock has {} ({}), the index now has {sha256} ({url})",
            e.name,
            e.version,
            e.sha256,
            e.shown_source()
        )),
        Recheck::Skipped(why) => report.skipped.push(why),
    }
    Ok(())
}

/// The end of every `lock`: nothing written when a verified file changed (exit 1), else the
/// new lock written atomically when it differs from the old, unless `--locked`.
fn finish(
    report: LockReport,
    changed: Vec<String>,
    (old, new): (&LockFile, &LockFile),
    path: &std::path::Path,
    name: &str,
    opts: LockOptions,
) -> Result<LockReport, LockError> {
    if !changed.is_empty() {
        return Err(LockError::Changed {
            file: report.file,
            changed,
        });
    }
    if new != old && !opts.locked {
        file::write_atomic(path, &new.render(name)).map_err(LockError::Recipe)?;
    }
    Ok(report)
}
