//! parse -> init tracing -> run -> exit code; nothing else.

use clap::Parser;
use rdna1_images::{cli::Cli, commands::app, engine};

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Bad arguments with --json still give the one document (exit 2).
            crate::json_parse_error(&e);
            e.exit()
        }
    };
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "rdna1_images=debug,warn",
        _ => "rdna1_images=trace,info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(3);
        }
    };
    // The command, then the cleanup of whatever its guards left, on every exit path: an
    // error, a signal (app::run races the command against the cancellation token), a panic.
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        runtime.block_on(app::run(cli))
    }));
    runtime.block_on(engine::guard::drain());
    let code = match ran {
        Ok(Ok(code)) => code,
        Ok(Err(f)) => {
            let message = f.message();
            eprintln!("error: {}", rdna1_images::escape::message(&message));
            f.code
        }
        Err(_) => 101,
    };
    // A blocking stdin read (interactive `run`) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    // Scratch folders a blocking task was still writing into when the run was cancelled.
    engine::guard::drain_scratch_blocking();
    std::process::ExitCode::from(code.clamp(0, 255) as u8)
}

fn json_parse_error(e: &clap::Error) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(doc) = rdna1_images::ui::json::parse_error(&args, e) {
        rdna1_images::ui::json::print(&doc);
    }
}
