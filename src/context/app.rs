//! An app's build context and input digest (pure): the rendered Dockerfile, the lock, the
//! build guard and the checks, the files the recipe names; the digest over those, the
//! stack image's id and both smoke specs.

use std::collections::BTreeMap;

use super::{Context, ContextFile, Prepared};
use crate::recipe::app::{AppSource, LoadedApp};
use crate::render::app::{dockerfile, requirements, stack_tag, APP_BUILD, APP_CHECKS, STACK_ARG};

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// The build context of an app: Dockerfile, the lock, the build guard, the checks, and the
/// files the recipe names.
pub fn context(l: &LoadedApp) -> Context {
    let mut files = BTreeMap::new();
    let mut add = |path: String, data: Vec<u8>, mode: u32| {
        files.insert(path, ContextFile { data, mode });
    };
    add("Dockerfile".into(), dockerfile(l).into_bytes(), 0o644);
    add(
        "app/requirements.txt".into(),
        requirements(l).into_bytes(),
        0o644,
    );
    add(
        "app/app_build.py".into(),
        APP_BUILD.as_bytes().to_vec(),
        0o644,
    );
    add(
        "app/app_checks.py".into(),
        APP_CHECKS.as_bytes().to_vec(),
        0o644,
    );
    for w in &l.app.wheel_files {
        add(
            format!("app/wheels/{}", basename(w)),
            l.inputs[w].clone(),
            0o644,
        );
    }
    if let Some(w) = &l.app.pip_wheel {
        add(
            format!("app/pip/{}", basename(w)),
            l.inputs[w].clone(),
            0o644,
        );
    }
    if let AppSource::Files(fs) = &l.app.source {
        for f in fs {
            add(
                format!("source/{}", basename(f)),
                l.inputs[f].clone(),
                0o644,
            );
        }
    }
    Context {
        files,
        dockerfile: "Dockerfile".into(),
        epoch: l.app.source_date_epoch,
    }
}

/// Packs and digests an app for one stack image: `stack_id` (`sha256:<hex>`) and
/// `stack_ref`, the stack's tag that never moves (`rdna1-images:<stack>-<digest12>`), which
/// the build's FROM uses (BuildKit resolves a tag from the local store, an image id it
/// would look up on Docker Hub). The digest covers the context, the stack image id, and
/// both smoke specs (the stack's suite runs again in the app image).
pub fn prepare(
    l: &LoadedApp,
    stack_id: &str,
    stack_ref: &str,
) -> Result<Prepared, crate::recipe::RecipeError> {
    let base = format!("{}@{stack_id}", stack_tag(l));
    let spec = format!(
        "{}\n{}",
        serde_json::to_string(&l.stack.recipe.smoke).expect("the smoke spec serializes"),
        serde_json::to_string(&l.app.smoke).expect("the app smoke spec serializes")
    );
    let mut prepared =
        Prepared::assemble(context(l), &[(STACK_ARG, stack_ref)], base, &spec, |m| {
            l.error_at(&["files"], m)
        })?;
    // A puller checks the stack image an app was built on against its own (the input
    // digest covers it, but cannot be read back).
    prepared
        .labels
        .insert(crate::labels::STACK_IMAGE.to_string(), stack_id.to_string());
    Ok(prepared)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::Catalog;

    #[test]
    fn a_new_stack_image_is_a_new_app_digest() {
        let l = Catalog::embedded().load_app("comfyui").unwrap();
        let r = "rdna1-images:therock-0123456789ab";
        let a = prepare(&l, &format!("sha256:{}", "a".repeat(64)), r).unwrap();
        let b = prepare(&l, &format!("sha256:{}", "b".repeat(64)), r).unwrap();
        assert_ne!(a.digest, b.digest);
        let again = prepare(&l, &format!("sha256:{}", "a".repeat(64)), r).unwrap();
        assert_eq!(a.digest, again.digest);
        assert_eq!(a.build_args["STACK_IMAGE"], r);
    }
}
