//! What this machine offers a ROCm container, read the way ROCm's thunk reads it, with no
//! ROCm installed: the KFD topology in sysfs, the PCI display devices, the device files and
//! who may open them.
//!
//! Every path is read under a root folder, so tests (and `RDNA1_IMAGES_HOST_ROOT`) can point
//! the probe at a fake sysfs and /dev tree. Nothing here needs the device files to be real
//! character devices: fixtures use regular files, and the probe only notes which they are.

/// Fake host trees for tests: the unit tests, and the integration tests through the
/// `testing` feature (enabled for them only), so a `cargo build` ships none of it.
#[cfg(any(test, feature = "testing"))]
pub mod fixture;

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

mod access;

pub use access::*;

/// Points the probe at another root folder (a fixture tree) instead of `/`.
pub const HOST_ROOT_ENV: &str = "RDNA1_IMAGES_HOST_ROOT";

/// Where the thunk (libhsakmt) finds the GPUs; the same files ROCm enumerates at start.
pub const KFD_TOPOLOGY: &str = "/sys/class/kfd/kfd/topology/nodes";
pub const KFD_DEVICE: &str = "/dev/kfd";
pub const DRI_DIR: &str = "/dev/dri";

/// PCI vendor id of AMD/ATI, as `vendor_id` in the topology and `vendor` in PCI sysfs.
pub const AMD_VENDOR_ID: u32 = 0x1002;

/// The root folder to read and the identity whose access to the device files is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoot {
    pub root: PathBuf,
    /// Effective uid.
    pub uid: u32,
    /// Effective gid and supplementary groups: what the kernel checks on `open`.
    pub gids: Vec<u32>,
}

impl HostRoot {
    pub fn new(root: impl Into<PathBuf>, uid: u32, gids: Vec<u32>) -> Self {
        HostRoot {
            root: root.into(),
            uid,
            gids,
        }
    }

    /// The root from `RDNA1_IMAGES_HOST_ROOT` (or `/`), and the identity from
    /// `<root>/proc/self/status`, falling back to this process's own.
    ///
    /// Reading the identity under the root lets a fixture tree say "uid 1000, not in group
    /// render" for CLI tests that run as root; on a real host the two files are the same.
    /// /proc/self/status rather than a libc call: it carries the session's groups as the
    /// kernel sees them, which is what decides `open`, with no extra dependency.
    pub fn from_env() -> std::io::Result<Self> {
        let root = std::env::var_os(HOST_ROOT_ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        let under_root = root.join("proc/self/status");
        let text = std::fs::read_to_string(&under_root)
            .or_else(|_| std::fs::read_to_string("/proc/self/status"))?;
        let (uid, gids) = parse_proc_status(&text).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: no Uid:/Gid: lines, cannot tell who is asking",
                    under_root.display()
                ),
            )
        })?;
        Ok(HostRoot { root, uid, gids })
    }

    /// `abs` (a path as on the host, like `/dev/kfd`) under the root.
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// Whether this reads the machine itself rather than a fixture tree.
    pub fn is_real(&self) -> bool {
        self.root == Path::new("/")
    }
}

/// Effective uid and (effective gid + supplementary groups) from `/proc/<pid>/status`.
pub fn parse_proc_status(text: &str) -> Option<(u32, Vec<u32>)> {
    let field = |name: &str| -> Option<Vec<u32>> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        Some(
            line[name.len()..]
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect(),
        )
    };
    // `Uid:` and `Gid:` list real, effective, saved, filesystem ids; access uses the fs id,
    // which equals the effective one unless a program changed it on purpose.
    let uid = *field("Uid:")?.get(1)?;
    let gid = *field("Gid:")?.get(1)?;
    let mut gids = vec![gid];
    for g in field("Groups:").unwrap_or_default() {
        if !gids.contains(&g) {
            gids.push(g);
        }
    }
    Some((uid, gids))
}

/// A gfx target decoded from KFD's `gfx_target_version` (decimal major*10000 + minor*100 +
/// stepping), or from an `HSA_OVERRIDE_GFX_VERSION` value like `10.3.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GfxVersion {
    pub major: u32,
    pub minor: u32,
    pub stepping: u32,
}

impl GfxVersion {
    /// `None` for 0, which CPU nodes report.
    pub fn from_kfd(v: u64) -> Option<Self> {
        if v == 0 {
            return None;
        }
        Some(GfxVersion {
            major: u32::try_from(v / 10000).ok()?,
            minor: ((v / 100) % 100) as u32,
            stepping: (v % 100) as u32,
        })
    }

    /// Parses an override value (`10.3.0`).
    pub fn from_override(s: &str) -> Option<Self> {
        let mut it = s.trim().split('.').map(|p| p.parse::<u32>().ok());
        let v = GfxVersion {
            major: it.next()??,
            minor: it.next()??,
            stepping: it.next()??,
        };
        it.next().is_none().then_some(v)
    }

    /// The LLVM target name, as ROCm spells it: major in decimal, minor and stepping as one
    /// hex digit each (90010 -> gfx90a, 100100 -> gfx1010).
    pub fn name(&self) -> String {
        format!("gfx{}{:x}{:x}", self.major, self.minor, self.stepping)
    }

    /// The `HSA_OVERRIDE_GFX_VERSION` spelling, `10.1.0`.
    pub fn dotted(&self) -> String {
        format!("{}.{}.{}", self.major, self.minor, self.stepping)
    }

    /// RDNA1 (Navi 1x): gfx101x. gfx1013 (an APU) is RDNA1 too, though no recipe lists it.
    pub fn is_rdna1(&self) -> bool {
        self.major == 10 && self.minor == 1
    }

    /// Same major.minor: code built for one runs on the other with an override, without
    /// meeting instructions it lacks across generations (the gfx1030-on-gfx1010 hazard).
    pub fn same_family(&self, other: &GfxVersion) -> bool {
        self.major == other.major && self.minor == other.minor
    }
}

impl fmt::Display for GfxVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// The chip behind a PCI device id, for people: KFD gives no marketing name, and one id
/// covers several boards (0x731f is every RX 5600/5700), so this names the chip family.
/// From the public PCI id list; only ids that matter to these images plus their neighbours.
pub fn chip_name(device_id: u32) -> Option<&'static str> {
    Some(match device_id {
        0x7310 => "Navi 10 (Radeon Pro W5700X)",
        0x7312 => "Navi 10 (Radeon Pro W5700)",
        0x731f => "Navi 10 (RX 5600 / 5600 XT / 5700 / 5700 XT)",
        0x7340 => "Navi 14 (RX 5300 / 5500 / 5500 XT)",
        0x7341 => "Navi 14 (Radeon Pro W5500)",
        0x7347 => "Navi 14 (Radeon Pro W5500M)",
        0x734f => "Navi 14 (Radeon Pro W5300M)",
        0x7360 => "Navi 12 (Radeon Pro 5600M / V520)",
        0x7362 => "Navi 12 (Radeon Pro V520)",
        0x73bf => "Navi 21 (RX 6800 / 6800 XT / 6900 XT)",
        0x73df => "Navi 22 (RX 6700 / 6700 XT)",
        0x73ff => "Navi 23 (RX 6600 / 6600 XT)",
        0x744c => "Navi 31 (RX 7900 XT / XTX)",
        _ => return None,
    })
}

/// One GPU node of the KFD topology.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuInfo {
    /// Position among GPU nodes in topology order: what ROCm numbers devices by, and what
    /// `run --gpu N` takes.
    pub index: usize,
    /// The topology node id (CPU nodes come first, so GPU 0 is usually node 1).
    pub node: u32,
    /// Raw `gfx_target_version`; absent on kernels too old to report it.
    pub gfx_target_version: Option<u64>,
    /// Decoded target (`gfx1010`).
    pub gfx_target: Option<String>,
    pub is_rdna1: bool,
    pub vendor_id: Option<u32>,
    pub device_id: Option<u32>,
    /// Chip family from the PCI device id.
    pub chip: Option<String>,
    pub drm_render_minor: Option<u32>,
    /// `/dev/dri/renderD<minor>`, as on the host.
    pub render_node: Option<String>,
    pub simd_count: Option<u64>,
    /// Sum of the frame-buffer memory banks (VRAM).
    pub local_memory_bytes: Option<u64>,
    /// The node's `name` file, as the kernel wrote it.
    pub name: Option<String>,
    #[serde(skip)]
    pub gfx: Option<GfxVersion>,
}

impl GpuInfo {
    pub fn is_amd(&self) -> bool {
        self.vendor_id.is_none_or(|v| v == AMD_VENDOR_ID)
    }

    /// `gfx1010 (Navi 10 ...)`, or what is known.
    pub fn label(&self) -> String {
        let target = self.gfx_target.as_deref().unwrap_or("unknown gfx target");
        match &self.chip {
            Some(c) => format!("{target}, {c}"),
            None => match self.device_id {
                Some(d) => format!("{target}, PCI device {d:04x}"),
                None => target.to_string(),
            },
        }
    }
}

/// A display controller from PCI sysfs: shows an AMD GPU even when no driver is bound.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PciGpu {
    /// `0000:03:00.0`.
    pub address: String,
    pub vendor_id: u32,
    pub device_id: u32,
    pub chip: Option<String>,
    /// The bound kernel driver (`amdgpu`), if any.
    pub driver: Option<String>,
}

/// Who may open a device file, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessVia {
    /// uid 0 opens anything.
    Root,
    Owner,
    Group,
    /// A POSIX ACL entry (logind's `uaccess` puts one on some device nodes).
    Acl,
    Other,
    /// The mode bits (and ACL, if any) give this user no read+write.
    Denied,
    /// The file is missing or could not be inspected.
    Unknown,
}

impl AccessVia {
    pub fn allowed(self) -> bool {
        matches!(
            self,
            AccessVia::Root
                | AccessVia::Owner
                | AccessVia::Group
                | AccessVia::Acl
                | AccessVia::Other
        )
    }
}

/// A device file a ROCm container needs, and whether the current user can open it
/// read+write (ROCm opens both /dev/kfd and the render nodes O_RDWR).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceFile {
    /// As on the host (`/dev/kfd`), not under the fixture root.
    pub path: String,
    pub exists: bool,
    /// False in fixture trees, where device files are regular files.
    pub char_device: bool,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    #[serde(serialize_with = "octal")]
    pub mode: Option<u32>,
    pub group_name: Option<String>,
    /// A POSIX access ACL is set (its entries were taken into account).
    pub has_acl: bool,
    pub access: AccessVia,
    /// The user's session has the file's group.
    pub in_group_now: bool,
    /// /etc/group lists the user in the file's group (true while `in_group_now` is false
    /// means: added, but not logged in again since).
    pub in_group_configured: bool,
    pub error: Option<String>,
}

impl DeviceFile {
    pub fn can_open(&self) -> bool {
        self.access.allowed()
    }
}

fn octal<S: Serializer>(mode: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    match mode {
        Some(m) => s.serialize_str(&format!("{m:04o}")),
        None => s.serialize_none(),
    }
}

/// The user the probe judged access for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserInfo {
    pub uid: u32,
    pub gids: Vec<u32>,
    /// From /etc/passwd.
    pub name: Option<String>,
}

/// Everything the probe found. Pure data: `doctor` judges it, `run_plan` uses it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostReport {
    /// The root read (`/` on a real host).
    pub root: PathBuf,
    pub user: UserInfo,
    /// `proc/sys/kernel/osrelease`.
    pub kernel: Option<String>,
    /// `/sys/module/amdgpu` exists (loaded, or built in).
    pub amdgpu_loaded: bool,
    /// The KFD topology folder exists.
    pub kfd_topology: bool,
    pub gpus: Vec<GpuInfo>,
    /// AMD display controllers on the PCI bus, with or without a driver.
    pub pci_amd_gpus: Vec<PciGpu>,
    pub kfd: DeviceFile,
    /// Every `/dev/dri/renderD*`, plus any a GPU names that is missing.
    pub render_nodes: Vec<DeviceFile>,
    /// Things the probe could not read or parse; informative, never fatal.
    pub notes: Vec<String>,
}

impl HostReport {
    pub fn render_node(&self, path: &str) -> Option<&DeviceFile> {
        self.render_nodes.iter().find(|d| d.path == path)
    }

    /// Whether this report describes the machine itself (device files must then be real
    /// character devices).
    pub fn is_real(&self) -> bool {
        self.root == Path::new("/")
    }
}

/// Reads the host under `host.root`. Never fails: what cannot be read is reported as absent,
/// with a note, because `doctor` must say something useful on a broken host.
pub fn probe(host: &HostRoot) -> HostReport {
    let mut notes = Vec::new();
    let groups = read_groups(&host.path("/etc/group"));
    let user_name = read_user_name(&host.path("/etc/passwd"), host.uid);
    let kernel = std::fs::read_to_string(host.path("/proc/sys/kernel/osrelease"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let amdgpu_loaded = host.path("/sys/module/amdgpu").is_dir();
    let topo = host.path(KFD_TOPOLOGY);
    let kfd_topology = topo.is_dir();
    let gpus = if kfd_topology {
        read_topology(&topo, &mut notes)
    } else {
        Vec::new()
    };
    let pci_amd_gpus = read_pci(&host.path("/sys/bus/pci/devices"));

    let ctx = AccessCtx {
        host,
        groups: &groups,
        user_name: user_name.as_deref(),
    };
    let kfd = ctx.device(KFD_DEVICE);
    let mut render_paths: Vec<String> = std::fs::read_dir(host.path(DRI_DIR))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().map(String::from))
                .filter(|n| n.starts_with("renderD"))
                .map(|n| format!("{DRI_DIR}/{n}"))
                .collect()
        })
        .unwrap_or_default();
    for g in &gpus {
        if let Some(p) = &g.render_node {
            if !render_paths.contains(p) {
                render_paths.push(p.clone());
            }
        }
    }
    // Numeric order: renderD128 before renderD1000 would be wrong as strings only past 999,
    // but the minor is the natural key anyway.
    render_paths.sort_by_key(|p| render_minor(p).unwrap_or(u32::MAX));
    let render_nodes = render_paths.iter().map(|p| ctx.device(p)).collect();

    HostReport {
        root: host.root.clone(),
        user: UserInfo {
            uid: host.uid,
            gids: host.gids.clone(),
            name: user_name,
        },
        kernel,
        amdgpu_loaded,
        kfd_topology,
        gpus,
        pci_amd_gpus,
        kfd,
        render_nodes,
        notes,
    }
}

fn render_minor(path: &str) -> Option<u32> {
    path.rsplit('/')
        .next()?
        .strip_prefix("renderD")?
        .parse()
        .ok()
}

/// `key value` lines of a topology `properties` file.
pub fn parse_properties(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = it.next()?.parse().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

fn read_topology(topo: &Path, notes: &mut Vec<String>) -> Vec<GpuInfo> {
    let mut nodes: Vec<(u32, PathBuf)> = match std::fs::read_dir(topo) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
            .collect(),
        Err(e) => {
            notes.push(format!("cannot list {}: {e}", topo.display()));
            return Vec::new();
        }
    };
    // Directory order is arbitrary; ROCm numbers agents by node id, and so does --gpu.
    nodes.sort_by_key(|(id, _)| *id);
    let mut gpus = Vec::new();
    for (node, dir) in nodes {
        let props = match std::fs::read_to_string(dir.join("properties")) {
            Ok(t) => parse_properties(&t),
            Err(e) => {
                notes.push(format!("node {node}: cannot read properties: {e}"));
                continue;
            }
        };
        let get = |k: &str| props.get(k).copied();
        let gfx_raw = get("gfx_target_version");
        let is_gpu = gfx_raw.unwrap_or(0) > 0 || get("simd_count").unwrap_or(0) > 0;
        if !is_gpu {
            continue;
        }
        let gfx = gfx_raw.and_then(GfxVersion::from_kfd);
        if gfx.is_none() {
            notes.push(format!(
                "node {node} is a GPU but reports no gfx_target_version (kernel too old?)"
            ));
        }
        let small = |k: &str| get(k).and_then(|v| u32::try_from(v).ok());
        let device_id = small("device_id");
        let drm_render_minor = small("drm_render_minor").filter(|m| *m > 0);
        gpus.push(GpuInfo {
            index: gpus.len(),
            node,
            gfx_target_version: gfx_raw,
            gfx_target: gfx.map(|g| g.name()),
            is_rdna1: gfx.is_some_and(|g| g.is_rdna1()),
            vendor_id: small("vendor_id"),
            device_id,
            chip: device_id.and_then(chip_name).map(String::from),
            drm_render_minor,
            render_node: drm_render_minor.map(|m| format!("{DRI_DIR}/renderD{m}")),
            simd_count: get("simd_count"),
            local_memory_bytes: read_local_memory(&dir.join("mem_banks")),
            name: std::fs::read_to_string(dir.join("name"))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            gfx,
        });
    }
    gpus
}

/// VRAM: the frame-buffer heaps (HSA heap types 1 public, 2 private); type 0 is system RAM.
fn read_local_memory(banks: &Path) -> Option<u64> {
    let rd = std::fs::read_dir(banks).ok()?;
    let mut total = None;
    for e in rd.filter_map(|e| e.ok()) {
        let Ok(text) = std::fs::read_to_string(e.path().join("properties")) else {
            continue;
        };
        let p = parse_properties(&text);
        if matches!(p.get("heap_type"), Some(1) | Some(2)) {
            *total.get_or_insert(0) += p.get("size_in_bytes").copied().unwrap_or(0);
        }
    }
    total
}

fn read_pci(devices: &Path) -> Vec<PciGpu> {
    let Ok(rd) = std::fs::read_dir(devices) else {
        return Vec::new();
    };
    let hex = |p: PathBuf| -> Option<u32> {
        let s = std::fs::read_to_string(p).ok()?;
        u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
    };
    let mut out: Vec<PciGpu> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let dir = e.path();
            let vendor_id = hex(dir.join("vendor"))?;
            // Class 0x03xxxx: display controllers (VGA 0x0300, other 0x0380).
            let class = hex(dir.join("class"))?;
            if vendor_id != AMD_VENDOR_ID || class >> 16 != 0x03 {
                return None;
            }
            let device_id = hex(dir.join("device"))?;
            Some(PciGpu {
                address: e.file_name().to_string_lossy().into_owned(),
                vendor_id,
                device_id,
                chip: chip_name(device_id).map(String::from),
                driver: std::fs::read_link(dir.join("driver"))
                    .ok()
                    .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned())),
            })
        })
        .collect();
    out.sort_by(|a, b| a.address.cmp(&b.address));
    out
}

#[cfg(test)]
mod tests {
    use super::fixture::FixtureHost;
    use super::*;

    #[test]
    fn gfx_decoding_follows_rocm() {
        let name = |v| GfxVersion::from_kfd(v).unwrap().name();
        assert_eq!(name(100100), "gfx1010");
        assert_eq!(name(100101), "gfx1011");
        assert_eq!(name(100102), "gfx1012");
        assert_eq!(name(100300), "gfx1030");
        assert_eq!(name(90006), "gfx906");
        assert_eq!(name(90010), "gfx90a");
        assert_eq!(name(90012), "gfx90c");
        assert_eq!(name(110000), "gfx1100");
        assert_eq!(GfxVersion::from_kfd(0), None);
        assert!(GfxVersion::from_kfd(100102).unwrap().is_rdna1());
        assert!(!GfxVersion::from_kfd(100300).unwrap().is_rdna1());
        let o = GfxVersion::from_override("10.3.0").unwrap();
        assert_eq!(o.name(), "gfx1030");
        assert_eq!(o.dotted(), "10.3.0");
        assert_eq!(GfxVersion::from_override("10.3"), None);
        assert_eq!(GfxVersion::from_override("10.3.0.1"), None);
        assert!(GfxVersion::from_override("10.1.0")
            .unwrap()
            .same_family(&GfxVersion::from_kfd(100102).unwrap()));
    }

    #[test]
    fn proc_status_gives_effective_ids_and_groups() {
        let text = "Name:\tcat\nUid:\t1000\t1001\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t24 44 109 1000 \n";
        let (uid, gids) = parse_proc_status(text).unwrap();
        assert_eq!(uid, 1001);
        assert_eq!(gids, vec![1000, 24, 44, 109]);
        assert_eq!(parse_proc_status("Name: x\n"), None);
    }

    #[test]
    fn mode_bits_decide_like_the_kernel() {
        // root:render 0660
        assert_eq!(decide_access(0, &[0], 0, 109, 0o660, None), AccessVia::Root);
        assert_eq!(
            decide_access(1000, &[1000, 109], 0, 109, 0o660, None),
            AccessVia::Group
        );
        assert_eq!(
            decide_access(1000, &[1000], 0, 109, 0o660, None),
            AccessVia::Denied
        );
        assert_eq!(
            decide_access(1000, &[1000], 0, 109, 0o666, None),
            AccessVia::Other
        );
        // Read-only for the group is not enough: ROCm opens O_RDWR.
        assert_eq!(
            decide_access(1000, &[109], 0, 109, 0o640, None),
            AccessVia::Denied
        );
        // The owner class decides alone, even when others may.
        assert_eq!(
            decide_access(1000, &[1000], 1000, 109, 0o066, None),
            AccessVia::Denied
        );
    }

    #[test]
    fn acl_entries_grant_and_mask() {
        let mut bytes = 2u32.to_le_bytes().to_vec();
        let mut push = |tag: u16, perm: u16, id: u32| {
            bytes.extend(tag.to_le_bytes());
            bytes.extend(perm.to_le_bytes());
            bytes.extend(id.to_le_bytes());
        };
        push(ACL_USER_OBJ, 6, u32::MAX);
        push(ACL_USER, 6, 1000);
        push(ACL_GROUP_OBJ, 6, u32::MAX);
        push(ACL_MASK, 6, u32::MAX);
        push(ACL_OTHER, 0, u32::MAX);
        let acl = parse_acl_xattr(&bytes).unwrap();
        assert_eq!(acl.len(), 5);
        // logind's uaccess: a user entry for the seat owner on a root:render 0660 node.
        assert_eq!(
            decide_access(1000, &[1000], 0, 109, 0o660, Some(&acl)),
            AccessVia::Acl
        );
        assert_eq!(
            decide_access(1001, &[1001], 0, 109, 0o660, Some(&acl)),
            AccessVia::Denied
        );
        // A mask of r-- takes write away from the named user.
        let masked: Vec<AclEntry> = acl
            .iter()
            .map(|e| {
                if e.tag == ACL_MASK {
                    AclEntry { perm: 4, ..*e }
                } else {
                    *e
                }
            })
            .collect();
        assert_eq!(
            decide_access(1000, &[1000], 0, 109, 0o660, Some(&masked)),
            AccessVia::Denied
        );
        assert_eq!(parse_acl_xattr(&[1, 0, 0, 0]), None);
        assert_eq!(parse_acl_xattr(&[2, 0, 0, 0, 1]), None);
    }

    #[test]
    fn probe_reads_an_rx5700xt() {
        let fx = FixtureHost::rx5700xt().build().unwrap();
        let r = probe(&fx.host);
        assert_eq!(r.kernel.as_deref(), Some("6.1.0-28-amd64"));
        assert!(r.amdgpu_loaded && r.kfd_topology);
        assert_eq!(r.gpus.len(), 1, "the CPU node is not a GPU: {:?}", r.gpus);
        let g = &r.gpus[0];
        assert_eq!((g.index, g.node), (0, 1));
        assert_eq!(g.gfx_target_version, Some(100100));
        assert_eq!(g.gfx_target.as_deref(), Some("gfx1010"));
        assert!(g.is_rdna1 && g.is_amd());
        assert_eq!(g.device_id, Some(0x731f));
        assert!(g.chip.as_deref().unwrap().starts_with("Navi 10"));
        assert_eq!(g.render_node.as_deref(), Some("/dev/dri/renderD128"));
        assert_eq!(g.simd_count, Some(80));
        assert_eq!(g.local_memory_bytes, Some(8 << 30));
        assert_eq!(r.pci_amd_gpus.len(), 1);
        assert_eq!(r.pci_amd_gpus[0].driver.as_deref(), Some("amdgpu"));
        assert!(r.kfd.exists && !r.kfd.char_device);
        assert_eq!(r.render_nodes.len(), 1);
        assert_eq!(r.user.name.as_deref(), Some("alice"));
        if fx.ownership_applied {
            assert_eq!(r.kfd.gid, Some(fixture::RENDER_GID));
            assert_eq!(r.kfd.group_name.as_deref(), Some("render"));
            assert_eq!(r.kfd.mode, Some(0o660));
            assert_eq!(r.kfd.access, AccessVia::Group);
            assert!(r.render_nodes[0].can_open());
        } else {
            crate::test_skip::skip("not root: the ownership asserts (fixtures cannot chown)");
        }
    }

    #[test]
    fn probe_sees_locked_devices_and_pending_group_membership() {
        let fx = FixtureHost::rx5700xt()
            .not_in_render_group()
            .build()
            .unwrap();
        if !fx.ownership_applied {
            crate::test_skip::skip("not root: fixtures cannot chown");
            return;
        }
        let r = probe(&fx.host);
        assert_eq!(r.kfd.access, AccessVia::Denied);
        assert!(!r.kfd.in_group_now && !r.kfd.in_group_configured);

        let fx = FixtureHost::rx5700xt().relogin_pending().build().unwrap();
        let r = probe(&fx.host);
        assert_eq!(r.kfd.access, AccessVia::Denied);
        assert!(!r.kfd.in_group_now && r.kfd.in_group_configured);
    }

    #[test]
    fn probe_of_an_empty_root_reports_nothing_and_does_not_fail() {
        let dir = tempfile::tempdir().unwrap();
        let r = probe(&HostRoot::new(dir.path(), 1000, vec![1000]));
        assert!(r.gpus.is_empty() && !r.kfd.exists && !r.amdgpu_loaded);
        assert_eq!(r.kfd.access, AccessVia::Unknown);
        assert!(r.kernel.is_none());
    }

    #[test]
    fn from_env_reads_identity_under_the_root() {
        let fx = FixtureHost::rx5700xt().build().unwrap();
        // Not via the environment: tests run in parallel and share it.
        let text = std::fs::read_to_string(fx.host.path("/proc/self/status")).unwrap();
        assert_eq!(
            parse_proc_status(&text),
            Some((fx.host.uid, fx.host.gids.clone()))
        );
    }
}
