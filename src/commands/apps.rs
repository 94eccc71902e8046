//! The commands for app recipes (`kind: app`): `list`, `render`, `check` and `run` for the
//! apps in the recipes folder, beside the stacks' (which `app.rs` handles and this calls
//! first). `build`, `push`, `pull` and `promote` take apps and stacks alike (an app is a
//! [`crate::pipeline::Subject`] there).

use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;

use crate::cli::{self, Cli, Command};
use crate::commands::{catalog, Console, Failure, Outcome};
use crate::engine::Engine;
use crate::pipeline::{self, Progress as _};
use crate::recipe::app::{AppSource, LoadedApp};
use crate::recipe::Catalog;
use crate::render::app as render_app;
use crate::run_plan::{self, Bind, RunOptions};

/// Handles the commands that concern apps; None leaves the command to the stacks' code.
pub async fn dispatch(cli: &Cli, console: &mut Console) -> Option<Outcome> {
    let cat = catalog(cli);
    match &cli.command {
        Command::List(a) => Some(list(cli, &cat, a.json)),
        Command::Render(a) => Some(render(cli, &cat, a)),
        Command::Check(a) => Some(check(cli, &cat, a)),
        Command::Run(a) if cat.is_app(&a.recipe) => Some(run(&cat, a, console).await),
        _ => None,
    }
}

pub(crate) fn load_apps(cat: &Catalog) -> Result<Vec<LoadedApp>, Failure> {
    cat.app_names()?
        .iter()
        .map(|n| cat.load_app(n).map_err(Failure::from))
        .collect()
}

fn source_kind(l: &LoadedApp) -> &'static str {
    match l.app.source {
        AppSource::Git { .. } => "git",
        AppSource::Archive { .. } => "archive",
        AppSource::Files(_) => "files",
    }
}

fn list(cli: &Cli, cat: &Catalog, json: bool) -> Outcome {
    // Every app is validated first: a broken one fails `list` as a broken stack does.
    let apps = load_apps(cat)?;
    let rows = apps
        .iter()
        .map(|l| crate::commands::app::ListRow {
            kind: "app",
            stack: Some(l.app.stack.to_string()),
            verified: l.app.verified.as_deref().map(String::from),
            ..crate::commands::app::ListRow::of(&render_app::as_recipe(l), None)
        })
        .collect();
    let code = crate::commands::app::list(cli, json, rows)?;
    if json || apps.is_empty() {
        return Ok(code);
    }
    let mut out = format!(
        "\n{:<12} {:<12} {:<10} {:<18} {:<7} {:<7} VERIFIED\n",
        "APP", "STATUS", "STACK", "PYTORCH", "PYTHON", "SOURCE"
    );
    for l in &apps {
        let s = &l.stack.recipe;
        out.push_str(&format!(
            "{:<12} {:<12} {:<10} {:<18} {:<7} {:<7} {}\n",
            l.app.name.as_str(),
            l.app.status.to_string(),
            l.app.stack.as_str(),
            s.pytorch.version(),
            s.python.version.as_str(),
            source_kind(l),
            l.app.verified.as_deref().unwrap_or("-")
        ));
    }
    print!("{out}");
    Ok(code)
}

/// The files `render --write` commits for an app, as for a stack: `<name>.Dockerfile` and
/// the rest of its context under `<name>/`.
pub(crate) fn rendered_files(l: &LoadedApp) -> Vec<(String, Vec<u8>)> {
    crate::commands::render_all::committed_files(
        crate::context::app::context(l),
        l.app.name.as_str(),
    )
}

fn render(cli: &Cli, cat: &Catalog, a: &cli::RenderArgs) -> Outcome {
    if let Some(name) = a.recipe.as_deref().filter(|n| cat.is_app(n)) {
        let l = cat.load_app(name)?;
        print!("{}", render_app::dockerfile(&l));
        return Ok(0);
    }
    // `--all` renders the apps too, through the same output-folder writer as the stacks.
    crate::commands::app::render_cmd(cli, a)
}

fn check(cli: &Cli, cat: &Catalog, a: &cli::CheckArgs) -> Outcome {
    let code = crate::commands::app::check(cli, a)?;
    let mut bad = false;
    for name in cat.app_names()? {
        match cat.load_app(&name) {
            Ok(_) if !a.json => println!("ok    {name}"),
            Ok(_) => {}
            Err(e) => {
                bad = true;
                if !a.json {
                    println!("error {e}");
                }
            }
        }
    }
    Ok(if bad { 2 } else { code })
}

/// Where an app's data lives on the host unless `--data` says: the XDG data folder.
pub fn default_data_dir(app: &str) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/share"))
        })?;
    Some(base.join("rdna1-images").join(app))
}

async fn run(cat: &Catalog, a: &cli::RunArgs, console: &mut Console) -> Outcome {
    use std::io::IsTerminal;
    let l = cat.load_app(&a.recipe)?;
    let r = render_app::as_recipe(&l);
    let host = crate::commands::app::host_report()?;
    let data = match a.data.clone().or_else(|| default_data_dir(&l.app.name)) {
        Some(d) if d.is_absolute() => d,
        Some(d) => std::env::current_dir().map_err(Failure::job)?.join(d),
        None => {
            return Err(Failure::input(anyhow::anyhow!(
                "no HOME or XDG_DATA_HOME to keep {}'s data in: give --data DIR",
                l.app.name
            )))
        }
    };
    if let Some(mode) = a.network.mode() {
        return Err(Failure::input(anyhow::anyhow!(
            "--network {mode}: {} publishes its port {} on --listen (default 127.0.0.1) through the engine's bridge; {}: leave --network out",
            l.app.name,
            l.app.serve.port,
            if mode == "host" {
                "on the host's network the app would listen on every interface of this machine, past --listen"
            } else {
                "with no network nothing could reach it"
            }
        )));
    }
    let mut opts = RunOptions::new(data.clone());
    opts.gpu = a.gpu;
    opts.cpu = a.cpu;
    opts.interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    opts.shm_size = Some(a.shm_size.clone());
    let mut plan = run_plan::plan(&r, &host, &opts).map_err(|e| {
        crate::commands::EnvironmentError::Plan(
            e.with_fits(std::slice::from_ref(&l.stack.recipe), &host),
        )
    })?;
    plan.cmd = if a.cmd.is_empty() {
        let target = if a.cpu {
            None
        } else {
            plan.gfx_target.as_deref()
        };
        let mut cmd = render_app::command(&l, target);
        if a.cpu || target.is_none() {
            cmd = render_app::command(&l, None);
        }
        cmd
    } else {
        a.cmd.clone()
    };
    let inside = l.app.serve.data.as_str();
    plan.binds = l
        .app
        .serve
        .volumes
        .iter()
        .map(|v| Bind {
            source: data.join(v.as_str()).display().to_string(),
            target: format!("{inside}/{v}"),
        })
        .collect();
    plan.workdir = render_app::APP_DIR.to_string();
    let port = a.port.unwrap_or(l.app.serve.port);
    let listen = a.listen.to_string();
    // The process's own uid and gid (the owner of /proc/self): a non-root user runs the
    // app as itself, so the files it writes in the data folders are the user's.
    let me = std::fs::metadata("/proc/self").map_err(Failure::job)?;
    let user = (me.uid() != 0).then(|| format!("{}:{}", me.uid(), me.gid()));
    let shown_host = if a.listen.is_ipv6() {
        format!("[{listen}]")
    } else {
        listen.clone()
    };
    let url = format!("http://{shown_host}:{port}/");
    if !a.listen.is_loopback() {
        console.note(&format!(
            "WARNING: --listen {listen}: {} is reachable from other machines at {url}, with no password; use the default 127.0.0.1 unless you mean it",
            l.app.name
        ));
    }
    if a.dry_run {
        let mut extra = format!(
            "docker run -p {}",
            crate::quote::shell::word(&format!("{shown_host}:{port}:{}", l.app.serve.port))
        );
        if let Some(u) = &user {
            extra.push_str(&format!(" --user {u}"));
        }
        println!(
            "{}",
            run_plan::docker_cli(&plan).replacen("docker run", &extra, 1)
        );
        return Ok(0);
    }
    for n in &plan.notes {
        console.note(n);
    }
    for v in &l.app.serve.volumes {
        let dir = data.join(v.as_str());
        std::fs::create_dir_all(&dir)
            .map_err(|e| Failure::job(anyhow::anyhow!("cannot create {}: {e}", dir.display())))?;
        if user.is_none() {
            // root on the host: the folders go to the image's user (uid 1000), never root.
            let uid = render_app::APP_UID as u32;
            std::os::unix::fs::chown(&dir, Some(uid), Some(uid)).map_err(Failure::job)?;
        }
    }
    let engine = Engine::connect().await?;
    if engine.image(&plan.image).await?.is_none() {
        return Err(Failure::job(anyhow::anyhow!(
            "image {} is not here: build it with `rdna1-images build {}` (after its stack `{}`)",
            plan.image,
            l.app.name,
            l.app.stack
        )));
    }
    let mut spec = pipeline::container_spec(&plan);
    spec.ports = vec![(listen, port, l.app.serve.port)];
    spec.user = user;
    console.note(&format!(
        "{} at {url} (data in {}; Ctrl-C stops it)",
        l.app.name,
        data.display()
    ));
    crate::commands::app::run_attached(&engine, &spec, plan.tty).await
}
