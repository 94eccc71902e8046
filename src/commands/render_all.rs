//! `render --all --write` and `--check`: the rendered files of every recipe against the
//! output folder, through [`crate::out_folder`] so nothing planted there is followed.

use crate::cli::{self, Cli};
use crate::commands::{catalog, Failure, Outcome};
use crate::context;
use crate::escape;
use crate::out_folder::{OutError, OutFolder, MAX_READ};

/// The files `render --write` commits for one recipe: `<name>.Dockerfile` and the rest of
/// its build context under `<name>/`, so `docker build -f X.Dockerfile X` works.
fn rendered_files(loaded: &crate::recipe::Loaded) -> Result<Vec<(String, Vec<u8>)>, Failure> {
    let ctx = context::Context::for_recipe(loaded)?;
    Ok(committed_files(ctx, loaded.recipe.name.as_str()))
}

/// A build context as the files `render --write` commits: its Dockerfile as
/// `<name>.Dockerfile`, the rest under `<name>/` (stacks and apps alike).
pub(crate) fn committed_files(ctx: context::Context, name: &str) -> Vec<(String, Vec<u8>)> {
    ctx.files
        .into_iter()
        .map(|(path, f)| {
            if path == ctx.dockerfile {
                (format!("{name}.Dockerfile"), f.data)
            } else {
                (format!("{name}/{path}"), f.data)
            }
        })
        .collect()
}

/// A planted link, FIFO or device is bad input in the output folder: exit 2, named.
fn planted(e: OutError) -> Failure {
    Failure::input(e)
}

pub(crate) fn render_all(cli: &Cli, a: &cli::RenderArgs) -> Outcome {
    let cat = catalog(cli);
    let shown = a.out.display().to_string();
    let shown = escape::value(&shown);
    let out = match OutFolder::open(&a.out, a.write) {
        Ok(o) => Some(o),
        // A missing folder is drift for --check (every file is missing).
        Err(_) if !a.write && std::fs::symlink_metadata(&a.out).is_err() => None,
        Err(e) => return Err(planted(e)),
    };
    // Stacks and apps: each recipe's files, and the recipe file they come from.
    let mut items = Vec::new();
    for loaded in crate::commands::load_all_locked(&cat)? {
        let loaded = loaded?;
        items.push((loaded.recipe.name.to_string(), rendered_files(&loaded)?));
    }
    for l in crate::commands::apps::load_apps(&cat)? {
        items.push((
            l.app.name.to_string(),
            crate::commands::apps::rendered_files(&l),
        ));
    }
    let mut drift = Vec::new();
    for (name, want) in items {
        let Some(out) = &out else {
            for (path, _) in &want {
                drift.push(format!("{shown}/{}: missing", escape::value(path)));
            }
            continue;
        };
        let present = out.files_under(&name).map_err(planted)?;
        let stale: Vec<&String> = present
            .iter()
            .filter(|p| !want.iter().any(|(w, _)| w == *p))
            .collect();
        if a.write {
            for s in stale {
                out.remove(s).map_err(planted)?;
            }
            for (path, data) in &want {
                let limit = (data.len() as u64).min(MAX_READ);
                if out.read(path, limit).map_err(planted)?.as_deref() != Some(data.as_slice()) {
                    out.write(path, data).map_err(planted)?;
                    eprintln!("wrote {shown}/{}", escape::value(path));
                }
            }
            continue;
        }
        for (path, data) in &want {
            let limit = (data.len() as u64).min(MAX_READ);
            match out.read(path, limit).map_err(planted)? {
                Some(have) if &have == data => {}
                Some(_) => drift.push(format!(
                    "{shown}/{}: differs from recipes/{name}.yaml",
                    escape::value(path)
                )),
                None => drift.push(format!("{shown}/{}: missing", escape::value(path))),
            }
        }
        for s in stale {
            drift.push(format!(
                "{shown}/{}: not produced by any recipe",
                escape::value(s)
            ));
        }
    }
    if drift.is_empty() {
        if a.check && !cli.quiet {
            eprintln!("rendered files in {shown} match the recipes");
        }
        return Ok(0);
    }
    for d in &drift {
        eprintln!("drift: {d}");
    }
    eprintln!("run `rdna1-images render --all --write` and commit the result");
    Ok(1)
}
