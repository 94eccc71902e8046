//! `clean`: the leftovers of runs that ended, never what a live run holds.

use crate::cli;
use crate::commands::Console;
use crate::commands::{Failure, Outcome};
use crate::engine::Engine;
use crate::pipeline::{self, Progress as _};

/// Removes leftovers only: containers of the tool whose owner is gone (or that stopped,
/// when their owner is on another host or unknown), and untagged images of the tool that
/// no live run holds (a run holds its recipe's lock). A live `run`, a build in progress and
/// its smoke container are kept, and said so on stderr.
pub async fn clean(a: &cli::CleanArgs, console: &mut Console) -> Outcome {
    use crate::owner::{Liveness, Owner, RunLock};
    let engine = Engine::connect().await?;
    let recipe = a.recipe.as_deref();
    let verb = if a.dry_run {
        "would remove"
    } else {
        "removing"
    };
    // The locks of the recipes whose images go, held while they go: no run of them starts
    // meanwhile. A recipe another run holds keeps its images.
    let mut locks: std::collections::HashMap<String, Result<RunLock, String>> = Default::default();
    let mut lock_of = |r: &str| -> Result<Option<String>, Failure> {
        if !locks.contains_key(r) {
            let l =
                RunLock::try_acquire(&engine.host, r, "rdna1-images clean").map_err(|source| {
                    crate::commands::EnvironmentError::ReadRunLock {
                        recipe: r.to_string(),
                        source,
                    }
                })?;
            locks.insert(r.to_string(), l);
        }
        Ok(locks[r].as_ref().err().cloned())
    };
    let mut removed = 0;
    for c in engine.managed_containers(recipe).await? {
        let owner = c.owner.as_deref().and_then(Owner::parse);
        let keep = match owner.as_ref().map(Owner::liveness) {
            Some(Liveness::Alive) => Some(format!(
                "its owner, pid {}, is running",
                owner.as_ref().map(|o| o.pid).unwrap_or_default()
            )),
            Some(Liveness::Gone) => None,
            Some(Liveness::Unknown) if c.running => Some(
                "it runs, and its owner is on another host (cannot be checked from here)".into(),
            ),
            None if c.running => Some(
                "it runs and carries no owner (made by an older version): stop it with `docker rm -f` if it is yours".into(),
            ),
            Some(Liveness::Unknown) | None => None,
        };
        let short = pipeline::short_id(&c.id);
        if let Some(why) = keep {
            console.note(&format!(
                "keeping container {short} {} ({}): {why}",
                c.name, c.state
            ));
            continue;
        }
        println!(
            "{verb} container {short} {} ({}, image {})",
            c.name,
            c.state,
            pipeline::short_id(&c.image)
        );
        removed += 1;
        if !a.dry_run {
            engine.remove_container(&c.id).await?;
        }
    }
    for (id, size, of) in engine.managed_untagged_images(recipe).await? {
        let short = pipeline::short_id(&id);
        if let Some(r) = &of {
            if let Some(holder) = lock_of(r)? {
                console.note(&format!(
                    "keeping untagged image {short} of {r}: a live run holds it ({holder})"
                ));
                continue;
            }
        }
        println!("{verb} untagged image {short} ({} MB)", size / 1_000_000);
        removed += 1;
        if !a.dry_run && !engine.remove_untagged(&id).await? {
            console.note(&format!(
                "kept untagged image {short}: a container or another image uses it"
            ));
        }
    }
    drop(locks);
    if removed == 0 {
        console.note("nothing to clean");
    }
    Ok(0)
}
