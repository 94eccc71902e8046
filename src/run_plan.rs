//! `run`: the container a recipe's image needs on this host, as a plan the engine module
//! executes and `--dry-run` prints as a `docker run` line.
//!
//! Pure: a recipe, a [`HostReport`] and the options in, a [`RunPlan`] or a [`PlanError`]
//! that says what to do out. Device paths and GIDs are the host's numbers, because Docker
//! resolves group *names* inside the image, where `render` may not exist or mean another GID.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::host::{GpuInfo, HostReport, KFD_DEVICE};
use crate::quote::shell::word as quote;
use crate::recipe::Recipe;
use crate::recipe_choice::{recipes_for, RecipeChoice};

/// Where the current folder appears in the container.
pub const WORKSPACE: &str = "/workspace";
/// Where the MIOpen caches live when a recipe does not say.
pub const MIOPEN_CACHE: &str = "/var/cache/miopen";
/// PyTorch's docs use 8G: DataLoader workers pass batches through /dev/shm, and Docker's
/// default of 64 MB breaks them.
pub const DEFAULT_SHM_SIZE: &str = "8g";
pub const HSA_OVERRIDE: &str = "HSA_OVERRIDE_GFX_VERSION";
const MIOPEN_DB_ENV: &str = "MIOPEN_USER_DB_PATH";
const MIOPEN_KERNELS_ENV: &str = "MIOPEN_CUSTOM_CACHE_DIR";

/// The image `run` starts for a recipe.
pub fn image_for(recipe: &str) -> String {
    format!("{}:{recipe}", crate::registry::REPOSITORY)
}

/// What to tell a user whose image is not there yet.
pub fn missing_image_hint(recipe: &Recipe) -> String {
    let image = image_for(&recipe.name);
    let cost = match recipe.pytorch {
        crate::recipe::PyTorch::Source(_) => "a source build, hours",
        _ => "minutes, mostly the download",
    };
    format!(
        "image {image} is not here: build it with `rdna1-images build {name}` ({cost}), or pull it with `rdna1-images pull {name}` if your registry has it",
        name = recipe.name
    )
}

/// What the user asked for, validated by [`plan`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunOptions {
    /// `--gpu N`: only that GPU's render node (index as `doctor` lists them).
    pub gpu: Option<usize>,
    /// `--cpu`: no devices, groups, seccomp change or override.
    pub cpu: bool,
    /// The folder mounted at [`WORKSPACE`]; absolute (the caller's current folder).
    pub workdir_host: PathBuf,
    /// The command; empty runs the image's default.
    pub cmd: Vec<String>,
    /// stdin and stdout are a terminal: allocate a TTY (stdin is passed either way).
    pub interactive: bool,
    /// `--shm-size`, Docker syntax (`8g`, `512m`); default [`DEFAULT_SHM_SIZE`].
    pub shm_size: Option<String>,
    /// `--ipc host`: share the host's IPC namespace and /dev/shm (then shm_size does not
    /// apply). Off by default: a private /dev/shm of shm_size serves PyTorch in one container.
    pub ipc_host: bool,
    /// `--network`; `None` leaves the engine's default.
    pub network: Option<String>,
}

impl RunOptions {
    pub fn new(workdir_host: impl Into<PathBuf>) -> Self {
        RunOptions {
            gpu: None,
            cpu: false,
            workdir_host: workdir_host.into(),
            cmd: Vec::new(),
            interactive: false,
            shm_size: None,
            ipc_host: false,
            network: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bind {
    pub source: String,
    pub target: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeMount {
    /// A named volume: Docker creates it on first use and keeps it across containers.
    pub name: String,
    pub target: String,
}

/// Everything the engine needs to create the container, in Docker's terms.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunPlan {
    pub recipe: String,
    pub image: String,
    /// Indexes of the GPUs passed (empty with --cpu).
    pub gpus: Vec<usize>,
    /// The gfx target the environment was chosen for.
    pub gfx_target: Option<String>,
    /// Host device paths, mapped to the same path inside.
    pub devices: Vec<String>,
    /// Host GIDs of those devices, so a non-root user in the container can open them too.
    pub group_add: Vec<u32>,
    /// In order: the recipe's environment, then the override (if any).
    pub env: Vec<(String, String)>,
    /// `seccomp=unconfined`: ROCm's docs require it (the default profile blocks syscalls
    /// the runtime uses for memory management).
    pub security_opt: Vec<String>,
    pub ipc_host: bool,
    /// `None` with ipc_host: the host's /dev/shm is used as is.
    pub shm_size: Option<String>,
    pub shm_size_bytes: Option<i64>,
    /// Docker's init as PID 1: forwards Ctrl-C and reaps DataLoader worker zombies, which a
    /// Python PID 1 does not.
    pub init: bool,
    pub binds: Vec<Bind>,
    pub volumes: Vec<VolumeMount>,
    pub workdir: String,
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin_open: bool,
    pub network: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Things the user should know (GPUs left out, an override applied).
    pub notes: Vec<String>,
}

/// Why no plan: each says what to do instead.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanError {
    NoKfd {
        recipe: String,
    },
    NoGpu {
        recipe: String,
    },
    GpuOutOfRange {
        index: usize,
        available: Vec<String>,
    },
    /// The chosen GPU (or every GPU) has a target the recipe does not list.
    UnsupportedGpu {
        recipe: String,
        found: Vec<String>,
        targets: Vec<String>,
        /// Recipes that do fit, filled by [`PlanError::with_fits`].
        fits: Vec<(String, RecipeChoice)>,
        other_gpus: bool,
    },
    /// GPUs that need different overrides: one process has one override.
    MixedOverrides {
        recipe: String,
        gpus: Vec<String>,
    },
    NoRenderNode {
        gpu: String,
    },
    BadShmSize(String),
    RelativeWorkdir(PathBuf),
}

impl PlanError {
    /// Adds, for an unsupported GPU, the recipes that list its target.
    pub fn with_fits(mut self, recipes: &[Recipe], host: &HostReport) -> Self {
        if let PlanError::UnsupportedGpu { fits, found, .. } = &mut self {
            for g in host.gpus.iter().filter(|g| found.contains(&describe(g))) {
                if let Some(v) = g.gfx {
                    for c in recipes_for(&v, recipes) {
                        let label = format!(
                            "GPU {} ({})",
                            g.index,
                            g.gfx_target.as_deref().unwrap_or("?")
                        );
                        fits.push((label, c));
                    }
                }
            }
        }
        self
    }
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::NoKfd { recipe } => write!(
                f,
                "no /dev/kfd on this host: the amdgpu driver is not loaded or there is no AMD GPU (`rdna1-images doctor` says which); to run {recipe} on the CPU, add --cpu: `rdna1-images run --cpu {recipe}`"
            ),
            PlanError::NoGpu { recipe } => write!(
                f,
                "/dev/kfd exists but the KFD topology lists no GPU (`rdna1-images doctor` says more); to run {recipe} on the CPU, add --cpu"
            ),
            PlanError::GpuOutOfRange { index, available } => {
                if available.is_empty() {
                    write!(f, "--gpu {index}: this host has no GPU; use --cpu")
                } else {
                    write!(
                        f,
                        "--gpu {index}: this host has {} GPU(s): {}",
                        available.len(),
                        available.join("; ")
                    )
                }
            }
            PlanError::UnsupportedGpu {
                recipe,
                found,
                targets,
                fits,
                other_gpus,
            } => {
                write!(
                    f,
                    "recipe {recipe} is for {} and this host offers {}: these images are for RDNA1 (RX 5000 series)",
                    targets.join(", "),
                    found.join("; ")
                )?;
                for (gpu, c) in fits {
                    write!(f, "; {gpu} fits {}", c.describe())?;
                }
                if *other_gpus {
                    write!(f, "; pick another GPU with --gpu N (`rdna1-images doctor` lists them)")?;
                }
                write!(f, "; or run on the CPU with --cpu")
            }
            PlanError::MixedOverrides { recipe, gpus } => write!(
                f,
                "with {recipe}, these GPUs need different HSA_OVERRIDE_GFX_VERSION values and one process takes only one: {}; pick one with --gpu N",
                gpus.join("; ")
            ),
            PlanError::NoRenderNode { gpu } => write!(
                f,
                "{gpu} has no render node under /dev/dri (`rdna1-images doctor` says more)"
            ),
            PlanError::BadShmSize(s) => write!(
                f,
                "--shm-size `{s}`: give a number with an optional unit b, k, m or g (like 8g or 512m)"
            ),
            PlanError::RelativeWorkdir(p) => write!(
                f,
                "the folder to mount must be an absolute path, got `{}`",
                p.display()
            ),
        }
    }
}

impl std::error::Error for PlanError {}

/// Docker's size syntax (`units.RAMInBytes`): binary units, optional `b`/`ib` suffix.
pub fn parse_size(s: &str) -> Option<i64> {
    let t = s.trim().to_ascii_lowercase();
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: f64 = num.parse().ok()?;
    let unit = unit.trim();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(unit);
    let mult: i64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    let bytes = n * mult as f64;
    (bytes >= 1.0 && bytes < i64::MAX as f64).then_some(bytes as i64)
}

fn describe(g: &GpuInfo) -> String {
    format!("GPU {} ({})", g.index, g.label())
}

/// The container for `recipe` on this host.
pub fn plan(recipe: &Recipe, host: &HostReport, opts: &RunOptions) -> Result<RunPlan, PlanError> {
    if !opts.workdir_host.is_absolute() {
        return Err(PlanError::RelativeWorkdir(opts.workdir_host.clone()));
    }
    let (shm_size, shm_size_bytes) = if opts.ipc_host {
        (None, None)
    } else {
        let s = opts.shm_size.as_deref().unwrap_or(DEFAULT_SHM_SIZE);
        let b = parse_size(s).ok_or_else(|| PlanError::BadShmSize(s.to_string()))?;
        (Some(s.to_string()), Some(b))
    };

    let mut notes = Vec::new();
    let mut env: Vec<(String, String)> = recipe
        .env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let volumes = miopen_volumes(recipe, &mut env, &mut notes);

    let mut chosen: Vec<&GpuInfo> = Vec::new();
    let mut devices = Vec::new();
    let mut group_add = Vec::new();
    let mut security_opt = Vec::new();
    let mut gfx_target = None;
    if !opts.cpu {
        if !host.kfd.exists {
            return Err(PlanError::NoKfd {
                recipe: recipe.name.to_string(),
            });
        }
        if host.gpus.is_empty() && opts.gpu.is_none() {
            return Err(PlanError::NoGpu {
                recipe: recipe.name.to_string(),
            });
        }
        let in_recipe = |g: &GpuInfo| {
            g.gfx_target
                .as_ref()
                .is_some_and(|t| recipe.gpu.targets.contains_key(t.as_str()))
        };
        let unsupported = |found: Vec<&GpuInfo>, other_gpus: bool| PlanError::UnsupportedGpu {
            recipe: recipe.name.to_string(),
            found: found.into_iter().map(describe).collect(),
            targets: recipe.gpu.targets.keys().map(|k| k.to_string()).collect(),
            fits: Vec::new(),
            other_gpus,
        };
        match opts.gpu {
            Some(i) => {
                let g = host.gpus.get(i).ok_or_else(|| PlanError::GpuOutOfRange {
                    index: i,
                    available: host.gpus.iter().map(describe).collect(),
                })?;
                if !in_recipe(g) {
                    return Err(unsupported(vec![g], host.gpus.len() > 1));
                }
                chosen.push(g);
            }
            None => {
                chosen = host.gpus.iter().filter(|g| in_recipe(g)).collect();
                if chosen.is_empty() {
                    return Err(unsupported(host.gpus.iter().collect(), false));
                }
                for g in host.gpus.iter().filter(|g| !in_recipe(g)) {
                    notes.push(format!(
                        "{} is left out: {} does not list it",
                        describe(g),
                        recipe.name
                    ));
                }
            }
        }

        // One override per process: the chosen GPUs must agree on it.
        let needed: Vec<Option<&str>> = chosen
            .iter()
            .map(|g| {
                let t = g.gfx_target.as_ref().expect("filtered on a known target");
                recipe.gpu.targets[t.as_str()].as_ref().map(|v| v.as_str())
            })
            .collect();
        if needed.iter().any(|n| *n != needed[0]) {
            return Err(PlanError::MixedOverrides {
                recipe: recipe.name.to_string(),
                gpus: chosen
                    .iter()
                    .zip(&needed)
                    .map(|(g, n)| {
                        format!(
                            "{} needs {}",
                            describe(g),
                            n.map_or("none".to_string(), |o| o.to_string())
                        )
                    })
                    .collect(),
            });
        }
        let target = chosen[0].gfx_target.clone();
        match needed[0] {
            Some(o) => {
                env.push((HSA_OVERRIDE.to_string(), o.to_string()));
                notes.push(format!(
                    "{} runs {} code ({HSA_OVERRIDE}={o})",
                    target.as_deref().unwrap_or("?"),
                    crate::host::GfxVersion::from_override(o)
                        .map_or_else(|| o.to_string(), |v| v.name())
                ));
            }
            None => {
                // The image bakes its primary target's override; a native GPU must not
                // inherit it. ROCr ignores an empty HSA_OVERRIDE_GFX_VERSION the same as an
                // unset one, and `docker run` cannot unset an image's ENV.
                if recipe.gpu.hsa_override().is_some() {
                    env.push((HSA_OVERRIDE.to_string(), String::new()));
                }
            }
        }
        gfx_target = target;

        devices.push(KFD_DEVICE.to_string());
        if let Some(g) = host.kfd.gid {
            group_add.push(g);
        }
        for g in &chosen {
            let node = g
                .render_node
                .as_deref()
                .and_then(|p| host.render_node(p))
                .filter(|d| d.exists)
                .ok_or_else(|| PlanError::NoRenderNode { gpu: describe(g) })?;
            devices.push(node.path.clone());
            if let Some(gid) = node.gid {
                if !group_add.contains(&gid) {
                    group_add.push(gid);
                }
            }
        }
        security_opt.push("seccomp=unconfined".to_string());
    }

    let mut labels = BTreeMap::new();
    labels.insert(crate::labels::RECIPE.to_string(), recipe.name.to_string());
    labels.insert(crate::labels::ROLE.to_string(), "run".to_string());

    Ok(RunPlan {
        recipe: recipe.name.to_string(),
        image: image_for(&recipe.name),
        gpus: chosen.iter().map(|g| g.index).collect(),
        gfx_target,
        devices,
        group_add,
        env,
        security_opt,
        ipc_host: opts.ipc_host,
        shm_size,
        shm_size_bytes,
        init: true,
        binds: vec![Bind {
            source: opts.workdir_host.display().to_string(),
            target: WORKSPACE.to_string(),
        }],
        volumes,
        workdir: WORKSPACE.to_string(),
        cmd: opts.cmd.clone(),
        tty: opts.interactive,
        // Always, as `docker run -i`: `echo x | rdna1-images run r -- cat` must see the x.
        stdin_open: true,
        network: opts.network.clone(),
        labels,
        notes,
    })
}

/// One named volume per recipe for MIOpen's find-db and compiled kernels, so a kernel
/// compiled once (minutes on RDNA1) stays compiled. Mounted at the common parent of the two
/// cache paths when they are siblings or nested (the recipes put both under
/// /var/cache/miopen), else one volume each, rather than a volume over a shared ancestor
/// like /root. Paths the recipe leaves unset are pointed under [`MIOPEN_CACHE`]: MIOpen's
/// defaults are in $HOME, which a volume should not cover.
fn miopen_volumes(
    recipe: &Recipe,
    env: &mut Vec<(String, String)>,
    notes: &mut Vec<String>,
) -> Vec<VolumeMount> {
    let mut paths = Vec::new();
    for (key, default) in [(MIOPEN_DB_ENV, "db"), (MIOPEN_KERNELS_ENV, "kernels")] {
        let p = match recipe.env.get(key) {
            Some(v) => v.to_string(),
            None => {
                let v = format!("{MIOPEN_CACHE}/{default}");
                env.push((key.to_string(), v.clone()));
                v
            }
        };
        if Path::new(&p).is_absolute() {
            paths.push(normalize(&p));
        } else {
            notes.push(format!(
                "{key}={p} is not an absolute path: its cache is not kept across runs"
            ));
        }
    }
    let base = format!("rdna1-images-miopen-{}", recipe.name);
    match paths.as_slice() {
        [] => Vec::new(),
        [one] => vec![VolumeMount {
            name: base,
            target: one.display().to_string(),
        }],
        [a, b, ..] => {
            let shared = if a.starts_with(b) {
                Some(b.clone())
            } else if b.starts_with(a) {
                Some(a.clone())
            } else if a.parent().is_some() && a.parent() == b.parent() {
                a.parent().map(Path::to_path_buf)
            } else {
                None
            };
            // Never a volume over a system folder: /var/cache/a and /var/cache/b get one
            // each, not one over all of /var/cache (the recipe's own paths were checked
            // with the same rule).
            let allowed = |p: &PathBuf| {
                crate::values::cache_path::check_cache_dir(&p.display().to_string()).is_ok()
            };
            match shared.filter(|p| p.components().count() > 1 && allowed(p)) {
                Some(p) => vec![VolumeMount {
                    name: base,
                    target: p.display().to_string(),
                }],
                None => vec![
                    VolumeMount {
                        name: format!("{base}-db"),
                        target: a.display().to_string(),
                    },
                    VolumeMount {
                        name: format!("{base}-kernels"),
                        target: b.display().to_string(),
                    },
                ],
            }
        }
    }
}

/// Drops `.` and trailing slashes so `/a/b/` and `/a/b` compare equal.
fn normalize(p: &str) -> PathBuf {
    Path::new(p)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect()
}

/// The plan as a `docker run` command a user can read and paste into a POSIX shell.
pub fn docker_cli(p: &RunPlan) -> String {
    let mut args: Vec<String> = vec!["docker run --rm".into()];
    match (p.tty, p.stdin_open) {
        (true, true) => args.push("-it".into()),
        (true, false) => args.push("-t".into()),
        (false, true) => args.push("-i".into()),
        (false, false) => {}
    }
    if p.init {
        args.push("--init".into());
    }
    for d in &p.devices {
        args.push(format!("--device {}", quote(d)));
    }
    for g in &p.group_add {
        args.push(format!("--group-add {g}"));
    }
    for s in &p.security_opt {
        args.push(format!("--security-opt {}", quote(s)));
    }
    if p.ipc_host {
        args.push("--ipc host".into());
    }
    if let Some(s) = &p.shm_size {
        args.push(format!("--shm-size {}", quote(s)));
    }
    if let Some(n) = &p.network {
        args.push(format!("--network {}", quote(n)));
    }
    for (k, v) in &p.env {
        args.push(format!("-e {}", quote(&format!("{k}={v}"))));
    }
    for b in &p.binds {
        // `-v` splits on `:`; `--mount` does not, but splits on `,` unless the field is
        // CSV-quoted.
        if b.source.contains(':') {
            let src = if b.source.contains(',') || b.source.contains('"') {
                format!("\"source={}\"", b.source.replace('"', "\"\""))
            } else {
                format!("source={}", b.source)
            };
            args.push(format!(
                "--mount {}",
                quote(&format!("type=bind,{src},target={}", b.target))
            ));
        } else {
            args.push(format!(
                "-v {}",
                quote(&format!("{}:{}", b.source, b.target))
            ));
        }
    }
    for v in &p.volumes {
        args.push(format!("-v {}", quote(&format!("{}:{}", v.name, v.target))));
    }
    args.push(format!("-w {}", quote(&p.workdir)));
    for (k, v) in &p.labels {
        args.push(format!("--label {}", quote(&format!("{k}={v}"))));
    }
    let mut last = quote(&p.image);
    for c in &p.cmd {
        last.push(' ');
        last.push_str(&quote(c));
    }
    args.push(last);
    args.join(" \\\n  ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fixture::{FixtureGpu, FixtureHost, RENDER_GID};
    use crate::host::probe;
    use crate::recipe::Catalog;

    fn env_name(s: &str) -> crate::values::EnvName {
        crate::values::EnvName::parse(s).unwrap()
    }
    fn text(s: &str) -> crate::values::Text {
        crate::values::Text::parse(s).unwrap()
    }

    fn recipe(name: &str) -> Recipe {
        Catalog::embedded().load(name).unwrap().recipe
    }

    fn host(fx: FixtureHost) -> (HostReport, bool) {
        let t = fx.build().unwrap();
        (probe(&t.host), t.ownership_applied)
    }

    fn opts() -> RunOptions {
        RunOptions::new("/home/alice/project")
    }

    fn env_of<'a>(p: &'a RunPlan, k: &str) -> Option<&'a str> {
        p.env
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn rx5700xt_on_rocm52_gets_devices_gids_and_10_3_0() {
        let (h, owned) = host(FixtureHost::rx5700xt());
        let p = plan(&recipe("rocm52"), &h, &opts()).unwrap();
        assert_eq!(p.image, "rdna1-images:rocm52");
        assert_eq!(p.devices, vec!["/dev/kfd", "/dev/dri/renderD128"]);
        if owned {
            // kfd and the render node share the render group: one GID, numeric.
            assert_eq!(p.group_add, vec![RENDER_GID]);
        }
        assert_eq!(p.gfx_target.as_deref(), Some("gfx1010"));
        assert_eq!(env_of(&p, HSA_OVERRIDE), Some("10.3.0"));
        assert_eq!(
            env_of(&p, "MIOPEN_USER_DB_PATH"),
            Some("/var/cache/miopen/db")
        );
        assert_eq!(p.security_opt, vec!["seccomp=unconfined"]);
        assert_eq!(p.shm_size.as_deref(), Some("8g"));
        assert_eq!(p.shm_size_bytes, Some(8 << 30));
        assert!(!p.ipc_host && p.init);
        assert_eq!(
            p.binds,
            vec![Bind {
                source: "/home/alice/project".into(),
                target: "/workspace".into()
            }]
        );
        assert_eq!(
            p.volumes,
            vec![VolumeMount {
                name: "rdna1-images-miopen-rocm52".into(),
                target: "/var/cache/miopen".into()
            }]
        );
        assert_eq!(p.workdir, "/workspace");
        assert_eq!(p.labels[crate::labels::RECIPE], "rocm52");
    }

    #[test]
    fn overrides_follow_the_recipe_and_the_card() {
        let (gfx1010, _) = host(FixtureHost::rx5700xt());
        let (gfx1012, _) = host(FixtureHost::rx5500xt());
        let ov = |r: &str, h: &HostReport| {
            plan(&recipe(r), h, &opts())
                .unwrap()
                .env
                .iter()
                .find(|(k, _)| k == HSA_OVERRIDE)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(ov("rocm52", &gfx1012).as_deref(), Some("10.3.0"));
        assert_eq!(ov("rocm62", &gfx1010), None, "native: no override at all");
        assert_eq!(ov("rocm62", &gfx1012).as_deref(), Some("10.1.0"));
    }

    #[test]
    fn therock_sets_no_override_on_any_rdna1_chip() {
        // One device package per chip in the image: each runs its own code.
        let r = recipe("therock");
        let all_three = FixtureHost::rx5700xt()
            .add_gpu(FixtureGpu::pro_v520().at(129, "0000:04:00.0"))
            .add_gpu(FixtureGpu::rx5500xt().at(130, "0000:05:00.0"));
        for (fx, gfx) in [
            (FixtureHost::rx5700xt(), "gfx1010"),
            (FixtureHost::pro_v520(), "gfx1011"),
            (FixtureHost::rx5500xt(), "gfx1012"),
            (all_three, "gfx1010"),
        ] {
            let (h, _) = host(fx);
            let p = plan(&r, &h, &opts()).unwrap();
            assert_eq!(p.gfx_target.as_deref(), Some(gfx));
            assert!(
                !p.env.iter().any(|(k, _)| k == HSA_OVERRIDE),
                "{gfx}: {:?}",
                p.env
            );
            assert_eq!(env_of(&p, "TORCH_BLAS_PREFER_HIPBLASLT"), Some("0"));
            assert_eq!(p.volumes[0].name, "rdna1-images-miopen-therock");
            assert_eq!(p.volumes[0].target, "/var/cache/miopen");
        }
        let (h, _) =
            host(FixtureHost::rx5700xt().add_gpu(FixtureGpu::rx5500xt().at(129, "0000:04:00.0")));
        let p = plan(&r, &h, &opts()).unwrap();
        assert_eq!(
            p.devices.len(),
            3,
            "kfd and both render nodes: {:?}",
            p.devices
        );
    }

    #[test]
    fn gfx1030_is_refused_with_the_reason_and_the_way_out() {
        // Refused for every recipe, though rocm52's wheels carry gfx1030 code and TheRock
        // publishes a gfx1030 device package: the images are built, tested and tuned for
        // RDNA1 (device packages, overrides, MIOpen settings), and an RX 6800 is served
        // natively by the official ROCm builds.
        let (h, _) = host(FixtureHost::rx6800());
        for r in ["rocm52", "rocm62", "therock"] {
            let all = [recipe("rocm52"), recipe("rocm62"), recipe("therock")];
            let e = plan(&recipe(r), &h, &opts())
                .unwrap_err()
                .with_fits(&all, &h);
            let PlanError::UnsupportedGpu { fits, .. } = &e else {
                panic!("{e:?}")
            };
            assert!(fits.is_empty());
            let msg = e.to_string();
            assert!(msg.contains("GPU 0 (gfx1030, Navi 21"), "{msg}");
            assert!(msg.contains("gfx1010, gfx1011, gfx1012"), "{msg}");
            assert!(msg.contains("--cpu"), "{msg}");
        }
    }

    #[test]
    fn a_target_missing_from_the_recipe_names_the_recipe_that_fits() {
        let (h, _) = host(FixtureHost::rx5500xt());
        let mut only_gfx1010 = recipe("rocm62");
        only_gfx1010.gpu.targets.retain(|t, _| t == "gfx1010");
        let e = plan(&only_gfx1010, &h, &opts())
            .unwrap_err()
            .with_fits(&[recipe("rocm52"), only_gfx1010.clone()], &h);
        let msg = e.to_string();
        assert!(
            msg.contains("GPU 0 (gfx1012) fits rocm52 (HSA_OVERRIDE_GFX_VERSION=10.3.0)"),
            "{msg}"
        );
    }

    #[test]
    fn no_kfd_offers_cpu_and_cpu_mode_drops_every_gpu_setting() {
        let (h, _) = host(FixtureHost::no_gpu());
        let e = plan(&recipe("rocm52"), &h, &opts()).unwrap_err();
        assert_eq!(
            e,
            PlanError::NoKfd {
                recipe: "rocm52".into()
            }
        );
        assert!(
            e.to_string().contains("rdna1-images run --cpu rocm52"),
            "{e}"
        );

        let cpu = RunOptions {
            cpu: true,
            cmd: vec!["python3".into(), "-c".into(), "import torch".into()],
            ..opts()
        };
        let p = plan(&recipe("rocm52"), &h, &cpu).unwrap();
        assert!(p.devices.is_empty() && p.group_add.is_empty() && p.security_opt.is_empty());
        assert!(p.gpus.is_empty() && p.gfx_target.is_none());
        assert_eq!(env_of(&p, HSA_OVERRIDE), None);
        // The caches and /dev/shm still matter on the CPU.
        assert_eq!(p.volumes.len(), 1);
        assert_eq!(p.shm_size.as_deref(), Some("8g"));
        assert_eq!(p.cmd, vec!["python3", "-c", "import torch"]);

        // --cpu on a GPU host passes nothing either.
        let (h, _) = host(FixtureHost::rx5700xt());
        let p = plan(&recipe("rocm52"), &h, &cpu).unwrap();
        assert!(p.devices.is_empty() && p.group_add.is_empty());
        assert_eq!(env_of(&p, HSA_OVERRIDE), None);
    }

    #[test]
    fn gpu_n_picks_one_render_node() {
        let fx = FixtureHost::rx5700xt()
            .add_gpu(FixtureGpu::rx5700xt().at(129, "0000:04:00.0"))
            .add_gpu(FixtureGpu::rx6800().at(130, "0000:05:00.0"));
        let (h, _) = host(fx);
        let r = recipe("rocm52");

        // Default: every GPU the recipe lists, and only those.
        let p = plan(&r, &h, &opts()).unwrap();
        assert_eq!(
            p.devices,
            vec!["/dev/kfd", "/dev/dri/renderD128", "/dev/dri/renderD129"]
        );
        assert_eq!(p.gpus, vec![0, 1]);
        assert!(
            p.notes
                .iter()
                .any(|n| n.starts_with("GPU 2 (gfx1030") && n.contains("left out")),
            "{:?}",
            p.notes
        );

        let one = RunOptions {
            gpu: Some(1),
            ..opts()
        };
        let p = plan(&r, &h, &one).unwrap();
        assert_eq!(p.devices, vec!["/dev/kfd", "/dev/dri/renderD129"]);
        assert_eq!(p.gpus, vec![1]);

        let e = plan(
            &r,
            &h,
            &RunOptions {
                gpu: Some(2),
                ..opts()
            },
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                PlanError::UnsupportedGpu {
                    other_gpus: true,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("--gpu N"));

        let e = plan(
            &r,
            &h,
            &RunOptions {
                gpu: Some(7),
                ..opts()
            },
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("--gpu 7: this host has 3 GPU(s): GPU 0 (gfx1010"),
            "{msg}"
        );
        assert!(msg.contains("GPU 2 (gfx1030"), "{msg}");
    }

    #[test]
    fn gpus_that_need_different_overrides_need_gpu_n() {
        let fx = FixtureHost::rx5700xt().add_gpu(FixtureGpu::rx5500xt().at(129, "0000:04:00.0"));
        let (h, _) = host(fx);
        // rocm52 gives both 10.3.0: fine together.
        let p = plan(&recipe("rocm52"), &h, &opts()).unwrap();
        assert_eq!(p.gpus, vec![0, 1]);
        // rocm62: gfx1010 native, gfx1012 10.1.0: one process cannot have both.
        let e = plan(&recipe("rocm62"), &h, &opts()).unwrap_err();
        assert!(matches!(e, PlanError::MixedOverrides { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains("needs none") && msg.contains("needs 10.1.0") && msg.contains("--gpu N"),
            "{msg}"
        );
        let p = plan(
            &recipe("rocm62"),
            &h,
            &RunOptions {
                gpu: Some(1),
                ..opts()
            },
        )
        .unwrap();
        assert_eq!(env_of(&p, HSA_OVERRIDE), Some("10.1.0"));
    }

    #[test]
    fn locked_devices_still_get_their_numeric_gids() {
        let (h, owned) = host(FixtureHost::rx5500xt().not_in_render_group());
        let p = plan(&recipe("rocm62"), &h, &opts()).unwrap();
        if owned {
            assert_eq!(p.group_add, vec![RENDER_GID]);
        }
        assert_eq!(p.devices, vec!["/dev/kfd", "/dev/dri/renderD128"]);
    }

    #[test]
    fn shm_and_ipc_options() {
        let (h, _) = host(FixtureHost::rx5700xt());
        let r = recipe("rocm52");
        let p = plan(
            &r,
            &h,
            &RunOptions {
                shm_size: Some("512m".into()),
                ..opts()
            },
        )
        .unwrap();
        assert_eq!(p.shm_size_bytes, Some(512 << 20));
        // The host's /dev/shm replaces a private one: --shm-size would be silently ignored.
        let p = plan(
            &r,
            &h,
            &RunOptions {
                ipc_host: true,
                shm_size: Some("1g".into()),
                ..opts()
            },
        )
        .unwrap();
        assert!(p.ipc_host && p.shm_size.is_none());
        let e = plan(
            &r,
            &h,
            &RunOptions {
                shm_size: Some("lots".into()),
                ..opts()
            },
        )
        .unwrap_err();
        assert_eq!(e, PlanError::BadShmSize("lots".into()));
        assert_eq!(parse_size("8G"), Some(8 << 30));
        assert_eq!(parse_size("2gb"), Some(2 << 30));
        assert_eq!(parse_size("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("8x"), None);
        let e = plan(&r, &h, &RunOptions::new("project")).unwrap_err();
        assert!(matches!(e, PlanError::RelativeWorkdir(_)));
    }

    #[test]
    fn miopen_caches_share_a_volume_only_when_close() {
        let mut r = recipe("rocm52");
        let vols = |r: &Recipe| {
            let mut env = Vec::new();
            let mut notes = Vec::new();
            let v = miopen_volumes(r, &mut env, &mut notes);
            (v, env, notes)
        };
        r.env
            .insert(env_name(MIOPEN_DB_ENV), text("/root/.config/miopen"));
        r.env
            .insert(env_name(MIOPEN_KERNELS_ENV), text("/root/.cache/miopen"));
        let (v, _, _) = vols(&r);
        assert_eq!(
            v.iter()
                .map(|v| (v.name.as_str(), v.target.as_str()))
                .collect::<Vec<_>>(),
            vec![
                ("rdna1-images-miopen-rocm52-db", "/root/.config/miopen"),
                ("rdna1-images-miopen-rocm52-kernels", "/root/.cache/miopen")
            ]
        );
        r.env.insert(env_name(MIOPEN_DB_ENV), text("/opt/miopen"));
        r.env
            .insert(env_name(MIOPEN_KERNELS_ENV), text("/opt/miopen/kernels/"));
        assert_eq!(vols(&r).0[0].target, "/opt/miopen");
        r.env.remove(MIOPEN_DB_ENV);
        r.env.remove(MIOPEN_KERNELS_ENV);
        let (v, env, _) = vols(&r);
        assert_eq!(v[0].target, MIOPEN_CACHE);
        assert!(env.contains(&(
            MIOPEN_KERNELS_ENV.into(),
            "/var/cache/miopen/kernels".into()
        )));
    }

    #[test]
    fn docker_cli_is_a_pasteable_command() {
        let (h, owned) = host(FixtureHost::rx5500xt());
        let o = RunOptions {
            interactive: true,
            workdir_host: "/home/alice/my project".into(),
            cmd: vec![
                "python3".into(),
                "-c".into(),
                "import torch; print(torch.cuda.is_available())".into(),
            ],
            ..opts()
        };
        let p = plan(&recipe("rocm62"), &h, &o).unwrap();
        let cli = docker_cli(&p);
        let gid = p.group_add.first().copied().unwrap_or(0);
        let expected = format!(
            "docker run --rm \\
  -it \\
  --init \\
  --device /dev/kfd \\
  --device /dev/dri/renderD128 \\
  --group-add {gid} \\
  --security-opt seccomp=unconfined \\
  --shm-size 8g \\
  -e MIOPEN_CUSTOM_CACHE_DIR=/var/cache/miopen/kernels \\
  -e MIOPEN_FIND_MODE=2 \\
  -e MIOPEN_USER_DB_PATH=/var/cache/miopen/db \\
  -e PYTORCH_HIP_ALLOC_CONF=garbage_collection_threshold:0.9,max_split_size_mb:512 \\
  -e TORCH_BLAS_PREFER_HIPBLASLT=0 \\
  -e HSA_OVERRIDE_GFX_VERSION=10.1.0 \\
  -v '/home/alice/my project:/workspace' \\
  -v rdna1-images-miopen-rocm62:/var/cache/miopen \\
  -w /workspace \\
  --label io.github.rdna1-images.recipe=rocm62 \\
  --label io.github.rdna1-images.role=run \\
  rdna1-images:rocm62 python3 -c 'import torch; print(torch.cuda.is_available())'"
        );
        assert_eq!(cli, expected);
        if owned {
            assert_eq!(gid, RENDER_GID);
        }
        // The shell gives back the exact words.
        let words = shlex::split(&cli.replace("\\\n", "")).unwrap();
        assert_eq!(
            words.last().unwrap(),
            "import torch; print(torch.cuda.is_available())"
        );
        assert!(words.contains(&"/home/alice/my project:/workspace".to_string()));

        let p = plan(
            &recipe("rocm62"),
            &h,
            &RunOptions {
                workdir_host: "/data/a:b,c".into(),
                cpu: true,
                ..opts()
            },
        )
        .unwrap();
        let cli = docker_cli(&p);
        let words = shlex::split(&cli.replace("\\\n", "")).unwrap();
        assert!(
            words.contains(&"type=bind,\"source=/data/a:b,c\",target=/workspace".to_string()),
            "{cli}"
        );
        assert!(!cli.contains("--device") && !cli.contains("-it"));
        // Without a terminal stdin still reaches the program, as with `docker run -i`.
        assert_eq!(words[3], "-i", "{cli}");
    }

    #[test]
    fn missing_image_hint_says_build_or_pull() {
        let h = missing_image_hint(&recipe("rocm62"));
        assert!(
            h.contains("rdna1-images build rocm62")
                && h.contains("rdna1-images pull rocm62")
                && h.contains("hours"),
            "{h}"
        );
    }
}
