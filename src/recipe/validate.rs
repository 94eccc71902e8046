//! Validation of a parsed recipe (what serde cannot say), and the unpinned-input check.

use super::*;

/// `MIOPEN_FIND_ENFORCE` values that do no search: 1 NONE, 2 DB_UPDATE, 5 DB_CLEAN. Every
/// other value (3 SEARCH, 4 SEARCH_DB_UPDATE, or one MIOpen might read as those, like `03`)
/// is refused: SEARCH made one Conv2d take over 2000 s on an RX 5600 XT.
pub(super) fn find_enforce_allowed(v: &str) -> bool {
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
pub(super) fn unique_names(
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

pub(super) fn validate(file: &str, text: &str, r: &Recipe) -> Result<(), RecipeError> {
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
    super::guards::guard(file, text, r)?;
    crate::smoke::validate_spec(&r.smoke).map_err(|(path, msg)| {
        let mut full = vec!["smoke"];
        full.extend(path.iter().map(|s| s.as_str()));
        RecipeError::at(file, text, &full, msg)
    })?;
    Ok(())
}

/// Every pip package is pinned to files by sha256 (`pip --require-hashes`), or, while the
/// recipe states `lock_pending`, at least to one version (`pending`).
pub(super) fn validate_wheels(
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
                    "package `{}` has no sha256: pip installs with --require-hashes. Give its sha256, or set `pytorch.wheels.lock_pending: <why>` so that `rdna1-images lock {recipe}` (or the first build) resolves it into {recipe}.lock",
                    p.name
                ),
            );
        }
    }
    Ok(())
}

pub(super) fn validate_base(
    file: &str,
    text: &str,
    b: &Base,
    path: &[&str],
) -> Result<(), RecipeError> {
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
                    "`{}` {} is pinned by version only, its hash is still to be locked: the lock has no file for it ({}); run `rdna1-images lock {}` (or a `build` without --locked) where {} is reachable",
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
