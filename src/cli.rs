//! The command line (clap derive only; the work is in `app`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "rdna1-images",
    version,
    about = "Reproducible, smoke-tested Docker images of PyTorch for AMD RDNA1 GPUs (RX 5600 XT / 5700 XT, gfx1010)",
    long_about = None
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
    /// Push a recipe's tested image with its channel's tags and its smoke report.
    Push(PushArgs),
    /// Pull a pre-built, tested image and tag it rdna1-images:<recipe>.
    Pull(PullArgs),
    /// Pull the nightly image, run the gpu smoke test, and only on a pass move the stable tags.
    Promote(PromoteArgs),
    /// Resolve the base tag to its digest and fill in missing wheel hashes, in the recipe file.
    Lock(LockArgs),
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
    pub recipe: String,
    /// Push only this channel's tags (default: every channel its smoke level allows).
    #[arg(long, value_enum)]
    pub channel: Option<crate::registry::Channel>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    pub recipe: String,
    /// stable pulls `<recipe>`, nightly `<recipe>-nightly`.
    #[arg(long, value_enum, default_value = "stable", conflicts_with = "tag")]
    pub channel: crate::registry::Channel,
    /// Pull this tag instead (e.g. `<recipe>-<digest12>` or `<recipe>-<YYYYMMDD>`).
    #[arg(long)]
    pub tag: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PromoteLevel {
    Gpu,
    /// For the tool's own tests only (needs RDNA1_IMAGES_ALLOW_CPU_PROMOTE=1).
    Cpu,
}

#[derive(Debug, Args)]
pub struct PromoteArgs {
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
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LockArgs {
    /// The recipe to lock (in --recipes DIR: the file is rewritten, comments kept).
    pub recipe: String,
    /// Also check every hashed package from the recipe's index against the index, and fail
    /// (exit 1, nothing written) when a pinned version now has another hash.
    #[arg(long)]
    pub verify: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Machine-readable output.
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
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SmokeChoice {
    /// gpu where /dev/kfd exists, else cpu (said loudly).
    Auto,
    Gpu,
    Cpu,
    /// Build only: the image is not tagged.
    Skip,
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
    /// Build every recipe.
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
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BuildNetwork {
    Default,
    Host,
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
    #[arg(long, value_enum, default_value = "auto")]
    pub level: SmokeChoice,
    /// Print the equivalent `docker run` command line (cpu level) and exit.
    #[arg(long)]
    pub print_command: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[arg(long)]
    pub json: bool,
    /// What "ready" means for the exit code: using the GPU (default), or building images
    /// with cpu smoke tests (CI, machines without the card).
    #[arg(long = "for", value_enum, default_value = "gpu")]
    pub focus: crate::doctor::Focus,
}

#[derive(Debug, Args)]
pub struct RunArgs {
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
    /// The command to run (default: the image's shell).
    #[arg(last = true)]
    pub cmd: Vec<String>,
}

#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Only say what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
