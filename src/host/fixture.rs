//! Fake host trees (sysfs, /dev, /etc, /proc) for tests of `doctor` and `run`.
//!
//! Built in code rather than committed: git cannot store owners, and the owning GIDs of the
//! device files are the point of half the tests. Ownership needs root (as tests run here and
//! in CI); without it the tree is still written, `ownership_applied` is false, and tests
//! that depend on owners must skip those asserts and say so.
//!
//! Public behind the `testing` feature (not only `cfg(test)`) so the CLI tests can write a
//! tree and point `RDNA1_IMAGES_HOST_ROOT` at it.

use std::io;
use std::path::{Path, PathBuf};

use super::HostRoot;

/// The host's `render` group in these fixtures: not 105 or 110 on purpose, so a test that
/// passes only because it guessed a common GID fails.
pub const RENDER_GID: u32 = 109;
pub const VIDEO_GID: u32 = 44;
pub const USER_UID: u32 = 1000;
pub const USER_NAME: &str = "alice";

/// One GPU node, as the kernel shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct FixtureGpu {
    pub gfx_target_version: u64,
    pub device_id: u32,
    pub simd_count: u64,
    pub vram_bytes: u64,
    pub render_minor: u32,
    /// PCI address, `0000:03:00.0`.
    pub pci: String,
    pub name: String,
}

impl FixtureGpu {
    /// RX 5700 XT: Navi 10, 40 CUs (KFD counts 2 SIMDs per RDNA CU), 8 GB.
    pub fn rx5700xt() -> Self {
        FixtureGpu {
            gfx_target_version: 100100,
            device_id: 0x731f,
            simd_count: 80,
            vram_bytes: 8 << 30,
            render_minor: 128,
            pci: "0000:03:00.0".into(),
            name: "navi10".into(),
        }
    }
    /// RX 5500 XT: Navi 14, 22 CUs, 8 GB.
    pub fn rx5500xt() -> Self {
        FixtureGpu {
            gfx_target_version: 100102,
            device_id: 0x7340,
            simd_count: 44,
            vram_bytes: 8 << 30,
            render_minor: 128,
            pci: "0000:03:00.0".into(),
            name: "navi14".into(),
        }
    }
    /// Radeon Pro V520: Navi 12, gfx1011, 36 CUs, 8 GB (HBM2).
    pub fn pro_v520() -> Self {
        FixtureGpu {
            gfx_target_version: 100101,
            device_id: 0x7362,
            simd_count: 72,
            vram_bytes: 8 << 30,
            render_minor: 128,
            pci: "0000:03:00.0".into(),
            name: "navi12".into(),
        }
    }
    /// RX 6800: Navi 21, gfx1030, 60 CUs, 16 GB. RDNA2: not what these images are for.
    pub fn rx6800() -> Self {
        FixtureGpu {
            gfx_target_version: 100300,
            device_id: 0x73bf,
            simd_count: 120,
            vram_bytes: 16 << 30,
            render_minor: 128,
            pci: "0000:03:00.0".into(),
            name: "navi21".into(),
        }
    }
    /// Moves the card to another render minor and PCI slot (for multi-GPU trees).
    pub fn at(mut self, render_minor: u32, pci: &str) -> Self {
        self.render_minor = render_minor;
        self.pci = pci.into();
        self
    }
}

/// A host to write. Start from a preset and adjust.
#[derive(Debug, Clone, PartialEq)]
pub struct FixtureHost {
    pub gpus: Vec<FixtureGpu>,
    /// amdgpu loaded: /sys/module/amdgpu, /dev/kfd, the topology.
    pub amdgpu: bool,
    /// Render nodes with no KFD node behind them (an Intel iGPU), as minors.
    pub other_render_minors: Vec<u32>,
    /// The user's groups in this session.
    pub session_gids: Vec<u32>,
    /// Whether /etc/group lists the user in `render`.
    pub listed_in_render: bool,
    /// Mode of /dev/kfd and the render nodes.
    pub device_mode: u32,
    pub kernel: String,
}

impl FixtureHost {
    fn with(gpus: Vec<FixtureGpu>) -> Self {
        FixtureHost {
            gpus,
            amdgpu: true,
            other_render_minors: Vec::new(),
            session_gids: vec![USER_UID, VIDEO_GID, RENDER_GID],
            listed_in_render: true,
            device_mode: 0o660,
            kernel: "6.1.0-28-amd64".into(),
        }
    }
    pub fn rx5700xt() -> Self {
        Self::with(vec![FixtureGpu::rx5700xt()])
    }
    pub fn rx5500xt() -> Self {
        Self::with(vec![FixtureGpu::rx5500xt()])
    }
    pub fn rx6800() -> Self {
        Self::with(vec![FixtureGpu::rx6800()])
    }
    pub fn pro_v520() -> Self {
        Self::with(vec![FixtureGpu::pro_v520()])
    }
    /// A machine with no AMD GPU: no amdgpu, no /dev/kfd, but an Intel render node, which
    /// must not be mistaken for a ROCm device.
    pub fn no_gpu() -> Self {
        FixtureHost {
            amdgpu: false,
            other_render_minors: vec![128],
            ..Self::with(Vec::new())
        }
    }
    pub fn add_gpu(mut self, gpu: FixtureGpu) -> Self {
        self.gpus.push(gpu);
        self
    }
    /// The user is in neither the session's nor /etc/group's `render`: the device files
    /// (root:render 0660) are closed to them.
    pub fn not_in_render_group(mut self) -> Self {
        self.session_gids.retain(|g| *g != RENDER_GID);
        self.listed_in_render = false;
        self
    }
    /// `usermod -aG render` done, but no new login since: /etc/group says yes, the session no.
    pub fn relogin_pending(mut self) -> Self {
        self.session_gids.retain(|g| *g != RENDER_GID);
        self.listed_in_render = true;
        self
    }
    /// Writes the tree under `dir`, which should be empty.
    pub fn write_to(&self, dir: &Path) -> io::Result<WrittenFixture> {
        let mut chown_ok = true;
        let mut chown = |p: &Path, uid: u32, gid: u32, mode: u32| -> io::Result<()> {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
            if chown_ok {
                if let Err(e) = std::os::unix::fs::chown(p, Some(uid), Some(gid)) {
                    if e.kind() != io::ErrorKind::PermissionDenied {
                        return Err(e);
                    }
                    chown_ok = false;
                }
            }
            Ok(())
        };
        let write = |rel: &str, text: &str| -> io::Result<PathBuf> {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().expect("relative path with a parent"))?;
            std::fs::write(&p, text)?;
            Ok(p)
        };

        let render_members = if self.listed_in_render { USER_NAME } else { "" };
        write(
            "etc/group",
            &format!(
                "root:x:0:\nvideo:x:{VIDEO_GID}:{USER_NAME}\nrender:x:{RENDER_GID}:{render_members}\n{USER_NAME}:x:{USER_UID}:\n"
            ),
        )?;
        write(
            "etc/passwd",
            &format!("root:x:0:0:root:/root:/bin/bash\n{USER_NAME}:x:{USER_UID}:{USER_UID}::/home/{USER_NAME}:/bin/bash\n"),
        )?;
        let groups: Vec<String> = self.session_gids.iter().map(|g| g.to_string()).collect();
        write(
            "proc/self/status",
            &format!(
                "Name:\trdna1-images\nUid:\t{u}\t{u}\t{u}\t{u}\nGid:\t{u}\t{u}\t{u}\t{u}\nGroups:\t{}\n",
                groups.join(" "),
                u = USER_UID
            ),
        )?;
        write("proc/sys/kernel/osrelease", &format!("{}\n", self.kernel))?;
        std::fs::create_dir_all(dir.join("dev/dri"))?;

        // PCI: the AMD cards, plus an Intel iGPU where the preset has a foreign render node.
        for g in &self.gpus {
            let d = format!("sys/bus/pci/devices/{}", g.pci);
            write(&format!("{d}/vendor"), "0x1002\n")?;
            write(&format!("{d}/device"), &format!("0x{:04x}\n", g.device_id))?;
            write(&format!("{d}/class"), "0x030000\n")?;
            if self.amdgpu {
                std::os::unix::fs::symlink(
                    "../../../bus/pci/drivers/amdgpu",
                    dir.join(format!("{d}/driver")),
                )?;
            }
        }
        for m in &self.other_render_minors {
            let d = "sys/bus/pci/devices/0000:00:02.0";
            write(&format!("{d}/vendor"), "0x8086\n")?;
            write(&format!("{d}/device"), "0x4680\n")?;
            write(&format!("{d}/class"), "0x030000\n")?;
            let p = write(&format!("dev/dri/renderD{m}"), "")?;
            chown(&p, 0, RENDER_GID, self.device_mode)?;
        }

        if self.amdgpu {
            std::fs::create_dir_all(dir.join("sys/module/amdgpu"))?;
            let topo = "sys/class/kfd/kfd/topology/nodes";
            write(
                &format!("{topo}/0/properties"),
                "cpu_cores_count 16\nsimd_count 0\nmem_banks_count 1\ngfx_target_version 0\nvendor_id 0\ndevice_id 0\ndrm_render_minor 0\n",
            )?;
            write(
                &format!("{topo}/0/mem_banks/0/properties"),
                "heap_type 0\nsize_in_bytes 33554432000\nflags 0\nwidth 64\nmem_clk_max 3200\n",
            )?;
            for (i, g) in self.gpus.iter().enumerate() {
                let n = format!("{topo}/{}", i + 1);
                write(
                    &format!("{n}/properties"),
                    &format!(
                        "cpu_cores_count 0\nsimd_count {}\nmem_banks_count 1\ncaches_count 0\nio_links_count 1\nmax_waves_per_simd 20\nlds_size_in_kb 64\ngfx_target_version {}\nvendor_id 4098\ndevice_id {}\nlocation_id 768\ndrm_render_minor {}\nhive_id 0\nnum_xcc 1\n",
                        g.simd_count, g.gfx_target_version, g.device_id, g.render_minor
                    ),
                )?;
                write(&format!("{n}/name"), &format!("{}\n", g.name))?;
                write(
                    &format!("{n}/mem_banks/0/properties"),
                    &format!(
                        "heap_type 1\nsize_in_bytes {}\nflags 0\nwidth 256\nmem_clk_max 875\n",
                        g.vram_bytes
                    ),
                )?;
                let p = write(&format!("dev/dri/renderD{}", g.render_minor), "")?;
                chown(&p, 0, RENDER_GID, self.device_mode)?;
                let p = write(&format!("dev/dri/card{i}"), "")?;
                chown(&p, 0, VIDEO_GID, 0o660)?;
            }
            let p = write("dev/kfd", "")?;
            chown(&p, 0, RENDER_GID, self.device_mode)?;
        }
        Ok(WrittenFixture {
            host: HostRoot::new(
                dir,
                USER_UID,
                std::iter::once(USER_UID)
                    .chain(self.session_gids.iter().copied().filter(|g| *g != USER_UID))
                    .collect(),
            ),
            ownership_applied: chown_ok,
        })
    }

    /// Writes the tree into a fresh temporary folder, removed when the result is dropped.
    #[cfg(test)]
    pub fn build(&self) -> io::Result<TempFixture> {
        let dir = tempfile::tempdir()?;
        let w = self.write_to(dir.path())?;
        Ok(TempFixture {
            host: w.host,
            ownership_applied: w.ownership_applied,
            _dir: dir,
        })
    }
}

/// A written tree: the root and identity to probe with.
#[derive(Debug, Clone)]
pub struct WrittenFixture {
    pub host: HostRoot,
    /// False when not root: owners are the test runner's, not root:render.
    pub ownership_applied: bool,
}

#[cfg(test)]
pub struct TempFixture {
    pub host: HostRoot,
    pub ownership_applied: bool,
    _dir: tempfile::TempDir,
}
