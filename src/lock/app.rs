//! Locking an app's Python packages: the same lock file, entries and resolver as a stack's
//! wheels, for the stack's Python and platform. The index is pip's own (its configuration,
//! `PIP_INDEX_URL` included), as when the hashes were first taken, and the lock records
//! file and sha256 only: the index host is the user's (a mirror, a proxy), and pip
//! installs from whichever it is configured with.

use std::sync::Arc;

use crate::index_client::IndexClient;
use crate::recipe::{LoadedApp, Wheel};
use crate::values::HttpsUrl;

use super::{
    blocking, file, recipes_flag, requirement, resolve, target_of, LockError, LockFile,
    LockOptions, LockReport, Recheck,
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
        .map_err(|e| {
            LockError::Recipe(format!(
                "cannot run python3 to ask pip for its index: {e}; locking an app needs python3 with pip (or set PIP_INDEX_URL and install pip)"
            ))
        })?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || said.is_empty() {
        return Err(LockError::Recipe(format!(
            "pip did not say which index it uses ({}): locking an app needs python3 with pip",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
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
                    let (c, e2, i) = (client.clone(), e.clone(), index.clone());
                    let sdist = p.sdist;
                    match blocking(move || resolve::recheck(&c, &e2, &target, sdist, i.as_ref()))
                        .await?
                    {
                        Recheck::Same => report.verified.push(format!("{} {}", e.name, e.version)),
                        Recheck::Changed { url, sha256 } => changed.push(format!(
                            "{} {}: the lock has {} ({}), pip's index now has {sha256} ({url})",
                            e.name,
                            e.version,
                            e.sha256,
                            e.shown_source()
                        )),
                        Recheck::Skipped(why) => report.skipped.push(why),
                    }
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
    if !changed.is_empty() {
        return Err(LockError::Changed {
            file: report.file,
            changed,
        });
    }
    if new != old && !opts.locked {
        file::write_atomic(&path, &new.render(&name)).map_err(LockError::Recipe)?;
    }
    Ok(report)
}
