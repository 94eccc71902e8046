//! The commands that are not about a registry: list, render, check, build, smoke, lock,
//! clean, doctor, run, and [`run`], which dispatches every command.

use std::io::Write as _;

use serde::Serialize;

use crate::cli::{self, Cli, Command};
use crate::commands::{
    catalog, load_all_locked, load_locked, print_json, resolve_level, write_stdout, Console,
    Failure, Outcome,
};
use crate::context;
use crate::engine::{Engine, EngineError};
use crate::escape;
use crate::pipeline::{self, BuildOptions, BuildStatus, Progress, Subject, REPOSITORY};
use crate::recipe::{Catalog, Recipe};
use crate::render;
use crate::smoke::Level;

/// Runs the command; with `--json`, prints its one document on stdout: the result, and the
/// error when it failed (the error is also returned, for stderr and the exit code).
///
/// The command is raced against the one cancellation token ([`crate::signals`]): a SIGINT
/// or SIGTERM at any moment ends it with exit 130, and its guards' leftovers are removed by
/// `main` on the way out.
pub async fn run(cli: Cli) -> Outcome {
    if let Err(e) = crate::signals::install() {
        return Err(crate::commands::EnvironmentError::Signals(e).into());
    }
    let what = cli.command.name();
    let outcome = tokio::select! {
        biased;
        // After the signal, a commit under way ends first (signals::uninterrupted).
        _ = crate::signals::interrupted() => Err(EngineError::interrupted(what.to_string())
        .into()),
        r = dispatch(&cli) => match r {
            // A stage that saw the signal itself said so; any other error after it is one.
            Err(f) if crate::signals::cancelled() && f.code != 130 => {
                Err(EngineError::interrupted(format!("{what} ({})", f.message()))
                .into())
            }
            r => r,
        },
    };
    if cli.command.json() {
        let result = crate::ui::json::take_result();
        let message;
        let error = match &outcome {
            Ok(0) => None,
            Ok(code) => {
                message = match &cli.command {
                    Command::Build(_) => "a recipe failed its smoke test or was not reproducible: see each result's status".to_string(),
                    Command::Check(_) => "recipes with errors or unpinned inputs: see each result's errors and unpinned".to_string(),
                    Command::Smoke(_) => "the smoke test failed: see result.findings".to_string(),
                    Command::Promote(_) => "not promoted: the nightly image failed its smoke test (result.smoke.findings)".to_string(),
                    Command::Doctor(_) => "the host is not ready: see result.problems".to_string(),
                    c => format!("{} failed (exit code {code})", c.name()),
                };
                Some((message.as_str(), *code))
            }
            Err(f) => {
                message = f.message();
                Some((message.as_str(), f.code))
            }
        };
        crate::ui::json::print(&crate::ui::json::document(
            cli.command.name(),
            result,
            error,
        ));
    }
    outcome
}

async fn dispatch(cli: &Cli) -> Outcome {
    let mut console = Console::new(cli.quiet, cli.verbose);
    if let Some(o) = crate::commands::apps::dispatch(cli, &mut console).await {
        return o;
    }
    match &cli.command {
        Command::List(a) => list(cli, a.json, vec![]),
        Command::Render(a) => render_cmd(cli, a),
        Command::Check(a) => check(cli, a),
        Command::Build(a) => build(cli, a, &mut console).await,
        Command::Smoke(a) => smoke(cli, a, &mut console).await,
        Command::Clean(a) => crate::commands::clean::clean(a, &mut console).await,
        Command::Compat => crate::commands::compat::compat(&mut console).await,
        Command::Doctor(a) => doctor(cli, a).await,
        Command::Run(a) => run_cmd(cli, a, &mut console).await,
        Command::Push(a) => crate::commands::registry::push(cli, a, &mut console).await,
        Command::Pull(a) => crate::commands::registry::pull(cli, a, &mut console).await,
        Command::Promote(a) => crate::commands::registry::promote(cli, a, &mut console).await,
        Command::Lock(a) => crate::commands::lock::lock(cli, a).await,
        Command::Completions(a) => {
            let mut text = Vec::new();
            crate::ui::help::completions(a.shell, &mut text);
            write_stdout(&text)
        }
        Command::Man => {
            let mut text = Vec::new();
            crate::ui::help::man(&mut text).map_err(Failure::job)?;
            write_stdout(&text)
        }
    }
}

#[derive(Serialize)]
pub(crate) struct ListRow {
    pub name: String,
    /// `stack`, or `app` (an app on the stack named in `stack`).
    pub kind: &'static str,
    pub status: String,
    pub rocm: String,
    pub pytorch: String,
    pub python: String,
    pub install: String,
    pub gfx_target: String,
    pub hsa_override: Option<String>,
    /// None for an app: its digest covers the stack image, which `list` (no engine) cannot
    /// know.
    #[serde(serialize_with = "crate::digest_json::sha256_opt")]
    pub input_digest: Option<String>,
    pub description: String,
    /// An app's stack.
    pub stack: Option<String>,
    /// An app's note of what has and has not been verified.
    pub verified: Option<String>,
}

impl ListRow {
    /// A stack's row (an app's starts from its stack's).
    pub(crate) fn of(r: &Recipe, input_digest: Option<String>) -> ListRow {
        ListRow {
            name: r.name.to_string(),
            kind: "stack",
            status: r.status.to_string(),
            rocm: r.rocm.to_string(),
            pytorch: r.pytorch.version().to_string(),
            python: r.python.version.to_string(),
            install: r.pytorch.kind().to_string(),
            gfx_target: r.gpu.target.to_string(),
            hsa_override: r.gpu.hsa_override().map(String::from),
            input_digest,
            description: r.description.to_string(),
            stack: None,
            verified: None,
        }
    }
}

/// What `list` and `check` say about a file no recipe name can reach.
fn misnamed_message(file: &str) -> String {
    format!(
        "{} looks like a recipe but is not named `<name>.yaml` with a recipe name (lowercase letters, digits, `-` and `_`, at most 64, starting with a letter or digit): no command reads it; rename it",
        escape::value(file)
    )
}

/// Lists the stacks (a table, or with `--json` one document with `apps`' rows after them).
pub(crate) fn list(cli: &Cli, json: bool, apps: Vec<ListRow>) -> Outcome {
    let cat = catalog(cli);
    for f in cat.misnamed() {
        eprintln!("warning: {}", misnamed_message(&f));
    }
    let mut rows = Vec::new();
    for loaded in load_all_locked(&cat)? {
        let loaded = loaded?;
        let prepared = context::prepare(&loaded)?;
        rows.push(ListRow::of(&loaded.recipe, Some(prepared.digest.hex())));
    }
    if json {
        rows.extend(apps);
        print_json(&rows)?;
        return Ok(0);
    }
    let mut out = format!(
        "{:<12} {:<12} {:<6} {:<18} {:<7} {:<13} {:<10}\n",
        "NAME", "STATUS", "ROCM", "PYTORCH", "PYTHON", "INSTALL", "HSA"
    );
    for r in &rows {
        out.push_str(&format!(
            "{:<12} {:<12} {:<6} {:<18} {:<7} {:<13} {:<10}\n",
            r.name,
            r.status,
            r.rocm,
            r.pytorch,
            r.python,
            r.install,
            r.hsa_override.as_deref().unwrap_or("native")
        ));
    }
    print!("{out}");
    Ok(0)
}

pub(crate) fn render_cmd(cli: &Cli, a: &cli::RenderArgs) -> Outcome {
    if let Some(name) = &a.recipe {
        let loaded = load_locked(&catalog(cli), name)?;
        print!("{}", render::dockerfile(&loaded.recipe));
        return Ok(0);
    }
    crate::commands::render_all::render_all(cli, a)
}

#[derive(Serialize)]
struct CheckRow {
    recipe: String,
    ok: bool,
    errors: Vec<String>,
    unpinned: Vec<String>,
}

pub(crate) fn check(cli: &Cli, a: &cli::CheckArgs) -> Outcome {
    let cat = catalog(cli);
    let mut rows = Vec::new();
    let names = cat.names()?;
    for name in names {
        let mut row = CheckRow {
            recipe: name.clone(),
            ok: true,
            errors: vec![],
            unpinned: vec![],
        };
        match load_locked(&cat, &name) {
            Ok(l) => {
                if a.strict {
                    row.unpinned = crate::recipe::unpinned(&l)
                        .into_iter()
                        .map(|e| e.to_string())
                        .collect();
                }
                if let Err(e) = context::prepare(&l) {
                    row.errors.push(e.to_string());
                }
            }
            Err(e) => row.errors.push(format!("{:#}", e.error)),
        }
        row.ok = row.errors.is_empty() && row.unpinned.is_empty();
        rows.push(row);
    }
    for f in cat.misnamed() {
        rows.push(CheckRow {
            recipe: f.clone(),
            ok: false,
            errors: vec![misnamed_message(&f)],
            unpinned: vec![],
        });
    }
    let bad = rows.iter().any(|r| !r.ok);
    if a.json {
        print_json(&rows)?;
    } else {
        for r in &rows {
            // One line each: every value in it escaped, newlines included.
            if r.ok {
                println!("ok    {}", escape::value(&r.recipe));
            }
            for e in &r.errors {
                println!("error {}", escape::value(e));
            }
            for e in &r.unpinned {
                println!("unpinned {}", escape::value(e));
            }
        }
    }
    Ok(if bad { 2 } else { 0 })
}

async fn build(cli: &Cli, a: &cli::BuildArgs, console: &mut Console) -> Outcome {
    let cat = catalog(cli);
    let names = if a.all {
        // The stacks, then the apps on them (each app after the stack it needs, below).
        let mut all = cat.names()?;
        all.extend(cat.app_names()?);
        all
    } else {
        a.recipes.clone()
    };
    // Every recipe and app is validated before anything is built, and the stacks locked.
    let (app_names, stack_names): (Vec<&String>, Vec<&String>) =
        names.iter().partition(|n| cat.is_app(n));
    let mut apps = Vec::new();
    for n in app_names {
        let l = crate::commands::lock::app_for_build(&cat, n, a.locked, console).await?;
        apps.push(Subject::App(Box::new(l)));
    }
    for n in &stack_names {
        cat.load(n)?;
    }
    // Stacks first, in the order given, then the apps: an app builds on a stack's passed
    // image, which the same command may make.
    let mut subjects = Vec::new();
    for n in stack_names {
        let l = crate::commands::lock::for_build(&cat, n, a.locked, console).await?;
        subjects.push(Subject::Stack(Box::new(l)));
    }
    subjects.extend(apps);
    let level = resolve_level(a.smoke, console)?;
    let plan = crate::commands::registry::build_plan(a, console).await?;
    let engine = Engine::connect().await?;
    if let Some(plan) = plan.as_ref().filter(|_| a.push) {
        crate::commands::registry::check_before_build(&engine, plan, &subjects, console).await?;
    }
    let opts = BuildOptions {
        level,
        no_cache: a.no_cache,
        force: a.force,
        network: a.network.mode(),
        registry: plan.clone(),
        verify_reproducible: a.verify_reproducible,
    };
    let mut outcomes = Vec::new();
    let mut code = 0;
    for subject in &subjects {
        console.begin(subject.name());
        // Held through the build and its push: another run of this recipe waits.
        let held = crate::commands::hold_recipe(&engine, subject.name(), "build", console).await?;
        // An app is prepared on its stack's image now, after the stacks before it.
        let built = match subject.target(&engine).await {
            Ok(t) => pipeline::build(&engine, &t, &opts, console)
                .await
                .map(|o| (t, o)),
            Err(e) => Err(e),
        };
        let (target, mut o) = match built {
            Ok(b) => b,
            Err(e) => {
                console.summary();
                if a.json {
                    // The recipes built so far, beside the error.
                    print_json(&outcomes)?;
                }
                return Err(e.into());
            }
        };
        if matches!(o.status, BuildStatus::Failed | BuildStatus::NotReproducible) {
            code = 1;
        }
        if let Some(plan) = plan.as_ref().filter(|_| a.push) {
            let pushed =
                crate::commands::registry::push_after_build(&engine, plan, &target, &o, console)
                    .await;
            match pushed {
                Ok(p) => o.pushed = p,
                Err(e) => {
                    console.summary();
                    outcomes.push(o);
                    if a.json {
                        print_json(&outcomes)?;
                    }
                    return Err(e);
                }
            }
        }
        // Built, pushed, its guards drained: the next run of this recipe may go.
        held.release();
        if !a.json {
            print_build_outcome(&o);
        }
        console.summary();
        outcomes.push(o);
    }
    if a.json {
        print_json(&outcomes)?;
    }
    Ok(code)
}

pub(crate) fn print_build_outcome(o: &pipeline::BuildOutcome) {
    let mut out = std::io::stdout().lock();
    if let Some(s) = &o.smoke {
        let _ = writeln!(out, "{}", s.table);
    }
    let id = o
        .image_id
        .as_deref()
        .map(pipeline::short_id)
        .unwrap_or_default();
    // The three outcomes that end tagged say so in one shape.
    let tagged = match o.status {
        BuildStatus::Skipped => Some("SKIPPED, already built and tested as"),
        BuildStatus::Passed => Some("PASSED, tagged"),
        BuildStatus::Pulled => {
            Some("PULLED from the registry (same input digest, tested there), tagged")
        }
        _ => None,
    };
    if let Some(what) = tagged {
        let _ = writeln!(
            out,
            "{}: {what} {} (image {id})",
            o.recipe,
            o.tags.join(", ")
        );
        return;
    }
    let _ = match o.status {
        BuildStatus::Skipped | BuildStatus::Passed | BuildStatus::Pulled => Ok(()),
        BuildStatus::Failed => writeln!(
            out,
            "{}: FAILED the smoke test, not tagged; {}:{} was left where it was{}\n{}",
            o.recipe,
            REPOSITORY,
            o.recipe,
            if o.candidate_removed {
                "; the failed candidate image was removed"
            } else {
                ""
            },
            o.smoke
                .as_ref()
                .map(|s| s
                    .findings
                    .iter()
                    .map(|f| format!("  - {}", escape::value(f)))
                    .collect::<Vec<_>>()
                    .join("\n"))
                .unwrap_or_default()
        ),
        BuildStatus::NotReproducible => writeln!(
            out,
            "{}: NOT REPRODUCIBLE, not tagged\n{}",
            o.recipe,
            o.reproducible
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default()
        ),
        BuildStatus::Untested => writeln!(
            out,
            "{}: BUILT but NOT TESTED (--smoke skip), not tagged (image {id})",
            o.recipe
        ),
    };
}

/// The recipe an image was built from, by its label.
async fn recipe_of_image(
    cat: &Catalog,
    engine: &Engine,
    image: &str,
) -> Result<(String, Recipe), Failure> {
    let summary = engine.image(image).await?.ok_or_else(|| {
        Failure::input(anyhow::anyhow!(
            "no image {image} in the engine: build it with `rdna1-images build <recipe>`"
        ))
    })?;
    let name = summary.labels.get(crate::labels::RECIPE).ok_or_else(|| {
        Failure::input(anyhow::anyhow!(
            "image {image} has no {} label, so its smoke spec is unknown: it was not built by rdna1-images",
            crate::labels::RECIPE
        ))
    })?;
    let loaded = cat.load(name)?;
    Ok((summary.id, loaded.recipe))
}

async fn smoke(cli: &Cli, a: &cli::SmokeArgs, console: &mut Console) -> Outcome {
    let cat = catalog(cli);
    let image = if crate::recipe::is_plain_name(&a.target) && cat.load(&a.target).is_ok() {
        format!("{REPOSITORY}:{}", a.target)
    } else {
        a.target.clone()
    };
    if a.print_command {
        // From the recipe alone: no engine needed to say what would run.
        let recipe = cat.load(&a.target)?.recipe;
        let cmd = crate::smoke::command(&recipe.smoke, Level::Cpu, &recipe.python.bin);
        let words: Vec<String> = cmd.iter().map(|w| crate::quote::shell::word(w)).collect();
        println!("docker run --rm --network none {image} {}", words.join(" "));
        return Ok(0);
    }
    let level = resolve_level(a.level.into(), console)?;
    let engine = Engine::connect().await?;
    let (id, recipe) = recipe_of_image(&cat, &engine, &image).await?;
    let _held = crate::commands::hold_recipe(&engine, &recipe.name, "smoke", console).await?;
    let result = pipeline::smoke_image(&engine, &id, &recipe, level, console).await?;
    if a.json {
        print_json(&result)?;
    } else {
        println!("{}", escape::message(&result.table));
        println!(
            "{image}: smoke test ({level}) {}",
            if result.passed { "PASSED" } else { "FAILED" }
        );
        for f in &result.findings {
            println!("  - {}", escape::value(f));
        }
    }
    Ok(if result.passed { 0 } else { 1 })
}

pub(crate) fn host_report() -> Result<crate::host::HostReport, Failure> {
    let root = crate::host::HostRoot::from_env()
        .map_err(crate::commands::EnvironmentError::HostIdentity)?;
    Ok(crate::host::probe(&root))
}

async fn doctor(cli: &Cli, a: &cli::DoctorArgs) -> Outcome {
    let host = host_report()?;
    let recipes: Vec<Recipe> = catalog(cli)
        .load_all()?
        .into_iter()
        .filter_map(|l| l.ok().map(|l| l.recipe))
        .collect();
    let d = crate::doctor::diagnose(host, crate::engine::engine_status().await, &recipes);
    if a.json {
        print_json(&d)?;
    } else {
        print!("{}", crate::doctor::render_human(&d));
    }
    Ok(crate::doctor::exit_code(&d, a.focus))
}

async fn run_cmd(cli: &Cli, a: &cli::RunArgs, console: &mut Console) -> Outcome {
    use std::io::IsTerminal;
    let cat = catalog(cli);
    let recipe = cat.load(&a.recipe)?.recipe;
    let host = host_report()?;
    let mut opts = crate::run_plan::RunOptions::new(std::env::current_dir().map_err(Failure::job)?);
    opts.gpu = a.gpu;
    opts.cpu = a.cpu;
    opts.cmd = a.cmd.clone();
    opts.interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    opts.shm_size = Some(a.shm_size.clone());
    opts.network = a.network.mode().map(String::from);
    let plan = crate::run_plan::plan(&recipe, &host, &opts).map_err(|e| {
        let all: Vec<Recipe> = cat
            .load_all()
            .map(|v| {
                v.into_iter()
                    .filter_map(|l| l.ok().map(|l| l.recipe))
                    .collect()
            })
            .unwrap_or_default();
        Failure::from(crate::commands::EnvironmentError::Plan(
            e.with_fits(&all, &host),
        ))
    })?;
    if a.dry_run {
        println!("{}", crate::run_plan::docker_cli(&plan));
        return Ok(0);
    }
    for n in &plan.notes {
        console.note(n);
    }
    let engine = Engine::connect().await?;
    if engine.image(&plan.image).await?.is_none() {
        return Err(Failure::job(anyhow::anyhow!(
            "{}",
            crate::run_plan::missing_image_hint(&recipe)
        )));
    }
    run_attached(&engine, &pipeline::container_spec(&plan), plan.tty).await
}

/// Runs `spec` attached to this terminal (with a tty when `tty`) until it ends; its exit
/// code is the command's.
pub(crate) async fn run_attached(
    engine: &Engine,
    spec: &crate::engine::ContainerSpec,
    tty: bool,
) -> Outcome {
    let attach = if tty {
        crate::engine::Attach::StdinAndTty
    } else {
        crate::engine::Attach::Stdin
    };
    let code = engine.run_attached(spec, attach).await?;
    Ok(code.clamp(0, 255) as i32)
}
