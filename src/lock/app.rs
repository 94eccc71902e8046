//! Locking an app's Python packages: the same lock file, entries and resolver as a stack's
//! wheels, for the stack's Python and platform. The index is pip's own (its configuration,
//! `PIP_INDEX_URL` included), as when the hashes were first taken, and the lock records
//! file and sha256 only: the index host is the user's (a mirror, a proxy), and pip
//! installs from whichever it is configured with.

use std::sync::Arc;

use crate::index_client::IndexClient;
use crate::recipe::{Catalog, LoadedApp, LookupError, Origin, RecipeError, Wheel};
use crate::values::HttpsUrl;

use super::{
    blocking, file, finish, recipes_flag, requirement, resolve, target_of, verify_entry, LockError,
    LockFile, LockOptions, LockReport,
};

/// Says which index pip installs from here, read through pip's own configuration (its
/// files and `PIP_INDEX_URL`), falling back to pip's built-in default.
const PIP_INDEX_PROGRAM: &str = r#"
from pip._internal.configuration import Configuration
c = Configuration(isolated=False)
c.load()
d = dict(c.items())
for k in (":env:.index-url", "install.index-url", "global.index-url"):
    if d.get(k):
        print(d[k])
        break
else:
    from pip._internal.models.index import PyPI
    print(PyPI.simple_url)
"#;

/// The index pip is configured with on this machine (`python3` with pip must be installed).
pub fn pip_index() -> Result<HttpsUrl, LockError> {
    let out = std::process::Command::new("python3")
        .args(["-c", PIP_INDEX_PROGRAM])
        .output()
        .map_err(|e| LockError::Pip {
            what: "cannot run python3 to ask pip for its index".into(),
            source: Some(e),
        })?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || said.is_empty() {
        return Err(LockError::Pip {
            what: format!(
                "pip did not say which index it uses ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            source: None,
        });
    }
    let with_slash = if said.ends_with('/') {
        said
    } else {
        format!("{said}/")
    };
    HttpsUrl::parse(&with_slash)
        .map_err(|e| LockError::Recipe(format!("pip's configured index `{with_slash}`: {e}")))
}

/// Locks an app (as loaded by `load_app_unlocked`): every package it pins by version only
/// gets its file and sha256 for the stack's Python and glibc, from `index` (pip's; needed
/// unless `opts.locked` without `opts.verify`). Entries for packages the recipe no longer
/// pins are dropped. Writes the lock atomically, only when it changed.
pub async fn lock_app(
    l: &LoadedApp,
    opts: LockOptions,
    index: Option<HttpsUrl>,
) -> Result<LockReport, LockError> {
    let name = l.app.name.to_string();
    let origin = &l.stack.origin;
    let path = file::path_for(origin, &name);
    let (_, old) = file::read(origin, &name).map_err(LockError::Recipe)?;
    let old = old.unwrap_or_default();
    let mut report = LockReport {
        file: path.display().to_string(),
        ..Default::default()
    };
    let pending: Vec<&Wheel> = l
        .app
        .python_packages
        .iter()
        .filter(|p| p.sha256.is_empty())
        .collect();
    let hashed = l.app.python_packages.len() - pending.len();
    if hashed > 0 {
        report.left.push(format!(
            "{hashed} package(s) hashed in {} itself, kept as the recipe has them",
            l.file
        ));
    }
    let target = if pending.is_empty() {
        None
    } else {
        Some(target_of(&l.stack)?)
    };
    let needs_index = !opts.locked || opts.verify;
    let index = match index {
        Some(i) => Some(i),
        None if needs_index && !pending.is_empty() => Some(pip_index()?),
        None => None,
    };
    let client = Arc::new(IndexClient::new());
    let mut new = LockFile::default();
    let mut changed = Vec::new();
    for p in pending {
        let target = target.expect("set when a package is pending");
        match file::entry_for(&old, p) {
            Some(e) => {
                if opts.verify {
                    let (i, sdist) = (index.clone(), p.sdist);
                    verify_entry(&client, e, target, sdist, i, &mut report, &mut changed).await?;
                }
                new.put(e.clone());
            }
            None if opts.locked => {
                return Err(LockError::Missing {
                    recipe: name.clone(),
                    file: report.file.clone(),
                    dir: recipes_flag(origin),
                    index: "pip's configured index".into(),
                    packages: vec![format!("{} {}", p.name, p.version)],
                })
            }
            None => {
                let i = index.clone().expect("pip's index is known when resolving");
                let (c, req) = (client.clone(), requirement(p));
                let mut e = blocking(move || resolve::resolve_one(&c, &i, &req, &target)).await?;
                report.pinned.push((
                    format!("{} {}", e.name, e.version),
                    format!(
                        "{} sha256 {} from pip's configured index",
                        e.filename, e.sha256
                    ),
                ));
                // The lock names the file, not where this machine's pip found it.
                e.index = None;
                e.url = None;
                new.put(e);
            }
        }
    }
    finish(report, changed, (&old, &new), &path, &name, opts)
}

// `load_app` lives here, beside the lock it attaches, so that `recipe` stays below `lock`.
impl Catalog {
    /// Finds, parses and validates one app recipe, with its stack and the files it names,
    /// and fills its packages' hashes from its lock: what render, list, build and push all
    /// see, so the input digest is the same in each. A package neither the recipe nor the
    /// lock hashes is bad input naming the lock and the command that writes it.
    pub fn load_app(&self, name: &str) -> Result<LoadedApp, LookupError> {
        let mut l = self.load_app_unlocked(name)?;
        let missing = attach_app_lock(&self.source, &mut l)?;
        if let Some((i, p)) = missing.first() {
            let dir = match &self.source {
                Origin::Dir(d) => format!(" --recipes {}", d.display()),
                Origin::Embedded => String::new(),
            };
            let mut names: Vec<String> = missing
                .iter()
                .take(5)
                .map(|(_, p)| format!("{} {}", p.name, p.version))
                .collect();
            if missing.len() > names.len() {
                names.push(format!("{} more", missing.len() - names.len()));
            }
            return Err(l
                .error_at(
                    &["python_packages", &i.to_string(), "version"],
                    format!(
                        "`{} {}` has no hash in the recipe nor in {} (missing or stale for: {}): run `rdna1-images{dir} lock {name}` where pip's index is reachable",
                        p.name, p.version, l.lock_file, names.join(", ")
                    ),
                )
                .into());
        }
        Ok(l)
    }
}

/// Reads the app's lock (the shipped one for an embedded app without its own) and fills the
/// hashes of the packages the recipe pins by version only; returns those still without one,
/// with their index in `python_packages`.
fn attach_app_lock(origin: &Origin, l: &mut LoadedApp) -> Result<Vec<(usize, Wheel)>, RecipeError> {
    let name = l.app.name.to_string();
    let (file, lock) = file::read(origin, &name).map_err(|m| lock_error(&m))?;
    l.lock_file = file;
    if let Some(lock) = &lock {
        file::apply_app(&mut l.app.python_packages, lock);
    }
    Ok(l.app
        .python_packages
        .iter()
        .enumerate()
        .filter(|(_, p)| p.sha256.is_empty())
        .map(|(i, p)| (i, p.clone()))
        .collect())
}

/// A lock file's error (`file:line: message`) as a recipe error with its file and line.
fn lock_error(m: &str) -> RecipeError {
    let mut parts = m.splitn(3, ": ");
    let head = parts.next().unwrap_or_default();
    let (file, line) = match head.rsplit_once(':') {
        Some((f, n)) if n.parse::<usize>().is_ok() => (f, n.parse().ok()),
        _ => (head, None),
    };
    let rest = m[head.len()..].trim_start_matches(": ");
    RecipeError {
        file: file.to_string(),
        line,
        column: None,
        field: String::new(),
        message: rest.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::app::EMBEDDED_APPS;
    use crate::recipe::EMBEDDED;

    #[test]
    fn comfyui_takes_every_hash_from_its_lock_and_refuses_without_it() {
        let raw = Catalog::embedded().load_app_unlocked("comfyui").unwrap();
        assert_eq!(raw.app.python_packages.len(), 70);
        assert!(raw.app.python_packages.iter().all(|p| p.sha256.is_empty()));
        let l = Catalog::embedded().load_app("comfyui").unwrap();
        assert!(l.app.python_packages.iter().all(|p| p.sha256.len() == 1));

        // A folder with the recipe but no lock: bad input naming the lock and the command.
        let d = tempfile::tempdir().unwrap();
        for n in ["comfyui", "therock"] {
            let (_, t) = EMBEDDED_APPS
                .iter()
                .chain(EMBEDDED.iter())
                .find(|(x, _)| *x == n)
                .unwrap();
            std::fs::write(d.path().join(format!("{n}.yaml")), t).unwrap();
        }
        let e = Catalog::dir(d.path())
            .load_app("comfyui")
            .unwrap_err()
            .to_string();
        let lock = d.path().join("comfyui.lock").display().to_string();
        assert!(
            e.contains(&lock)
                && e.contains(&format!(
                    "rdna1-images --recipes {} lock comfyui",
                    d.path().display()
                ))
                && e.contains("python_packages[0].version")
                && e.contains("65 more"),
            "{e}"
        );
        // A hostile value in it: file and line.
        let (_, t) = file::EMBEDDED_LOCKS
            .iter()
            .find(|(n, _)| *n == "comfyui")
            .unwrap();
        std::fs::write(
            d.path().join("comfyui.lock"),
            t.replacen("\nfile ", "\nfile ../", 1),
        )
        .unwrap();
        let e = Catalog::dir(d.path())
            .load_app("comfyui")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{lock}:7:")) && e.contains("not a file name"),
            "{e}"
        );
    }
}
