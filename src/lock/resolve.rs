//! The general half of locking, for any list of requirements (a stack's wheels, an app's
//! requirements): requirements + index + target interpreter/platform -> lock entries, and
//! the re-check of entries against their index. Blocking (HTTP through `IndexClient`):
//! async callers run it in `spawn_blocking`.

use crate::index_client::{FetchError, IndexClient};
use crate::simple_index::{self, Target};
use crate::values::{HttpsUrl, PipName, Sha256, Version};

use super::file::LockEntry;

/// One requirement pinned by version (`name==version`), or to a URL the recipe names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub name: PipName,
    pub version: Version,
    /// A source archive instead of a wheel (pip builds it).
    pub sdist: bool,
    /// The file is this URL (hashed as it is, not looked up on the index).
    pub url: Option<HttpsUrl>,
}

fn answer(url: &str, reason: String) -> FetchError {
    FetchError::Answer {
        url: url.to_string(),
        reason,
    }
}

fn https(s: &str) -> Result<HttpsUrl, FetchError> {
    HttpsUrl::parse(s).map_err(|e| answer(s, format!("not a URL this tool installs from: {e}")))
}

/// The file pip would install for `req` on `target` from `index`, with its sha256: the
/// index's published hash when it gives one (as pip trusts it), else the file downloaded
/// and hashed.
pub fn resolve_one(
    client: &IndexClient,
    index: &HttpsUrl,
    req: &Requirement,
    target: &Target,
) -> Result<LockEntry, FetchError> {
    let (url, filename, published, size) = match &req.url {
        Some(u) => {
            let name = u
                .as_str()
                .rsplit('/')
                .next()
                .map(simple_index::percent_decode)
                .unwrap_or_default();
            (u.to_string(), name, None, None)
        }
        None => {
            let files = client.project_files(index.as_str(), req.name.as_str())?;
            let f = simple_index::choose(
                &files,
                req.name.as_str(),
                req.version.as_str(),
                target,
                req.sdist,
            )
            .map_err(|e| answer(index.as_str(), e))?;
            (f.url.clone(), f.filename.clone(), f.sha256.clone(), f.size)
        }
    };
    let (sha, size) = match published {
        Some(h) => (h, size),
        None => {
            let (h, n) = client.sha256_and_size(&url)?;
            (h, Some(n))
        }
    };
    let filename = filename.trim().to_string();
    if filename.is_empty()
        || filename.contains(['/', '\\'])
        || filename.contains(char::is_whitespace)
    {
        return Err(answer(&url, format!("`{filename}` is not a file name")));
    }
    Ok(LockEntry {
        name: req.name.clone(),
        version: req.version.clone(),
        index: Some(index.clone()),
        filename,
        url: Some(https(&url)?),
        size,
        sha256: Sha256::parse(&sha).map_err(|e| answer(&url, e))?,
    })
}

/// Every requirement resolved, in order; the first failure stops it.
pub fn resolve(
    client: &IndexClient,
    index: &HttpsUrl,
    reqs: &[Requirement],
    target: &Target,
) -> Result<Vec<LockEntry>, FetchError> {
    reqs.iter()
        .map(|r| resolve_one(client, index, r, target))
        .collect()
}

/// What the index says now about one locked file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recheck {
    /// The same file with the same hash.
    Same,
    /// Another file or another hash for the same version: (url, sha256) now.
    Changed { url: String, sha256: String },
    /// Not checked, and why (a URL off the index: nothing there to compare it with).
    Skipped(String),
}

/// Whether `url` is a file of the index (same scheme, host and port).
pub fn on_index(url: &str, index: &str) -> bool {
    match (url::Url::parse(url), url::Url::parse(index)) {
        (Ok(u), Ok(i)) => u.origin() == i.origin(),
        _ => false,
    }
}

/// Re-checks a locked file against its index for `target`: a stack's entry on the index it
/// records, an app's (no index recorded) on `pip_index`, pip's configured one, by file name
/// and hash.
pub fn recheck(
    client: &IndexClient,
    e: &LockEntry,
    target: &Target,
    sdist: bool,
    pip_index: Option<&HttpsUrl>,
) -> Result<Recheck, FetchError> {
    let index = match (&e.index, &e.url) {
        (Some(index), Some(url)) => {
            if !on_index(url.as_str(), index.as_str()) {
                return Ok(Recheck::Skipped(format!(
                    "{} {}: {url} is not on the index {index}, so there is nothing to compare it with",
                    e.name, e.version
                )));
            }
            index
        }
        _ => match pip_index {
            Some(i) => i,
            None => {
                return Ok(Recheck::Skipped(format!(
                "{} {}: locked for pip's configured index, and none was given to compare it with",
                e.name, e.version
            )))
            }
        },
    };
    let req = Requirement {
        name: e.name.clone(),
        version: e.version.clone(),
        sdist,
        url: None,
    };
    let now = resolve_one(client, index, &req, target)?;
    let same_file = match &e.url {
        Some(u) => now.url.as_ref() == Some(u),
        None => now.filename == e.filename,
    };
    Ok(if same_file && now.sha256 == e.sha256 {
        Recheck::Same
    } else {
        Recheck::Changed {
            url: now.url.map(|u| u.to_string()).unwrap_or(now.filename),
            sha256: now.sha256.to_string(),
        }
    })
}
