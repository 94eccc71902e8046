//! The `push`, `pull` and `promote` commands, and the registry steps of `build`
//! (`--push`, pull-or-build). The work is in `distribute`; this turns it into output and
//! exit codes.

use std::io::Write as _;

use crate::cli::{self, Cli, PromoteLevel, RegistryArgs, SmokeChoice};
use crate::commands::{catalog, print_json, Console, Failure, Outcome};
use crate::engine::Engine;
use crate::pipeline::distribute::{self, DistError, PullOutcome};
use crate::pipeline::{self, BuildOutcome, BuildStatus, Progress};
use crate::pipeline::{RegistryPlan, Remote, Subject, Target};
use crate::recipe::Catalog;
use crate::registry;
use crate::smoke::Level;

async fn remote(a: &RegistryArgs, console: &mut Console) -> Result<Remote, Failure> {
    let remote = distribute::remote(&a.registry, a.password_stdin).await?;
    match &remote.creds {
        Some(c) => console.note(&format!(
            "registry {}: logging in as {} (from {})",
            remote.repo,
            c.who(),
            c.source
        )),
        None => console.note(&format!(
            "registry {}: no credentials configured, anonymous access",
            remote.repo
        )),
    }
    Ok(remote)
}

/// The stack (with its lock applied) or the app a registry command names.
pub(crate) fn load_subject(cat: &Catalog, name: &str) -> Result<Subject, Failure> {
    Ok(if cat.is_app(name) {
        Subject::App(Box::new(cat.load_app(name)?))
    } else {
        Subject::Stack(Box::new(crate::commands::load_locked(cat, name)?))
    })
}

pub async fn push(cli: &Cli, a: &cli::PushArgs, console: &mut Console) -> Outcome {
    let subject = load_subject(&catalog(cli), &a.recipe)?;
    let remote = remote(&a.registry, console).await?;
    let engine = Engine::connect().await?;
    let _held = crate::commands::hold_recipe(&engine, subject.name(), "push", console).await?;
    let target = subject.target(&engine).await?;
    let o = distribute::push(&engine, &remote, &target, a.channel, console).await?;
    if a.json {
        print_json(&o)?;
    } else {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "{}: pushed image {} (passed the {} smoke test), report {}",
            o.recipe,
            pipeline::short_id(&o.image_id),
            o.level,
            o.report.reference
        );
        for t in &o.tags {
            let _ = writeln!(out, "  {} @ {}", t.reference, t.digest);
        }
    }
    Ok(0)
}

pub async fn pull(cli: &Cli, a: &cli::PullArgs, console: &mut Console) -> Outcome {
    let subject = load_subject(&catalog(cli), &a.recipe)?;
    let tag = match &a.tag {
        Some(t) => {
            registry::validate_tag(t).map_err(Failure::input)?;
            t.clone()
        }
        None => a.channel.tag(&a.recipe),
    };
    let remote = remote(&a.registry, console).await?;
    let engine = Engine::connect().await?;
    let _held = crate::commands::hold_recipe(&engine, subject.name(), "pull", console).await?;
    // An app's input digest covers the stack image: its stack is pulled (or built) first.
    let target = subject.target(&engine).await?;
    let o = distribute::pull(&engine, &remote, &target, &tag, console).await?;
    if a.json {
        print_json(&o)?;
    } else {
        print_pull(&o);
    }
    Ok(0)
}

fn print_pull(o: &PullOutcome) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{}: pulled {} @ {} (image {}), tagged {}",
        o.recipe,
        o.reference,
        o.manifest_digest.as_deref().unwrap_or("unknown digest"),
        pipeline::short_id(&o.image_id),
        o.tags.join(", ")
    );
    let theirs = o.input_digest.as_deref().unwrap_or("none");
    if o.same_inputs {
        let _ = writeln!(
            out,
            "  same inputs as the local recipe (input digest {theirs})"
        );
    } else {
        let _ = writeln!(
            out,
            "  built from a different recipe version: the image's input digest is {theirs}, the local recipe's is {}",
            o.local_input_digest
        );
    }
    match &o.tested {
        Some(t) => {
            let _ = writeln!(
                out,
                "  smoke test: passed at the {} level on {} (report {})",
                t.level, t.tested_at, t.report
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  smoke test: NO report for this image in the registry: treat it as untested (`rdna1-images smoke {}` tests it here)",
                o.recipe
            );
        }
    }
}

pub async fn promote(cli: &Cli, a: &cli::PromoteArgs, console: &mut Console) -> Outcome {
    let subject = load_subject(&catalog(cli), &a.recipe)?;
    if let Some(given) = &a.image {
        // A moving tag is bad input, said before anything else is looked at.
        distribute::pinned_digest(given)?;
    }
    let level = match a.smoke {
        PromoteLevel::Gpu => crate::commands::resolve_level(SmokeChoice::Gpu, console)?,
        PromoteLevel::Cpu => {
            if std::env::var("RDNA1_IMAGES_ALLOW_CPU_PROMOTE").as_deref() != Ok("1") {
                return Err(Failure::input(anyhow::anyhow!(
                    "promote --smoke cpu is for the tool's own tests (it needs RDNA1_IMAGES_ALLOW_CPU_PROMOTE=1): stable tags are for images that passed the gpu smoke test"
                )));
            }
            console.note(
                "WARNING: promote --smoke cpu (test mode): the stable tags move on a CPU-only smoke test, and its report says cpu",
            );
            Level::Cpu
        }
    };
    let remote = remote(&a.registry, console).await?;
    let engine = Engine::connect().await?;
    let _held = crate::commands::hold_recipe(&engine, subject.name(), "promote", console).await?;
    let target = subject.target(&engine).await?;
    let o = distribute::promote(
        &engine,
        &remote,
        &target,
        level,
        a.image.as_deref(),
        console,
    )
    .await?;
    if a.json {
        print_json(&o)?;
    } else {
        let mut out = std::io::stdout().lock();
        if let Some(s) = &o.smoke {
            let _ = writeln!(out, "{}", s.table);
        }
        if o.promoted {
            let _ = writeln!(
                out,
                "{}: PROMOTED {} (image {}, passed the {} smoke test); stable tags:",
                o.recipe,
                o.nightly,
                pipeline::short_id(&o.image_id),
                o.level
            );
            for t in &o.tags {
                let _ = writeln!(out, "  {} @ {}", t.reference, t.digest);
            }
        } else {
            let _ = writeln!(
                out,
                "{}: NOT PROMOTED: {} failed the {} smoke test; the stable tag {} stays where it was ({})",
                o.recipe,
                o.nightly,
                o.level,
                remote.repo.reference(&o.recipe),
                o.stable_before.as_deref().unwrap_or("not set")
            );
            if let Some(s) = &o.smoke {
                for f in &s.findings {
                    let _ = writeln!(out, "  - {}", crate::escape::value(f));
                }
            }
        }
    }
    Ok(if o.promoted { 0 } else { 1 })
}

/// The registry plan of `build`: pull-or-build unless `--no-pull`, and the registry to push
/// to with `--push`. None when neither applies.
pub async fn build_plan(
    a: &cli::BuildArgs,
    console: &mut Console,
) -> Result<Option<RegistryPlan>, Failure> {
    if a.no_pull && !a.push {
        return Ok(None);
    }
    let remote = if a.push {
        remote(&a.registry, console).await?
    } else {
        // Pull-or-build is an optimisation: credentials that cannot be read only cost it.
        match distribute::remote(&a.registry.registry, a.registry.password_stdin).await {
            Ok(r) => r,
            Err(DistError::Credentials(m)) => {
                console.note(&format!("{m}; not asking the registry, building"));
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        }
    };
    Ok(Some(RegistryPlan {
        remote,
        pull: !a.no_pull,
    }))
}

/// With `--push`: the registry must answer and accept the credentials before hours of
/// building, not after.
pub async fn check_before_build(
    engine: &Engine,
    plan: &RegistryPlan,
    subjects: &[Subject],
    console: &mut Console,
) -> Result<(), Failure> {
    for s in subjects {
        // A stack's digest tag; an app's moving tag (its digest needs its stack built).
        let tag = match s {
            Subject::Stack(l) => {
                let prepared = crate::context::prepare(l)?;
                pipeline::tags(&l.recipe.name, &prepared.digest).1
            }
            Subject::App(_) => s.name().to_string(),
        };
        let reference = plan.remote.repo.reference(&tag);
        engine
            .registry_digest(&reference, plan.remote.creds.as_ref())
            .await?;
    }
    console.note(&format!(
        "registry {} answers and accepts the credentials: the push after the build can proceed",
        plan.remote.repo
    ));
    Ok(())
}

/// `build --push`: pushes what passed (or was already tested here or pulled), and says
/// what it pushed: every reference with its digest (the smoke report's too).
pub async fn push_after_build(
    engine: &Engine,
    plan: &RegistryPlan,
    target: &Target<'_>,
    outcome: &BuildOutcome,
    console: &mut Console,
) -> Result<Option<Vec<pipeline::PushedTag>>, Failure> {
    match outcome.status {
        BuildStatus::Passed | BuildStatus::Skipped | BuildStatus::Pulled => {
            let started = std::time::Instant::now();
            console.stage_started(pipeline::Stage::Push, &plan.remote.repo.to_string());
            let o = distribute::push(engine, &plan.remote, target, None, console).await;
            console.stage(pipeline::Stage::Push, started.elapsed().as_secs_f64());
            let o = o?;
            console.note(&format!(
                "{}: pushed {}",
                o.recipe,
                o.tags
                    .iter()
                    .map(|t| format!("{} @ {}", t.reference, t.digest))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let mut pushed = o.tags;
            pushed.push(o.report);
            Ok(Some(pushed))
        }
        BuildStatus::Failed | BuildStatus::Untested | BuildStatus::NotReproducible => {
            console.note(&format!(
                "{}: not pushed: only an image that passed its smoke test is pushed",
                outcome.recipe
            ));
            Ok(Some(vec![]))
        }
    }
}
