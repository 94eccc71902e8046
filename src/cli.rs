//! The command line (clap derive only; the work is in `app`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "rdna1-images",
    version,
    about = "Reproducible, smoke-tested Docker images of PyTorch for AMD RDNA1 GPUs (RX 5600 XT / 5700 XT, gfx1010)",
    long_about = None,
    after_help = AFTER_HELP
)]
pub struct Cli {
    /// Read recipes from this folder instead of the ones built into the binary.
    #[arg(long, global = true, env = "RDNA1_IMAGES_RECIPES", value_name = "DIR")]
    pub recipes: Option<PathBuf>,
    /// More output (-v: whole build log and debug messages, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors and the final result.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The recipes: name, ROCm, PyTorch, Python, wheels or source, HSA override, status.
    List(ListArgs),
    /// Print a recipe's Dockerfile, or check/write the committed ones in dockerfiles/.
    Render(RenderArgs),
    /// Validate every recipe; --strict also fails inputs that are not pinned.
    Check(CheckArgs),
    /// Render, build, smoke test, and only then tag.
    Build(BuildArgs),
    /// Run the smoke test on an existing image and print its table.
    Smoke(SmokeArgs),
    /// The host: Docker, driver, devices, groups, detected gfx target, the stack to use.
    Doctor(DoctorArgs),
    /// Start a container of a recipe's image with the right devices, groups and environment.
    Run(RunArgs),
    /// Remove containers and untagged images the tool left behind (found by its labels).
    Clean(CleanArgs),
    /// The compatibility table: every local smoke report (built, or pulled with an image),
    /// stacks across, conformance cases down.
    Compat,
    /// Push a recipe's tested image with its channel's tags and its smoke report.
    Push(PushArgs),
    /// Pull a pre-built, tested image and tag it rdna1-images:<recipe>.
    Pull(PullArgs),
    /// Pull the nightly image, run the gpu smoke test, and only on a pass move the stable tags.
    Promote(PromoteArgs),
    /// Resolve the base tag to its digest and fill in missing wheel hashes, in the recipe file.
    Lock(LockArgs),
    /// Print a shell completion script (e.g. `rdna1-images completions bash > /etc/bash_completion.d/rdna1-images`).
    Completions(CompletionsArgs),
    /// Print the man page (roff): `rdna1-images man | man -l -`.
    Man,
}

impl Command {
    /// The command's name, as typed and as JSON documents name it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::List(_) => "list",
            Command::Render(_) => "render",
            Command::Check(_) => "check",
            Command::Build(_) => "build",
            Command::Smoke(_) => "smoke",
            Command::Doctor(_) => "doctor",
            Command::Run(_) => "run",
            Command::Clean(_) => "clean",
            Command::Compat => "compat",
            Command::Push(_) => "push",
            Command::Pull(_) => "pull",
            Command::Promote(_) => "promote",
            Command::Lock(_) => "lock",
            Command::Completions(_) => "completions",
            Command::Man => "man",
        }
    }

    /// True when the command was asked for its JSON document.
    pub fn json(&self) -> bool {
        match self {
            Command::List(a) => a.json,
            Command::Check(a) => a.json,
            Command::Build(a) => a.json,
            Command::Smoke(a) => a.json,
            Command::Doctor(a) => a.json,
            Command::Push(a) => a.json,
            Command::Pull(a) => a.json,
            Command::Promote(a) => a.json,
            Command::Lock(a) => a.json,
            Command::Render(_)
            | Command::Run(_)
            | Command::Clean(_)
            | Command::Compat
            | Command::Completions(_)
            | Command::Man => false,
        }
    }
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write the script for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The registry and how to log in to it.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// The registry repository, HOST[:PORT]/PATH.
    #[arg(
        long,
        env = "RDNA1_IMAGES_REGISTRY",
        default_value = crate::registry::DEFAULT_REGISTRY,
        value_name = "REPO"
    )]
    pub registry: String,
    /// Read the registry password from stdin (user from RDNA1_IMAGES_REGISTRY_USER).
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// The recipe whose tested image is pushed.
    pub recipe: String,
    /// Push only this channel's tags (default: every channel its smoke level allows).
    #[arg(long, value_enum)]
    pub channel: Option<crate::registry::Channel>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Print one JSON document on stdout (schema/output.schema.json); progress stays on stderr.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The recipe whose image is pulled.
    pub recipe: String,
    /// stable pulls `<recipe>`, nightly `<recipe>-nightly`.
    #[arg(long, value_enum, default_value = "stable", conflicts_with = "tag")]
    pub channel: crate::registry::Channel,
    /// Pull this tag instead (e.g. `<recipe>-<digest12>` or `<recipe>-<YYYYMMDD>`).
    #[arg(long)]
    pub tag: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Print one JSON document on stdout (schema/output.schema.json); progress stays on stderr.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PromoteLevel {
    /// Conv2d on the GPU (the level that gates stable).
    Gpu,
    /// For the tool's own tests only (needs RDNA1_IMAGES_ALLOW_CPU_PROMOTE=1).
    Cpu,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
    /// The recipe whose nightly image is promoted.
    pub recipe: String,
    /// The smoke level that gates stable: gpu. `cpu` exists for the tool's tests on
    /// machines without a GPU and needs RDNA1_IMAGES_ALLOW_CPU_PROMOTE=1.
    #[arg(long, value_enum, default_value = "gpu", hide = true)]
    pub smoke: PromoteLevel,
    /// The image to promote, by digest: REPO@sha256:<hex>, the one the nightly pushed and
    /// signed (a tag is refused: it may have moved). Without it, the digest
    /// `<recipe>-nightly` names when promote starts.
    #[arg(long, value_name = "REPO@sha256:HEX")]
    pub image: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Print one JSON document on stdout (schema/output.schema.json); progress stays on stderr.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// The recipe to lock: its lock file (`<recipe>.lock` beside it in --recipes DIR, else in
    /// the state folder) gets every package the recipe pins by version only (an app's from
    /// the index pip is configured with). The recipe file itself is never written.
    pub recipe: String,
    /// Also re-check every locked file, and every hashed package from the recipe's index,
    /// against the index, and fail (exit 1, nothing written) when a pinned version now has
    /// another file or hash. Says which packages it could not re-check, and why.
    #[arg(long)]
    pub verify: bool,
    /// Resolve nothing and write nothing: a package the lock lacks is an error (exit 2).
    /// With --verify: re-check the lock as it is (promote does this).
    #[arg(long)]
    pub locked: bool,
    /// Print one JSON document on stdout (schema/output.schema.json); progress stays on stderr.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print one JSON document on stdout (schema/output.schema.json); progress stays on stderr.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The recipe to print.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub recipe: Option<String>,
    /// Every recipe, against the committed files in --out.
    #[arg(long, requires = "mode")]
    pub all: bool,
    /// Compare with the committed files; exit 1 on drift.
    #[arg(long, group = "mode")]
    pub check: bool,
    /// Regenerate the committed files.
    #[arg(long, group = "mode")]
    pub write: bool,
    /// Where the rendered files live.
    #[arg(long, default_value = "dockerfiles", value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also fail any input that is not pinned (base digest, wheel hashes, source commit,
    /// system package versions) unless the recipe gives a reason.
    #[arg(long)]
    pub strict: bool,
    /// Print one JSON document on stdout (schema/output.schema.json); progress stays on stderr.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SmokeChoice {
    /// gpu where /dev/kfd exists, else cpu (said loudly).
    Auto,
    /// Conv2d on the GPU, compared with the CPU (needs /dev/kfd).
    Gpu,
    /// The same program on the CPU: versions, imports, Conv2d.
    Cpu,
    /// Build only: the image is not tagged.
    Skip,
}

/// The levels `smoke` offers: those of `build --smoke` but `skip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SmokeLevel {
    /// gpu where /dev/kfd exists, else cpu (said loudly).
    Auto,
    /// Conv2d on the GPU, compared with the CPU (needs /dev/kfd).
    Gpu,
    /// The same program on the CPU: versions, imports, Conv2d.
    Cpu,
}

impl From<SmokeLevel> for SmokeChoice {
    fn from(l: SmokeLevel) -> Self {
        match l {
            SmokeLevel::Auto => SmokeChoice::Auto,
            SmokeLevel::Gpu => SmokeChoice::Gpu,
            SmokeLevel::Cpu => SmokeChoice::Cpu,
        }
    }
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Recipes to build.
    // Its own id: `recipes` is the global --recipes folder.
    #[arg(
        id = "recipe_names",
        value_name = "RECIPE",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub recipes: Vec<String>,
    /// Build every recipe: the stacks, then the apps on them.
    #[arg(long)]
    pub all: bool,
    /// Smoke test level.
    #[arg(long, value_enum, default_value = "auto")]
    pub smoke: SmokeChoice,
    /// Build without the engine's cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Rebuild even when `<recipe>-<digest12>` already exists.
    #[arg(long)]
    pub force: bool,
    /// Network for RUN steps: the engine's default bridge, the host's, or none (hermetic
    /// builds whose inputs are all in the context, e.g. the test fixtures).
    #[arg(
        long,
        value_enum,
        default_value = "default",
        env = "RDNA1_IMAGES_BUILD_NETWORK"
    )]
    pub network: BuildNetwork,
    /// Push to the registry after a pass (credentials are checked before building).
    #[arg(long)]
    pub push: bool,
    /// Build even when the registry has `<recipe>-<digest12>` (default: pull it instead).
    #[arg(long, env = "RDNA1_IMAGES_NO_PULL", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_pull: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Build a second time without cache and compare image id and layer digests; on a
    /// mismatch name the layers and files that differ, tag nothing and exit 1.
    #[arg(long)]
    pub verify_reproducible: bool,
    /// Use the lock as it is: a package the recipe pins by version only and the lock lacks
    /// is an error (exit 2), never resolved (as `cargo build --locked`). CI and the nightly
    /// set it. Without it, a missing or incomplete lock is resolved and written first.
    #[arg(long, env = "RDNA1_IMAGES_LOCKED", value_parser = clap::builder::BoolishValueParser::new())]
    pub locked: bool,
    /// Print one JSON document on stdout (schema/output.schema.json); progress stays on stderr.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BuildNetwork {
    /// The engine's default bridge.
    Default,
    /// The host's network.
    Host,
    /// No network.
    None,
}

impl BuildNetwork {
    /// The engine's `networkmode` (build) or `NetworkMode` (container) value.
    pub fn mode(self) -> Option<&'static str> {
        match self {
            BuildNetwork::Default => None,
            BuildNetwork::Host => Some("host"),
            BuildNetwork::None => Some("none"),
        }
    }
}

#[derive(Debug, Args)]
pub struct SmokeArgs {
    /// A recipe name (tests `rdna1-images:<recipe>`) or an image reference with the tool's labels.
    pub target: String,
    /// Smoke test level (no `skip`: a smoke command that tests nothing is refused).
    #[arg(long, value_enum, default_value = "auto")]
    pub level: SmokeLevel,
    /// Print the equivalent `docker run` command line (cpu level) and exit.
    #[arg(long)]
    pub print_command: bool,
    /// Print one JSON document on stdout (schema/output.schema.json); progress stays on stderr.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print one JSON document on stdout (schema/output.schema.json); progress stays on stderr.
    #[arg(long)]
    pub json: bool,
    /// What "ready" means for the exit code: using the GPU (default), or building images
    /// with cpu smoke tests (CI, machines without the card).
    #[arg(long = "for", value_enum, default_value = "gpu")]
    pub focus: crate::doctor::Focus,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The recipe whose image `rdna1-images:<recipe>` is started.
    pub recipe: String,
    /// Pass only the Nth GPU's render node.
    #[arg(long, value_name = "N")]
    pub gpu: Option<usize>,
    /// No GPU devices: for machines without /dev/kfd.
    #[arg(long, conflicts_with = "gpu")]
    pub cpu: bool,
    /// Print the equivalent `docker run` command line and exit.
    #[arg(long)]
    pub dry_run: bool,
    /// Shared memory size (PyTorch data loaders need more than Docker's 64 MB).
    #[arg(long, default_value = "8g")]
    pub shm_size: String,
    /// Container network: the engine's default bridge, the host's, or none (the same
    /// choices as `build --network`, checked before anything starts).
    #[arg(long, value_enum, default_value = "default")]
    pub network: BuildNetwork,
    /// Apps: the host address the app's port is published on (default 127.0.0.1, this
    /// machine only; anything else lets others reach the app, and is said loudly).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub listen: std::net::IpAddr,
    /// Apps: the host port (default: the app's own).
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Apps: the host folder holding the app's data folders (default
    /// $XDG_DATA_HOME/rdna1-images/<app>, else ~/.local/share/rdna1-images/<app>).
    #[arg(long, value_name = "DIR")]
    pub data: Option<std::path::PathBuf>,
    /// The command to run (default: the image's shell).
    #[arg(last = true)]
    pub cmd: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Only say what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    /// Only the leftovers of this recipe (found by its label).
    #[arg(long, value_name = "RECIPE")]
    pub recipe: Option<String>,
}

/// The end of `rdna1-images --help`: the exit codes and every environment variable read.
pub const AFTER_HELP: &str = "\
Exit codes:
  0    ok
  1    the job failed (a build, a smoke test, a push)
  2    bad input (arguments, a recipe: the message names file, line and field)
  3    the environment (no Docker, no GPU where one was required, registry unreachable)
  130  interrupted (Ctrl-C); what the command had started is removed

Environment:
  DOCKER_HOST                      the engine (unix://, tcp://, ssh://), as docker reads it
  DOCKER_CONTEXT                   a Docker context name (its endpoint is read from DOCKER_CONFIG)
  DOCKER_CONFIG                    the Docker config folder (default ~/.docker): contexts, registry logins
  DOCKER_TLS_VERIFY                with tcp://, verify the engine's certificate (1)
  DOCKER_CERT_PATH                 ca.pem, cert.pem and key.pem for a TLS engine
  RDNA1_IMAGES_RECIPES             the recipes folder (--recipes)
  RDNA1_IMAGES_REGISTRY            the registry repository (--registry)
  RDNA1_IMAGES_REGISTRY_USER       registry user (with RDNA1_IMAGES_REGISTRY_PASSWORD or --password-stdin)
  RDNA1_IMAGES_REGISTRY_PASSWORD   registry password
  RDNA1_IMAGES_BUILD_NETWORK       build --network
  RDNA1_IMAGES_NO_PULL             build --no-pull (1, true)
  RDNA1_IMAGES_HOST_ROOT           read devices and sysfs under this folder instead of / (tests)
  RDNA1_IMAGES_ALLOW_CPU_PROMOTE   1: allow promote --smoke cpu (the tool's own tests)
  RDNA1_IMAGES_NORMALISE           how the new layers leave the engine: auto (a push to the tool's
                                   registry on 127.0.0.1, else docker save), push, save
  XDG_CACHE_HOME                   each base's folder list, read once, in $XDG_CACHE_HOME/rdna1-images
                                   (default ~/.cache/rdna1-images)
  XDG_STATE_HOME                   failed build logs go to $XDG_STATE_HOME/rdna1-images/logs
                                   (default ~/.local/state/rdna1-images/logs), run locks to .../locks
  RUST_LOG                         log filter (overrides -v/-q), e.g. rdna1_images=debug

--json prints one document on stdout: {\"schema\": 1, \"command\", \"result\"} or, on failure,
\"error\": {\"class\", \"message\", \"exit_code\"} (schema/output.schema.json in the repository).";

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_argument_of_every_command_has_a_description() {
        let mut missing = Vec::new();
        let top = Cli::command();
        let mut cmds = vec![top.clone()];
        cmds.extend(top.get_subcommands().cloned());
        for c in &cmds {
            for a in c.get_arguments() {
                let id = a.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if a.get_help().is_none() && a.get_long_help().is_none() {
                    missing.push(format!("{} {id}", c.get_name()));
                }
            }
        }
        assert!(missing.is_empty(), "no description: {missing:?}");
    }

    #[test]
    fn smoke_does_not_offer_the_level_it_refuses() {
        let e = Cli::try_parse_from(["rdna1-images", "smoke", "x", "--level", "skip"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue, "{e}");
        let help = Cli::command()
            .find_subcommand_mut("smoke")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(!help.contains("skip:"), "{help}");
        assert!(help.contains("cpu"), "{help}");
    }
}
