//! The build context: every file the Dockerfile uses, as a deterministic tar, and the input
//! digest that names what decides the image.
//!
//! Same recipe, same bytes: entries sorted, mtimes set to SOURCE_DATE_EPOCH, owner root,
//! modes fixed. `COPY` keeps those mtimes, so the layers it makes do not change per checkout.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::recipe::{Loaded, PyTorch, RecipeError};
use crate::render;
use crate::smoke;

pub mod app;

/// The files of a build context, by path inside the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub files: BTreeMap<String, ContextFile>,
    /// The Dockerfile's path inside the context.
    pub dockerfile: String,
    /// mtime of every entry.
    pub epoch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextFile {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// sha256 over what decides the image: the context tar, the build args and the base image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InputDigest(pub [u8; 32]);

impl InputDigest {
    pub fn hex(&self) -> String {
        crate::hex::encode(self.0)
    }
    /// Parses the 64 lowercase hex digits of [`InputDigest::hex`] (as an image's input
    /// digest label carries them, maybe with `sha256:` before): None for anything else.
    pub fn from_hex(text: &str) -> Option<InputDigest> {
        crate::hex::decode_sha256(text.strip_prefix("sha256:").unwrap_or(text)).map(InputDigest)
    }
    /// The 12 hex digits used in the immutable tag `<recipe>-<digest12>`.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
}

impl fmt::Display for InputDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

/// Everything a build needs from the pure core.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub context: Context,
    pub tar: Vec<u8>,
    pub build_args: BTreeMap<String, String>,
    pub base: String,
    pub digest: InputDigest,
    /// Labels the build sets beside the input digest (an app's: the stack image it is on).
    pub labels: BTreeMap<String, String>,
}

impl Prepared {
    /// Packs `context` and digests it with the SOURCE_DATE_EPOCH build arg, `extra_args`,
    /// the base reference and the smoke spec: the one recipe for stacks and apps.
    pub fn assemble(
        context: Context,
        extra_args: &[(&str, &str)],
        base: String,
        smoke_spec: &str,
        tar_error: impl FnOnce(String) -> RecipeError,
    ) -> Result<Prepared, RecipeError> {
        let tar = context.tar().map_err(tar_error)?;
        let mut build_args = BTreeMap::new();
        build_args.insert("SOURCE_DATE_EPOCH".to_string(), context.epoch.to_string());
        for (k, v) in extra_args {
            build_args.insert(k.to_string(), v.to_string());
        }
        let digest = input_digest(&tar, &build_args, &base, smoke_spec);
        Ok(Prepared {
            context,
            tar,
            build_args,
            base,
            digest,
            labels: BTreeMap::new(),
        })
    }
}

impl Context {
    /// Assembles the context of a loaded recipe: Dockerfile, smoke program, pip lock,
    /// patches and extra files.
    pub fn for_recipe(loaded: &Loaded) -> Result<Context, RecipeError> {
        let r = &loaded.recipe;
        let mut files = BTreeMap::new();
        let mut add = |path: String, data: Vec<u8>| {
            files.insert(path, ContextFile { data, mode: 0o644 });
        };
        add("Dockerfile".into(), render::dockerfile(r).into_bytes());
        add("smoke.py".into(), smoke::PROGRAM.as_bytes().to_vec());
        match &r.pytorch {
            PyTorch::Wheels(w) => {
                add(
                    render::REQUIREMENTS.into(),
                    render::requirements(&w.packages).into_bytes(),
                );
                if !w.build_requirements.is_empty() {
                    add(
                        render::BUILD_REQUIREMENTS.into(),
                        render::requirements(&w.build_requirements).into_bytes(),
                    );
                }
            }
            PyTorch::Source(s) => {
                if !s.build_requirements.is_empty() {
                    add(
                        render::BUILD_REQUIREMENTS.into(),
                        render::requirements(&s.build_requirements).into_bytes(),
                    );
                }
                if !s.requirements.is_empty() {
                    add(
                        render::REQUIREMENTS.into(),
                        render::requirements(&s.requirements).into_bytes(),
                    );
                }
                // Basenames are unique: `recipe` refuses two patches with one name.
                for p in &s.patches {
                    let name = p.rsplit('/').next().unwrap_or(p);
                    add(format!("patches/{name}"), loaded.read_file(p)?);
                }
            }
            PyTorch::Preinstalled(_) => {}
        }
        for f in &r.files {
            add(format!("files/{f}"), loaded.read_file(f)?);
        }
        Ok(Context {
            files,
            dockerfile: "Dockerfile".into(),
            epoch: r.source_date_epoch,
        })
    }

    /// The context as an uncompressed tar with sorted entries, explicit parent folders, and
    /// fixed mtime, owner and modes. Every path goes into its ustar header as
    /// [`crate::recipe_files::fits_tar`] checks it (the recipe's validation refuses the
    /// others), so the error is for a context built by hand.
    pub fn tar(&self) -> Result<Vec<u8>, String> {
        let mut b = tar::Builder::new(Vec::new());
        let mut dirs = std::collections::BTreeSet::new();
        for path in self.files.keys() {
            let mut p = path.as_str();
            while let Some(i) = p.rfind('/') {
                p = &p[..i];
                dirs.insert(p.to_string());
            }
        }
        // Folders and files in one sorted order, each folder before its contents.
        let mut entries: Vec<(String, Option<&ContextFile>)> =
            dirs.into_iter().map(|d| (format!("{d}/"), None)).collect();
        entries.extend(self.files.iter().map(|(p, f)| (p.clone(), Some(f))));
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, file) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_mtime(self.epoch);
            h.set_uid(0);
            h.set_gid(0);
            match file {
                Some(f) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(f.mode);
                    h.set_size(f.data.len() as u64);
                    set_path(&mut h, &path)?;
                    h.set_cksum();
                    b.append(&h, f.data.as_slice()).map_err(|e| e.to_string())?;
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(0o755);
                    h.set_size(0);
                    set_path(&mut h, &path)?;
                    h.set_cksum();
                    b.append(&h, std::io::empty()).map_err(|e| e.to_string())?;
                }
            }
        }
        b.into_inner().map_err(|e| e.to_string())
    }
}

fn set_path(h: &mut tar::Header, path: &str) -> Result<(), String> {
    crate::recipe_files::fits_tar(path)?;
    h.set_path(path).map_err(|e| e.to_string())
}

/// The input digest: a versioned, line-based preimage so a change of any part changes it.
///
/// The smoke spec is part of it although it does not change the image: the digest tag means
/// "built from these inputs and passed this test", so a stricter test must not be skipped.
pub fn input_digest(
    tar: &[u8],
    build_args: &BTreeMap<String, String>,
    base: &str,
    smoke_spec: &str,
) -> InputDigest {
    let mut h = Sha256::new();
    h.update(b"rdna1-images input digest v1\n");
    h.update(format!("context-sha256 {:x}\n", Sha256::digest(tar)));
    h.update(format!("base {base}\n"));
    h.update(format!("smoke-spec {}:{smoke_spec}\n", smoke_spec.len()));
    for (k, v) in build_args {
        h.update(format!("build-arg {}={}\n", k.len(), k));
        h.update(format!("{}:{v}\n", v.len()));
    }
    InputDigest(h.finalize().into())
}

/// Renders, packs and digests a recipe: all the pure work before a build.
pub fn prepare(loaded: &Loaded) -> Result<Prepared, RecipeError> {
    let context = Context::for_recipe(loaded)?;
    let spec = serde_json::to_string(&loaded.recipe.smoke).expect("the smoke spec serializes");
    Prepared::assemble(context, &[], loaded.recipe.base.reference(), &spec, |m| {
        loaded.error_at(&["files"], m)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::Catalog;

    #[test]
    fn tar_is_deterministic_and_sorted() {
        let loaded = Catalog::embedded().load("rocm62").unwrap();
        let a = prepare(&loaded).unwrap();
        let b = prepare(&loaded).unwrap();
        assert_eq!(a.tar, b.tar);
        assert_eq!(a.digest, b.digest);
        let mut ar = tar::Archive::new(a.tar.as_slice());
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                assert_eq!(e.header().mtime().unwrap(), loaded.recipe.source_date_epoch);
                assert_eq!(e.header().uid().unwrap(), 0);
                e.path().unwrap().display().to_string()
            })
            .collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert!(names.contains(&"patches/".to_string()), "{names:?}");
        assert!(names.iter().any(|n| n.starts_with("patches/pytorch-2.4.1")));
    }

    #[test]
    fn digest_changes_with_each_input() {
        let tar = b"abc".to_vec();
        let args: BTreeMap<String, String> = [("A".to_string(), "1".to_string())].into();
        let d = input_digest(&tar, &args, "base:1", "{}");
        assert_ne!(d, input_digest(b"abd", &args, "base:1", "{}"));
        assert_ne!(d, input_digest(&tar, &BTreeMap::new(), "base:1", "{}"));
        assert_ne!(d, input_digest(&tar, &args, "base:2", "{}"));
        assert_ne!(d, input_digest(&tar, &args, "base:1", "{\"a\":1}"));
        assert_eq!(d, input_digest(&tar, &args, "base:1", "{}"));
        assert_eq!(d.short().len(), 12);
        assert!(d.hex().starts_with(&d.short()));
    }
}
