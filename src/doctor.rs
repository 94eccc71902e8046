//! `doctor`: is this host ready to build the images, and to run them on its GPU?
//!
//! Pure judging of a [`HostReport`] and an [`EngineStatus`] (which the engine module fills):
//! per GPU, which recipe to use; every problem with the command that fixes it; and two
//! answers, because a machine with no AMD GPU is fine for builds with CPU smoke tests and
//! useless for `run` on the GPU. `--for build|gpu` picks which answer sets the exit code.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::host::{AccessVia, DeviceFile, GpuInfo, HostReport};
use crate::recipe::{PyTorch, Recipe};
pub use crate::recipe_choice::{recipes_for, RecipeChoice};

mod text;

pub use text::*;

/// What the engine module found; filled by the lead's code, judged here.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EngineStatus {
    pub reachable: bool,
    /// `Version` of `docker version` (server).
    pub version: Option<String>,
    /// Server API version, `1.41`.
    pub api_version: Option<String>,
    /// Whether builds can use BuildKit (cache mounts need it); `None` when not checked.
    pub buildkit: Option<bool>,
    /// The engine maps container root to an unprivileged host user (rootless Docker, or
    /// userns-remap: `docker info` SecurityOptions has `name=rootless` or `name=userns`).
    /// Then the host user's groups decide device access; with rootful Docker they do not.
    pub rootless: Option<bool>,
    /// Where the engine keeps images (`DockerRootDir`).
    pub root_dir: Option<String>,
    /// Free space there ([`free_disk`]), only when the engine runs on this machine.
    pub free_disk_bytes: Option<u64>,
    /// Why it is unreachable, as the client said it.
    pub error: Option<String>,
    /// What to do about it, fitted to the endpoint and how it was chosen.
    pub fix: Option<String>,
    /// Where the engine is and how it was chosen (DOCKER_HOST, a context, the default).
    pub endpoint: Option<crate::endpoint::Endpoint>,
    /// The same choice in words: "context `builder` from ~/.docker/config.json".
    pub chosen_by: Option<String>,
    /// Where the engine keeps images: the classic graph driver or containerd's store.
    pub store: Option<Store>,
    /// `OSType` and `Architecture` of `docker info`: the recipes build linux/amd64 images.
    pub os_type: Option<String>,
    pub architecture: Option<String>,
}

/// The engine's image store. The two save images differently (docker archive vs OCI
/// layout) and give different image IDs (config digest vs manifest digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Store {
    /// The graph driver store: `overlay2`, `fuse-overlayfs`, `vfs`...
    Classic { driver: String },
    /// The containerd image store (`features.containerd-snapshotter`), with its snapshotter.
    Containerd { snapshotter: String },
}

impl Store {
    /// From `docker info`: `Driver` and the `driver-type` of `DriverStatus`.
    pub fn from_info(driver: &str, driver_type: Option<&str>) -> Store {
        if driver_type == Some("io.containerd.snapshotter.v1") {
            Store::Containerd {
                snapshotter: driver.to_string(),
            }
        } else {
            Store::Classic {
                driver: driver.to_string(),
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Store::Classic { driver } => format!("classic image store, graph driver {driver}"),
            Store::Containerd { snapshotter } => {
                format!("containerd image store, snapshotter {snapshotter}")
            }
        }
    }
}

impl EngineStatus {
    pub fn unreachable(error: impl Into<String>) -> Self {
        EngineStatus {
            error: Some(error.into()),
            ..Default::default()
        }
    }
}

/// Bytes available to unprivileged users on the filesystem holding `path` (statvfs
/// `f_bavail`), walking up to the nearest existing folder: a rootless engine's data root may
/// not exist yet, and a rootful one's may not be listable by the user.
pub fn free_disk(path: &Path) -> Option<u64> {
    let mut p = Some(path);
    while let Some(cur) = p {
        if let Ok(st) = rustix::fs::statvfs(cur) {
            return Some(st.f_bavail.saturating_mul(st.f_frsize));
        }
        p = cur.parent();
    }
    None
}

const GB: u64 = 1_000_000_000;

/// Free space a recipe's build needs where the engine keeps images. Estimates with margin,
/// to be replaced by measurements:
/// - wheels (rocm52): the torch wheel is ~1.6 GB and unpacks to several GB of bundled ROCm
///   libraries; with pip's download, the layer, and the previous good image kept tagged
///   while its successor is built and smoke-tested, ~20 GB.
/// - source (rocm62): the ROCm 6.2 `-complete` base is tens of GB unpacked, the PyTorch
///   build tree another 15-20 GB, plus the ccache mount and the runtime stage: ~80 GB.
/// - preinstalled (test fixtures on the local Debian base): a few GB.
pub fn disk_need_bytes(recipe: &Recipe) -> u64 {
    match recipe.pytorch {
        PyTorch::Wheels(_) => 20 * GB,
        PyTorch::Source(_) => 80 * GB,
        PyTorch::Preinstalled(_) => 5 * GB,
    }
}

/// Which readiness question decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Focus {
    /// Builds with CPU smoke tests: the engine and disk.
    Build,
    /// Everything `build` needs, plus a supported GPU the engine can pass to containers.
    Gpu,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth fixing; nothing fails because of it.
    Warning,
    /// GPU smoke tests and `run` on the GPU fail; builds with CPU smoke tests work.
    BlocksGpu,
    /// Nothing works until it is fixed.
    BlocksAll,
}

impl Severity {
    pub fn blocks(self, focus: Focus) -> bool {
        match self {
            Severity::Warning => false,
            Severity::BlocksGpu => focus == Focus::Gpu,
            Severity::BlocksAll => true,
        }
    }
}

/// One thing wrong, and what to do about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// Stable, for scripts and tests: `engine-unreachable`, `device-access`...
    pub id: &'static str,
    pub severity: Severity,
    pub what: String,
    pub fix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// At least one recipe lists the GPU's gfx target.
    Supported,
    /// RDNA1, but no recipe lists its target (gfx1013).
    Rdna1WithoutRecipe,
    /// An AMD GPU of another generation.
    NotRdna1,
    /// The kernel reports no gfx target.
    Unknown,
}

/// What to use on one GPU.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuAdvice {
    pub index: usize,
    pub gfx_target: Option<String>,
    pub label: String,
    pub is_rdna1: bool,
    pub verdict: Verdict,
    /// Best first.
    pub recipes: Vec<RecipeChoice>,
    /// One line for people.
    pub summary: String,
}

/// Per GPU: its target, whether it is RDNA1, and which recipes to use.
pub fn advice(host: &HostReport, recipes: &[Recipe]) -> Vec<GpuAdvice> {
    host.gpus.iter().map(|g| advise_gpu(g, recipes)).collect()
}

fn advise_gpu(g: &GpuInfo, recipes: &[Recipe]) -> GpuAdvice {
    let choices = g.gfx.map(|v| recipes_for(&v, recipes)).unwrap_or_default();
    let target = g.gfx_target.clone().unwrap_or_else(|| "unknown".into());
    let (verdict, summary) = match g.gfx {
        None => (
            Verdict::Unknown,
            "the kernel does not report a gfx target (gfx_target_version): too old for ROCm"
                .to_string(),
        ),
        Some(_) if !choices.is_empty() => {
            let list: Vec<String> = choices.iter().map(|c| c.describe()).collect();
            (
                Verdict::Supported,
                format!("RDNA1: use {}", list.join(", or ")),
            )
        }
        Some(v) if v.is_rdna1() => (
            Verdict::Rdna1WithoutRecipe,
            format!(
                "RDNA1, but no recipe lists {target}: add it to a recipe's gpu.targets (untested)"
            ),
        ),
        Some(_) => (
            Verdict::NotRdna1,
            format!("{target} is not RDNA1: not what these images are for"),
        ),
    };
    GpuAdvice {
        index: g.index,
        gfx_target: g.gfx_target.clone(),
        label: g.label(),
        is_rdna1: g.is_rdna1,
        verdict,
        recipes: choices,
        summary,
    }
}

/// The two answers `doctor` gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// Builds with CPU smoke tests will work.
    pub build: bool,
    /// GPU smoke tests and `run` on the GPU will work too.
    pub gpu: bool,
}

/// The whole diagnosis; serialized as is for `doctor --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Doctor {
    pub ready: Readiness,
    pub host: HostReport,
    pub engine: EngineStatus,
    pub gpus: Vec<GpuAdvice>,
    pub problems: Vec<Problem>,
    /// Per recipe, the free space its build needs.
    pub disk_needs: Vec<DiskNeed>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskNeed {
    pub recipe: String,
    pub bytes: u64,
}

/// Judges the host and engine against the recipes (for advice and disk needs).
pub fn diagnose(host: HostReport, engine: EngineStatus, recipes: &[Recipe]) -> Doctor {
    let gpus = advice(&host, recipes);
    let disk_needs: Vec<DiskNeed> = recipes
        .iter()
        .map(|r| DiskNeed {
            recipe: r.name.to_string(),
            bytes: disk_need_bytes(r),
        })
        .collect();
    let mut problems = Vec::new();
    engine_problems(&engine, &disk_needs, &mut problems);
    gpu_problems(&host, &engine, &gpus, &mut problems);
    let build = !problems.iter().any(|p| p.severity.blocks(Focus::Build));
    let supported = gpus.iter().any(|a| a.verdict == Verdict::Supported);
    let gpu = build && supported && !problems.iter().any(|p| p.severity.blocks(Focus::Gpu));
    Doctor {
        ready: Readiness { build, gpu },
        host,
        engine,
        gpus,
        problems,
        disk_needs,
    }
}

fn engine_problems(engine: &EngineStatus, needs: &[DiskNeed], out: &mut Vec<Problem>) {
    if !engine.reachable {
        let err = engine.error.as_deref().unwrap_or("no answer");
        let fix = match &engine.fix {
            Some(f) => f.clone(),
            None if err.to_ascii_lowercase().contains("permission denied") => {
                "add your user to group docker: `sudo usermod -aG docker $USER`, then log out and back in (or use rootless Docker)".into()
            }
            None => "start it: `sudo systemctl start docker`; if it runs elsewhere, set DOCKER_HOST to it".into(),
        };
        out.push(Problem {
            id: "engine-unreachable",
            severity: Severity::BlocksAll,
            what: format!("the Docker engine is not reachable: {err}"),
            fix,
        });
        return;
    }
    // Either image store works (the classic one and containerd's, `image_archive` reads
    // both saves): the store is reported, not judged.
    platform_problems(engine, out);
    if engine.buildkit == Some(false) {
        out.push(Problem {
            id: "engine-no-buildkit",
            severity: Severity::BlocksAll,
            what:
                "the Docker engine cannot build with BuildKit, which the recipes' cache mounts need"
                    .into(),
            fix: "upgrade Docker to 18.09 or newer (API 1.39+)".into(),
        });
    }
    if let Some(api) = &engine.api_version {
        let parsed: Option<(u32, u32)> = api
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
        if parsed.is_some_and(|v| v < (1, 41)) {
            out.push(Problem {
                id: "engine-old",
                severity: Severity::Warning,
                what: format!(
                    "Docker API {api} is older than 1.41, the oldest this tool is tested with"
                ),
                fix: "upgrade Docker (Docker 20.10 speaks API 1.41)".into(),
            });
        }
    }
    if let Some(free) = engine.free_disk_bytes {
        let place = engine.root_dir.as_deref().unwrap_or("Docker's data root");
        let short: Vec<&DiskNeed> = needs.iter().filter(|n| n.bytes > free).collect();
        let fix = format!(
            "free space on the filesystem of {place} (`docker system prune`, `docker builder prune`), or move Docker's data-root to a bigger disk"
        );
        if !needs.is_empty() && short.len() == needs.len() {
            let least = needs.iter().map(|n| n.bytes).min().unwrap_or(0);
            out.push(Problem {
                id: "disk-low",
                severity: Severity::BlocksAll,
                what: format!(
                    "{} free under {place}; the smallest build needs about {}",
                    human_bytes(free),
                    human_bytes(least)
                ),
                fix,
            });
        } else if !short.is_empty() {
            let list: Vec<String> = short
                .iter()
                .map(|n| format!("{} needs about {}", n.recipe, human_bytes(n.bytes)))
                .collect();
            out.push(Problem {
                id: "disk-low",
                severity: Severity::Warning,
                what: format!(
                    "{} free under {place}: {}",
                    human_bytes(free),
                    list.join(", ")
                ),
                fix,
            });
        }
    }
}

/// The recipes install x86_64 wheels and Debian/Ubuntu packages into Linux images: an
/// engine for Windows containers or another CPU cannot build them (without emulation).
fn platform_problems(engine: &EngineStatus, out: &mut Vec<Problem>) {
    let remote_fix = "build on a Linux x86_64 engine instead: `DOCKER_HOST=ssh://builder rdna1-images build <recipe>`, or `docker context use <context>`";
    if let Some(os) = engine.os_type.as_deref().filter(|os| *os != "linux") {
        out.push(Problem {
            id: "engine-not-linux",
            severity: Severity::BlocksAll,
            what: format!("the Docker engine runs {os} containers; the images are Linux images"),
            fix: format!("switch the engine to Linux containers (Docker Desktop: \"Switch to Linux containers\"), or {remote_fix}"),
        });
    }
    if let Some(arch) = engine
        .architecture
        .as_deref()
        .filter(|a| !matches!(*a, "x86_64" | "amd64"))
    {
        out.push(Problem {
            id: "engine-not-x86_64",
            severity: Severity::BlocksAll,
            what: format!(
                "the Docker engine runs on {arch}; the PyTorch ROCm wheels and ROCm packages exist for x86_64 only"
            ),
            fix: remote_fix.into(),
        });
    }
}

fn gpu_problems(
    host: &HostReport,
    engine: &EngineStatus,
    advice: &[GpuAdvice],
    out: &mut Vec<Problem>,
) {
    const CPU_PATH: &str = "builds with `--smoke cpu` and `run --cpu` work without it";
    if host.gpus.is_empty() {
        let (id, what, fix) = if !host.amdgpu_loaded && !host.kfd.exists {
            match host.pci_amd_gpus.first() {
                Some(p) => (
                    "amdgpu-not-loaded",
                    format!(
                        "an AMD GPU is on the PCI bus ({} at {}) but the amdgpu driver is not loaded",
                        p.chip.clone().unwrap_or_else(|| format!("device {:04x}", p.device_id)),
                        p.address
                    ),
                    format!(
                        "`sudo modprobe amdgpu`; if it does not load, remove `nomodeset` or amdgpu blacklists from the kernel command line and /etc/modprobe.d, and install the Navi firmware (Debian: firmware-amd-graphics); {CPU_PATH}"
                    ),
                ),
                None => (
                    "no-amd-gpu",
                    "no AMD GPU found (no amdgpu driver, no /dev/kfd): builds and CPU smoke tests work here, GPU smoke tests and `run` on the GPU do not".to_string(),
                    format!("{CPU_PATH}; for the GPU, use a machine with an RX 5000-series (RDNA1) card"),
                ),
            }
        } else if !host.kfd.exists {
            (
                "no-kfd",
                "amdgpu is loaded but /dev/kfd is missing: the kernel has no HSA/KFD support (CONFIG_HSA_AMD)".to_string(),
                format!("use a kernel built with CONFIG_HSA_AMD=y (the stock Debian, Ubuntu, Fedora and Arch kernels are); {CPU_PATH}"),
            )
        } else {
            (
                "no-gpu-node",
                "/dev/kfd exists but the KFD topology lists no GPU".to_string(),
                format!("look for KFD errors in `sudo dmesg | grep -i kfd` (a GPU KFD does not support is skipped there); {CPU_PATH}"),
            )
        };
        out.push(Problem {
            id,
            severity: Severity::BlocksGpu,
            what,
            fix,
        });
        return;
    }

    if !host.kfd.exists {
        out.push(Problem {
            id: "no-kfd",
            severity: Severity::BlocksGpu,
            what: "the KFD topology lists GPUs but /dev/kfd does not exist".into(),
            fix: "udev did not create it: check `ls -l /dev/kfd` and `sudo dmesg | grep -i kfd`, and that no container or chroot hides /dev".into(),
        });
    } else if host.is_real() && !host.kfd.char_device {
        out.push(Problem {
            id: "not-a-device",
            severity: Severity::BlocksGpu,
            what: "/dev/kfd is not a character device".into(),
            fix: "something replaced it: `sudo rm /dev/kfd` and reload amdgpu (or reboot)".into(),
        });
    }

    let supported: Vec<&GpuAdvice> = advice
        .iter()
        .filter(|a| a.verdict == Verdict::Supported)
        .collect();
    for a in advice.iter().filter(|a| a.verdict != Verdict::Supported) {
        let fix = match a.verdict {
            Verdict::Unknown => "upgrade to a kernel that reports gfx_target_version in the KFD topology (any 5.x or newer distribution kernel)".to_string(),
            Verdict::Rdna1WithoutRecipe => format!(
                "add {} to a recipe's gpu.targets with the override to try (10.1.0 runs gfx1010 code), and build it",
                a.gfx_target.as_deref().unwrap_or("it")
            ),
            _ => format!(
                "these images carry RDNA1 workarounds only; for {} use the official PyTorch ROCm wheels or rocm/pytorch images, which support RDNA2 and newer natively",
                a.gfx_target.as_deref().unwrap_or("it")
            ),
        };
        if supported.is_empty() {
            out.push(Problem {
                id: "no-supported-gpu",
                severity: Severity::BlocksGpu,
                what: format!("GPU {} ({}): {}", a.index, a.label, a.summary),
                fix: format!("{fix}; {CPU_PATH}"),
            });
        } else {
            out.push(Problem {
                id: "gpu-not-supported",
                severity: Severity::Warning,
                what: format!(
                    "GPU {} ({}): {}; `run` leaves it out",
                    a.index, a.label, a.summary
                ),
                fix: format!("nothing to do for these images; {fix}"),
            });
        }
    }

    // Render nodes of the GPUs these images can use.
    let mut usable = 0;
    let mut missing = Vec::new();
    for a in &supported {
        let g = &host.gpus[a.index];
        match g.render_node.as_deref().and_then(|p| host.render_node(p)) {
            Some(d) if d.exists => usable += 1,
            _ => missing.push(g),
        }
    }
    for g in &missing {
        let what = match &g.render_node {
            Some(p) => format!(
                "GPU {} ({}): its render node {p} does not exist",
                g.index,
                g.label()
            ),
            None => format!(
                "GPU {} ({}): the KFD topology gives no render node (drm_render_minor)",
                g.index,
                g.label()
            ),
        };
        out.push(Problem {
            id: "render-node-missing",
            severity: if usable == 0 {
                Severity::BlocksGpu
            } else {
                Severity::Warning
            },
            what,
            fix: "check `ls -l /dev/dri` and `sudo dmesg | grep -i amdgpu` for an initialisation error".into(),
        });
    }

    // Access: the files `run` passes (kfd + the supported GPUs' render nodes).
    let mut files: Vec<&DeviceFile> = Vec::new();
    if host.kfd.exists {
        files.push(&host.kfd);
    }
    for a in &supported {
        if let Some(d) = host.gpus[a.index]
            .render_node
            .as_deref()
            .and_then(|p| host.render_node(p))
            .filter(|d| d.exists)
        {
            files.push(d);
        }
    }
    access_problems(&files, engine, out);
}

fn access_problems(files: &[&DeviceFile], engine: &EngineStatus, out: &mut Vec<Problem>) {
    let rootless = engine.rootless == Some(true);
    let severity = if rootless {
        Severity::BlocksGpu
    } else {
        Severity::Warning
    };
    // Rootful Docker runs containers as root, which opens the devices whatever the host
    // user's groups; say that, or a user chases a fix that changes nothing for `run`.
    let consequence = if rootless {
        "rootless Docker opens the devices as you, so GPU containers fail"
    } else {
        "containers of rootful Docker run as root and open them anyway, but rootless Docker, `--user` runs and ROCm tools on the host cannot"
    };
    let unknown: Vec<&&DeviceFile> = files
        .iter()
        .filter(|d| d.access == AccessVia::Unknown)
        .collect();
    for d in unknown {
        out.push(Problem {
            id: "device-unreadable",
            severity,
            what: format!(
                "cannot inspect {}: {}",
                d.path,
                d.error.as_deref().unwrap_or("unknown error")
            ),
            fix: format!("check `ls -l {}`", d.path),
        });
    }
    // One problem per owning group: one usermod fixes all its files.
    let mut by_gid: Vec<(Option<u32>, Vec<&DeviceFile>)> = Vec::new();
    for d in files.iter().filter(|d| d.access == AccessVia::Denied) {
        match by_gid.iter_mut().find(|(g, _)| *g == d.gid) {
            Some((_, v)) => v.push(d),
            None => by_gid.push((d.gid, vec![d])),
        }
    }
    for (gid, ds) in by_gid {
        let d = ds[0];
        let paths: Vec<String> = ds
            .iter()
            .map(|d| format!("{} ({})", d.path, owner(d)))
            .collect();
        let gid_s = gid.map_or_else(|| "?".to_string(), |g| g.to_string());
        let group_writable = d.mode.is_some_and(|m| m & 0o060 == 0o060);
        let fix = match (&d.group_name, gid) {
            _ if gid == Some(0) || !group_writable => String::from(
                "give the device to group render with a udev rule, e.g. /etc/udev/rules.d/70-kfd.rules: `SUBSYSTEM==\"kfd\", GROUP=\"render\", MODE=\"0660\"` and `SUBSYSTEM==\"drm\", KERNEL==\"renderD*\", GROUP=\"render\", MODE=\"0660\"`, then `sudo udevadm trigger` and add your user to group render"
            ),
            (Some(name), _) if d.in_group_configured => format!(
                "you were added to group {name} (GID {gid_s}) after this session started: log out and back in (or start a shell with `newgrp {name}`)"
            ),
            (Some(name), _) => format!(
                "add your user to group {name} (GID {gid_s}): `sudo usermod -aG {name} $USER`, then log out and back in"
            ),
            (None, _) => format!(
                "GID {gid_s} has no name in /etc/group: create one (`sudo groupadd -g {gid_s} render`) and add your user to it (`sudo usermod -aG render $USER`), then log out and back in"
            ),
        };
        out.push(Problem {
            id: "device-access",
            severity,
            what: format!("you cannot open {}: {consequence}", paths.join(", ")),
            fix,
        });
    }
}

fn owner(d: &DeviceFile) -> String {
    let group = match (&d.group_name, d.gid) {
        (Some(n), Some(g)) => format!("{n}, GID {g}"),
        (None, Some(g)) => format!("GID {g}"),
        _ => "?".into(),
    };
    let mode = d.mode.map_or_else(|| "?".into(), |m| format!("{m:04o}"));
    format!("group {group}, mode {mode}")
}

/// 0 when ready for `focus`, 3 (the environment) otherwise.
pub fn exit_code(doctor: &Doctor, focus: Focus) -> i32 {
    let ready = match focus {
        Focus::Build => doctor.ready.build,
        Focus::Gpu => doctor.ready.gpu,
    };
    if ready {
        0
    } else {
        3
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fixture::{FixtureGpu, FixtureHost, RENDER_GID};
    use crate::host::probe;
    use crate::recipe::Catalog;

    fn recipes() -> Vec<Recipe> {
        let cat = Catalog::embedded();
        ["rocm52", "rocm62", "therock"]
            .iter()
            .map(|n| cat.load(n).unwrap().recipe)
            .collect()
    }

    fn engine_ok() -> EngineStatus {
        EngineStatus {
            reachable: true,
            version: Some("20.10.24".into()),
            api_version: Some("1.41".into()),
            buildkit: Some(true),
            rootless: Some(false),
            root_dir: Some("/var/lib/docker".into()),
            free_disk_bytes: Some(500 * GB),
            store: Some(Store::Classic {
                driver: "overlay2".into(),
            }),
            os_type: Some("linux".into()),
            architecture: Some("x86_64".into()),
            ..Default::default()
        }
    }

    struct Run {
        doctor: Doctor,
        owned: bool,
    }

    fn doctor_on(fx: FixtureHost, engine: EngineStatus) -> Run {
        let t = fx.build().unwrap();
        let doctor = diagnose(probe(&t.host), engine, &recipes());
        Run {
            doctor,
            owned: t.ownership_applied,
        }
    }

    fn ids(d: &Doctor) -> Vec<&'static str> {
        d.problems.iter().map(|p| p.id).collect()
    }

    fn json(d: &Doctor) -> serde_json::Value {
        let text = serde_json::to_string_pretty(d).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for key in ["ready", "host", "engine", "gpus", "problems", "disk_needs"] {
            assert!(v.get(key).is_some(), "JSON lacks `{key}`: {text}");
        }
        v
    }

    fn choices(a: &GpuAdvice) -> Vec<(String, Option<String>)> {
        a.recipes
            .iter()
            .map(|c| (c.recipe.clone(), c.hsa_override.clone()))
            .collect()
    }

    #[test]
    fn rx5700xt_is_ready_and_gets_therock_first() {
        let Run { doctor: d, owned } = doctor_on(FixtureHost::rx5700xt(), engine_ok());
        assert_eq!(d.gpus.len(), 1);
        let a = &d.gpus[0];
        assert_eq!(a.gfx_target.as_deref(), Some("gfx1010"));
        assert!(a.is_rdna1);
        assert_eq!(a.verdict, Verdict::Supported);
        // Native current PyTorch first, then the proven fallback with its override, then
        // the source build.
        assert_eq!(
            choices(a),
            vec![
                ("therock".into(), None),
                ("rocm52".into(), Some("10.3.0".into())),
                ("rocm62".into(), None)
            ]
        );
        assert!(
            a.summary.contains(
                "therock (native), or rocm52 (HSA_OVERRIDE_GFX_VERSION=10.3.0), or rocm62 (native)"
            ),
            "{}",
            a.summary
        );
        assert!(
            a.recipes[0].why.contains("PyTorch 2.12.0+rocm10.1.0"),
            "{}",
            a.recipes[0].why
        );
        if owned {
            assert!(d.problems.is_empty(), "{:?}", d.problems);
            assert_eq!(
                d.ready,
                Readiness {
                    build: true,
                    gpu: true
                }
            );
            assert_eq!(exit_code(&d, Focus::Gpu), 0);
        }
        assert_eq!(exit_code(&d, Focus::Build), 0);
        let v = json(&d);
        assert_eq!(v["gpus"][0]["gfx_target"], "gfx1010");
        assert_eq!(v["gpus"][0]["recipes"][0]["recipe"], "therock");
        assert_eq!(
            v["gpus"][0]["recipes"][0]["hsa_override"],
            serde_json::Value::Null
        );
        assert_eq!(v["gpus"][0]["recipes"][1]["recipe"], "rocm52");
        assert_eq!(v["gpus"][0]["recipes"][1]["hsa_override"], "10.3.0");
        assert_eq!(v["host"]["gpus"][0]["gfx_target_version"], 100100);
        assert_eq!(v["host"]["gpus"][0]["render_node"], "/dev/dri/renderD128");
        if owned {
            assert_eq!(v["host"]["kfd"]["mode"], "0660");
            assert_eq!(v["host"]["kfd"]["gid"], RENDER_GID);
            assert_eq!(v["ready"]["gpu"], true);
        }
        let text = render_human(&d);
        assert!(text.contains("GPU 0  gfx1010, Navi 10"), "{text}");
        assert!(
            text.contains("Ready for GPU smoke tests and run:  yes") || !owned,
            "{text}"
        );
    }

    #[test]
    fn rx5500xt_gets_therock_native_then_rocm62_with_10_1_0() {
        let Run { doctor: d, owned } = doctor_on(FixtureHost::rx5500xt(), engine_ok());
        let a = &d.gpus[0];
        assert_eq!(a.gfx_target.as_deref(), Some("gfx1012"));
        assert!(a.is_rdna1);
        assert_eq!(
            choices(a),
            vec![
                ("therock".into(), None),
                ("rocm62".into(), Some("10.1.0".into())),
                ("rocm52".into(), Some("10.3.0".into()))
            ]
        );
        assert!(a.recipes[0].why.contains("built for gfx1012: native code"));
        assert!(
            a.recipes[1].why.contains("same family"),
            "{}",
            a.recipes[1].why
        );
        assert!(a.recipes[2].why.contains("another generation"));
        if owned {
            assert_eq!(exit_code(&d, Focus::Gpu), 0);
        }
        json(&d);
    }

    #[test]
    fn rx6800_is_not_what_these_images_are_for() {
        let Run { doctor: d, .. } = doctor_on(FixtureHost::rx6800(), engine_ok());
        let a = &d.gpus[0];
        assert_eq!(a.gfx_target.as_deref(), Some("gfx1030"));
        assert!(!a.is_rdna1);
        assert_eq!(a.verdict, Verdict::NotRdna1);
        assert!(a.recipes.is_empty());
        assert!(a.summary.contains("not what these images are for"));
        assert_eq!(ids(&d), vec!["no-supported-gpu"]);
        let p = &d.problems[0];
        assert_eq!(p.severity, Severity::BlocksGpu);
        assert!(p.fix.contains("official PyTorch ROCm"), "{}", p.fix);
        assert!(p.fix.contains("--smoke cpu"), "{}", p.fix);
        assert_eq!(
            d.ready,
            Readiness {
                build: true,
                gpu: false
            }
        );
        assert_eq!(exit_code(&d, Focus::Gpu), 3);
        assert_eq!(exit_code(&d, Focus::Build), 0);
        let v = json(&d);
        assert_eq!(v["gpus"][0]["verdict"], "not_rdna1");
        assert_eq!(v["problems"][0]["severity"], "blocks_gpu");
    }

    #[test]
    fn rdna1_next_to_an_rdna2_card_only_warns() {
        let fx = FixtureHost::rx5700xt().add_gpu(FixtureGpu::rx6800().at(129, "0000:04:00.0"));
        let Run { doctor: d, owned } = doctor_on(fx, engine_ok());
        assert_eq!(ids(&d), vec!["gpu-not-supported"]);
        assert_eq!(d.problems[0].severity, Severity::Warning);
        assert!(
            d.problems[0].what.starts_with("GPU 1 (gfx1030"),
            "{}",
            d.problems[0].what
        );
        if owned {
            assert!(d.ready.gpu);
        }
    }

    #[test]
    fn no_gpu_is_ready_for_builds_only() {
        let Run { doctor: d, .. } = doctor_on(FixtureHost::no_gpu(), engine_ok());
        assert!(d.gpus.is_empty());
        // The Intel render node is listed as a device but is not a ROCm GPU.
        assert_eq!(d.host.render_nodes.len(), 1);
        assert_eq!(ids(&d), vec!["no-amd-gpu"]);
        let p = &d.problems[0];
        assert!(
            p.what.contains("builds and CPU smoke tests work"),
            "{}",
            p.what
        );
        assert!(
            p.fix.contains("--smoke cpu") && p.fix.contains("run --cpu"),
            "{}",
            p.fix
        );
        assert_eq!(
            d.ready,
            Readiness {
                build: true,
                gpu: false
            }
        );
        assert_eq!(exit_code(&d, Focus::Build), 0);
        assert_eq!(exit_code(&d, Focus::Gpu), 3);
        let v = json(&d);
        assert_eq!(v["gpus"], serde_json::json!([]));
        assert_eq!(v["host"]["kfd"]["exists"], false);
        let text = render_human(&d);
        assert!(text.contains("none found"));
        assert!(text.contains("/dev/kfd"));
        assert!(
            text.contains("Ready for builds (CPU smoke tests): yes"),
            "{text}"
        );
    }

    #[test]
    fn amd_card_without_driver_says_load_amdgpu() {
        let mut fx = FixtureHost::rx5700xt();
        fx.amdgpu = false;
        let Run { doctor: d, .. } = doctor_on(fx, engine_ok());
        assert_eq!(ids(&d), vec!["amdgpu-not-loaded"]);
        assert!(
            d.problems[0].what.contains("Navi 10") && d.problems[0].what.contains("0000:03:00.0")
        );
        assert!(d.problems[0].fix.contains("modprobe amdgpu"));
    }

    #[test]
    fn locked_devices_name_the_group_and_gid() {
        let Run { doctor: d, owned } =
            doctor_on(FixtureHost::rx5700xt().not_in_render_group(), engine_ok());
        if !owned {
            crate::test_skip::skip("not root: fixtures cannot chown");
            return;
        }
        assert_eq!(ids(&d), vec!["device-access"]);
        let p = &d.problems[0];
        assert!(
            p.what.contains("/dev/kfd") && p.what.contains("/dev/dri/renderD128"),
            "{}",
            p.what
        );
        assert!(
            p.fix.contains("add your user to group render (GID 109)"),
            "{}",
            p.fix
        );
        assert!(p.fix.contains("sudo usermod -aG render $USER"), "{}", p.fix);
        // Rootful Docker opens them as root anyway: a warning, and still ready.
        assert_eq!(p.severity, Severity::Warning);
        assert!(
            p.what
                .contains("rootful Docker run as root and open them anyway"),
            "{}",
            p.what
        );
        assert_eq!(exit_code(&d, Focus::Gpu), 0);
        let v = json(&d);
        assert_eq!(v["host"]["kfd"]["access"], "denied");
        assert_eq!(v["problems"][0]["id"], "device-access");

        // Rootless Docker opens them as this user: now it blocks GPU use.
        let rootless = EngineStatus {
            rootless: Some(true),
            ..engine_ok()
        };
        let Run { doctor: d, .. } =
            doctor_on(FixtureHost::rx5700xt().not_in_render_group(), rootless);
        assert_eq!(d.problems[0].severity, Severity::BlocksGpu);
        assert_eq!(exit_code(&d, Focus::Gpu), 3);
        assert_eq!(exit_code(&d, Focus::Build), 0);
        assert!(render_human(&d).contains("you cannot open it"));
    }

    #[test]
    fn pending_group_membership_says_log_in_again() {
        let Run { doctor: d, owned } =
            doctor_on(FixtureHost::rx5700xt().relogin_pending(), engine_ok());
        if !owned {
            crate::test_skip::skip("not root: fixtures cannot chown");
            return;
        }
        assert_eq!(ids(&d), vec!["device-access"]);
        assert!(d.problems[0].fix.contains("log out and back in"));
        assert!(
            d.problems[0].fix.contains("newgrp render"),
            "{}",
            d.problems[0].fix
        );
    }

    #[test]
    fn engine_problems_block_everything() {
        let Run { doctor: d, .. } = doctor_on(
            FixtureHost::rx5700xt(),
            EngineStatus::unreachable(
                "Got permission denied while trying to connect to the Docker daemon socket",
            ),
        );
        assert!(ids(&d).contains(&"engine-unreachable"));
        let p = d
            .problems
            .iter()
            .find(|p| p.id == "engine-unreachable")
            .unwrap();
        assert!(p.fix.contains("usermod -aG docker"));
        assert_eq!(
            d.ready,
            Readiness {
                build: false,
                gpu: false
            }
        );
        assert_eq!(exit_code(&d, Focus::Build), 3);
        json(&d);

        let Run { doctor: d, .. } = doctor_on(
            FixtureHost::rx5700xt(),
            EngineStatus::unreachable(
                "Cannot connect to the Docker daemon at unix:///var/run/docker.sock",
            ),
        );
        let p = d
            .problems
            .iter()
            .find(|p| p.id == "engine-unreachable")
            .unwrap();
        assert!(p.fix.contains("systemctl start docker"));

        let old = EngineStatus {
            api_version: Some("1.40".into()),
            buildkit: Some(false),
            ..engine_ok()
        };
        let Run { doctor: d, .. } = doctor_on(FixtureHost::rx5700xt(), old);
        assert!(ids(&d).contains(&"engine-old") && ids(&d).contains(&"engine-no-buildkit"));
        assert!(!d.ready.build);
    }

    #[test]
    fn the_engine_report_names_endpoint_origin_and_store() {
        let endpoint = crate::endpoint::Endpoint {
            host: "ssh://builder".into(),
            source: crate::endpoint::Source::DockerContext {
                name: "builder".into(),
            },
            tls: None,
        };
        let e = EngineStatus {
            chosen_by: Some(endpoint.source.to_string()),
            endpoint: Some(endpoint),
            ..engine_ok()
        };
        let Run { doctor: d, .. } = doctor_on(FixtureHost::no_gpu(), e);
        let text = render_human(&d);
        assert!(
            text.contains("endpoint      ssh://builder (context `builder` from DOCKER_CONTEXT)"),
            "{text}"
        );
        assert!(text.contains("store         classic image store, graph driver overlay2"));
        let v = json(&d);
        assert_eq!(v["engine"]["endpoint"]["source"]["kind"], "docker_context");
        assert_eq!(v["engine"]["store"]["kind"], "classic");
        assert!(d.ready.build);
    }

    #[test]
    fn the_store_comes_from_driver_status() {
        assert_eq!(
            Store::from_info("overlayfs", Some("io.containerd.snapshotter.v1")),
            Store::Containerd {
                snapshotter: "overlayfs".into()
            }
        );
        assert_eq!(
            Store::from_info("fuse-overlayfs", None),
            Store::Classic {
                driver: "fuse-overlayfs".into()
            }
        );
    }

    #[test]
    fn platforms_a_build_cannot_use_are_problems_with_fixes_and_either_store_is_fine() {
        // The containerd store builds, smoke-tests and tags like the classic one
        // (tests/doctor_engines.rs builds on it): reported, never a problem.
        let containerd = EngineStatus {
            store: Some(Store::from_info(
                "overlayfs",
                Some("io.containerd.snapshotter.v1"),
            )),
            ..engine_ok()
        };
        let Run { doctor: d, .. } = doctor_on(FixtureHost::no_gpu(), containerd);
        assert!(d.problems.iter().all(|p| !p.id.starts_with("engine-")));
        assert!(d.ready.build);
        assert_eq!(exit_code(&d, Focus::Build), 0);

        let arm = EngineStatus {
            architecture: Some("aarch64".into()),
            ..engine_ok()
        };
        let Run { doctor: d, .. } = doctor_on(FixtureHost::no_gpu(), arm);
        let p = d
            .problems
            .iter()
            .find(|p| p.id == "engine-not-x86_64")
            .unwrap();
        assert!(p.what.contains("aarch64") && p.fix.contains("DOCKER_HOST=ssh://"));
        assert_eq!(exit_code(&d, Focus::Build), 3);

        let windows = EngineStatus {
            os_type: Some("windows".into()),
            ..engine_ok()
        };
        let Run { doctor: d, .. } = doctor_on(FixtureHost::no_gpu(), windows);
        assert!(ids(&d).contains(&"engine-not-linux"));
    }

    #[test]
    fn an_unreachable_engine_gets_the_endpoints_own_advice() {
        let e = EngineStatus {
            fix: Some("check that `ssh builder docker system dial-stdio` works".into()),
            ..EngineStatus::unreachable("connection refused")
        };
        let Run { doctor: d, .. } = doctor_on(FixtureHost::no_gpu(), e);
        let p = d
            .problems
            .iter()
            .find(|p| p.id == "engine-unreachable")
            .unwrap();
        assert!(p.fix.contains("dial-stdio") && !p.fix.contains("systemctl"));
    }

    #[test]
    fn disk_space_against_each_recipe() {
        let with_free = |gb: u64| EngineStatus {
            free_disk_bytes: Some(gb * GB),
            ..engine_ok()
        };
        let Run { doctor: d, .. } = doctor_on(FixtureHost::no_gpu(), with_free(50));
        let p = d.problems.iter().find(|p| p.id == "disk-low").unwrap();
        assert_eq!(p.severity, Severity::Warning);
        assert!(p.what.contains("rocm62 needs about 80.0 GB"), "{}", p.what);
        assert!(!p.what.contains("rocm52"));
        assert!(d.ready.build);

        let Run { doctor: d, .. } = doctor_on(FixtureHost::no_gpu(), with_free(10));
        let p = d.problems.iter().find(|p| p.id == "disk-low").unwrap();
        assert_eq!(p.severity, Severity::BlocksAll);
        assert!(
            p.what.contains("10.0 GB free under /var/lib/docker"),
            "{}",
            p.what
        );
        assert!(p.fix.contains("docker system prune"));
        assert_eq!(exit_code(&d, Focus::Build), 3);
    }

    #[test]
    fn free_disk_walks_up_to_an_existing_folder() {
        let dir = tempfile::tempdir().unwrap();
        let here = free_disk(dir.path()).unwrap();
        assert!(here > 0);
        assert!(free_disk(&dir.path().join("not/yet/created")).is_some());
    }
}
