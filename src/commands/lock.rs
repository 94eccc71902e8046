//! `lock`, and the lock step of `build`: a recipe's lock resolved, verified or refused.

use crate::cli::{self, Cli};
use crate::commands::{catalog, print_json, Console, Failure, Outcome};
use crate::engine::Engine;
use crate::pipeline::Progress as _;
use crate::recipe::Catalog;

/// No image is ever built from unhashed wheels. A recipe pins versions; its lock gives each
/// its file and hash. With `--locked` a missing entry is bad input naming the packages;
/// without, the lock is resolved from the recipe's index, written, and said loudly.
pub(crate) async fn for_build(
    cat: &Catalog,
    name: &str,
    locked: bool,
    console: &mut Console,
) -> Result<crate::recipe::Loaded, Failure> {
    let mut l = cat.load(name)?;
    let attached = crate::lock::attach(&mut l)?;
    if attached.missing.is_empty() {
        return Ok(l);
    }
    if locked {
        return Err(crate::lock::require_complete(&l, &attached)
            .expect_err("packages are missing")
            .into());
    }
    let raw = cat.load(name)?;
    let index = match &raw.recipe.pytorch {
        crate::recipe::PyTorch::Wheels(w) => w.index.to_string(),
        _ => String::new(),
    };
    console.note(&format!(
        "LOCK: {} pins {} package(s) by version only and {} has no file for them: resolving them on {index} now (--locked forbids this)",
        raw.recipe.name,
        attached.missing.len(),
        attached.file
    ));
    let report = crate::lock::lock(&raw, crate::lock::LockOptions::default(), None).await?;
    say_written(&report, console);
    let mut l = cat.load(name)?;
    let attached = crate::lock::attach(&mut l)?;
    crate::lock::require_complete(&l, &attached)?;
    Ok(l)
}

/// An app's lock for `build`: as it is with `--locked` (a missing or stale entry is bad
/// input naming the lock and the command to run), else completed first from pip's index,
/// said loudly, as for a stack.
pub(crate) async fn app_for_build(
    cat: &Catalog,
    name: &str,
    locked: bool,
    console: &mut Console,
) -> Result<crate::recipe::LoadedApp, Failure> {
    let first = cat.load_app(name);
    if locked || first.is_ok() {
        return Ok(first?);
    }
    let raw = cat.load_app_unlocked(name)?;
    console.note(&format!(
        "LOCK: {} pins packages by version only that {} has no file for: resolving them on pip's configured index now (--locked forbids this)",
        raw.app.name,
        crate::lock::file::path_for(&raw.stack.origin, name).display()
    ));
    let report =
        crate::lock::app::lock_app(&raw, crate::lock::LockOptions::default(), None).await?;
    say_written(&report, console);
    Ok(cat.load_app(name)?)
}

/// The `LOCK:` lines of a build that had to complete its lock.
fn say_written(report: &crate::lock::LockReport, console: &mut Console) {
    for (what, file) in &report.pinned {
        console.note(&format!("LOCK: pinned {what}: {file}"));
    }
    console.note(&format!(
        "LOCK: wrote {} ({} new entries); later builds use it as it is",
        report.file,
        report.pinned.len()
    ));
}

pub(crate) async fn lock(cli: &Cli, a: &cli::LockArgs) -> Outcome {
    let cat = catalog(cli);
    let opts = crate::lock::LockOptions {
        verify: a.verify,
        locked: a.locked,
    };
    if cat.is_app(&a.recipe) {
        let raw = cat.load_app_unlocked(&a.recipe)?;
        let report = crate::lock::app::lock_app(&raw, opts, None).await?;
        return print_report(&report, a.json);
    }
    let loaded = cat.load(&a.recipe)?;
    let engine = Engine::connect().await.ok();
    // The base's digest, asked of the registry through the engine when one answers.
    let base = match &engine {
        Some(e) => Some(
            e.resolve_digest(loaded.recipe.base.image.as_ref())
                .await
                .map_err(|x| crate::error_chain::text(&x)),
        ),
        None => Some(Err(
            "no Docker engine answers to ask the registry".to_string()
        )),
    };
    let report = crate::lock::lock(&loaded, opts, base).await?;
    print_report(&report, a.json)
}

fn print_report(report: &crate::lock::LockReport, json: bool) -> Outcome {
    if json {
        print_json(report)?;
    } else {
        for (field, value) in &report.pinned {
            println!("pinned {}: {field} = {value}", report.file);
        }
        for l in &report.left {
            println!("left   {}: {l}", report.file);
        }
        for v in &report.verified {
            println!(
                "same   {}: {v} (the index still serves the pinned file)",
                report.file
            );
        }
        for v in &report.skipped {
            println!("skip   {}: {v}", report.file);
        }
        if report.pinned.is_empty() {
            println!("{}: nothing to pin", report.file);
        }
    }
    Ok(0)
}
