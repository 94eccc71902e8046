//! The real stacks, checked on paper: snapshots of their Dockerfiles, their facts against
//! the values of the public sources they come from (written once below, each with its
//! source), and rules the rocm52 and rocm62 recipes keep, each shown failing on a planted
//! defect.

use rdna1_images::recipe::{Catalog, PyTorch, Recipe};
use rdna1_images::render;
use rdna1_images::values;

fn load(name: &str) -> Recipe {
    Catalog::embedded().load(name).unwrap().recipe
}

/// The runtime stage: everything after the last FROM.
fn runtime_stage(dockerfile: &str) -> &str {
    &dockerfile[dockerfile.rfind("\nFROM ").unwrap()..]
}

#[test]
fn rocm52_dockerfile_snapshot() {
    insta::assert_snapshot!("rocm52", render::dockerfile(&load("rocm52")));
}

#[test]
fn rocm62_dockerfile_snapshot() {
    insta::assert_snapshot!("rocm62", render::dockerfile(&load("rocm62")));
}

/// Values from the stacks' public sources, each written once here with where it comes from,
/// so a recipe edit that drifts from its source fails (not a copy of the recipe).
mod source {
    /// gbtb/nix-stable-diffusion `flake.nix` (SRI base64 decoded to hex; the same torch hash
    /// in three more Nix files); DOMAIN 2 and 3b.
    pub const TORCH_1_13_1_ROCM52_CP310_SHA256: &str =
        "f3685d08ac0d8c951cc367f9bd4b2c924c5d4517669c476807748abcd966136f";
    pub const TORCHVISION_0_14_1_ROCM52_CP310_SHA256: &str =
        "a01606fcaedb824c6ed14be6c92d94d6e7762e4150fc26ab731a4427dc733184";
    /// The file names on https://download.pytorch.org/whl/rocm5.2 (`+` as `%2B`).
    pub const TORCH_WHEEL: &str = "torch-1.13.1%2Brocm5.2-cp310-cp310-linux_x86_64.whl";
    pub const TORCHVISION_WHEEL: &str = "torchvision-0.14.1%2Brocm5.2-cp310-cp310-linux_x86_64.whl";
    /// spack `var/spack/repos/builtin/packages/py-torch/package.py`:
    /// `version("2.4.1", tag="v2.4.1", commit="ee1b68...")`.
    pub const PYTORCH_V2_4_1_COMMIT: &str = "ee1b6804381c57161c477caa380a840a84167676";
    /// docker-library/repo-info `repos/ubuntu/remote/jammy-20260901.2.md`, linux/amd64.
    pub const UBUNTU_JAMMY_20260901_2_AMD64: (&str, &str) = (
        "ubuntu:jammy-20260901.2",
        "sha256:281c5745f657873d78e5531fc5ba8575f46ab7769b94550ac99543f122679986",
    );
    /// The Docker Hub link in ROCm issue #4329 (Feb 2025); whether the tag still points
    /// there is unconfirmed (the recipe says so).
    pub const ROCM_DEV_UBUNTU_22_04_6_2_COMPLETE: (&str, &str) = (
        "rocm/dev-ubuntu-22.04:6.2-complete",
        "sha256:e5df8c7787939b5319a02481affb5356198a9365b37a2b8719dba42590fd1812",
    );
    /// AUTOMATIC1111 `webui.sh`, the `*"Navi 1"*)` case (PR #11048): RDNA1 runs the
    /// gfx1030 kernels of the rocm5.2 wheels.
    pub const NAVI1_ON_GFX1030_WHEELS: &str = "10.3.0";
    /// PyTorch 1.13.1's ROCm build reads only this name: hipify turns the getenv of
    /// PYTORCH_CUDA_ALLOC_CONF in c10/cuda/CUDACachingAllocator.cpp into it (DOMAIN 4,
    /// rdna1-images issue 13).
    pub const PYTORCH_1_13_ROCM_ALLOC_CONF: &str = "PYTORCH_HIP_ALLOC_CONF";
    /// rocBLAS #1331: gfx1011/gfx1012 run gfx1010 code objects.
    pub const GFX1011_1012_ON_GFX1010_CODE: &str = "10.1.0";
}

/// Rules every recipe for the real stacks keeps; each returns what breaks it.
mod rules {
    use rdna1_images::recipe::{PyTorch, Recipe};
    use rdna1_images::render;

    fn hex64(h: &str) -> bool {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    }

    /// Every Python package installed is pinned by at least one sha256.
    pub fn every_wheel_hashed(r: &Recipe) -> Vec<String> {
        let pkgs: Vec<_> = match &r.pytorch {
            PyTorch::Wheels(w) => w.packages.iter().collect(),
            PyTorch::Source(s) => s.build_requirements.iter().chain(&s.requirements).collect(),
            _ => vec![],
        };
        let mut bad = vec![];
        for p in pkgs {
            if p.sha256.is_empty() {
                bad.push(format!("{}: no sha256", p.name));
            }
            for h in &p.sha256 {
                if !hex64(h) {
                    bad.push(format!("{}: `{h}` is not a sha256", p.name));
                }
            }
        }
        bad
    }

    /// The base is pinned by a digest that the rendered FROM uses.
    pub fn base_pinned(r: &Recipe) -> Vec<String> {
        match r.base.digest.as_deref() {
            None => vec![format!("{}: base {} has no digest", r.name, r.base.image)],
            Some(d) if !(d.starts_with("sha256:") && hex64(&d[7..])) => {
                vec![format!("{}: `{d}` is not a sha256 digest", r.name)]
            }
            Some(d) if !render::dockerfile(r).contains(&format!("FROM {}@{d}", r.base.image)) => {
                vec![format!(
                    "{}: the Dockerfile does not use the digest",
                    r.name
                )]
            }
            Some(_) => vec![],
        }
    }

    /// A stack compiled for its GPU runs it natively: no override for a target in `arch`,
    /// in the recipe or in the image.
    pub fn native_targets_not_overridden(r: &Recipe) -> Vec<String> {
        let PyTorch::Source(s) = &r.pytorch else {
            return vec![];
        };
        let mut bad = vec![];
        for a in &s.arch {
            if let Some(Some(o)) = r.gpu.targets.get(a) {
                bad.push(format!("{a} is built natively but overridden to {o}"));
            }
        }
        let df = render::dockerfile(r);
        let runtime = &df[df.rfind("\nFROM ").unwrap_or(0)..];
        if runtime.contains("HSA_OVERRIDE_GFX_VERSION") {
            bad.push("the runtime image sets HSA_OVERRIDE_GFX_VERSION".into());
        }
        bad
    }

    /// The smoke test expects what the recipe installs (torch version, ROCm release).
    pub fn smoke_expects_what_is_installed(r: &Recipe) -> Vec<String> {
        let mut bad = vec![];
        let torch = match &r.pytorch {
            PyTorch::Wheels(w) => w.torch_version.clone(),
            PyTorch::Source(s) => s.version.clone(),
            _ => return bad,
        };
        match r.smoke.expect.torch.as_deref() {
            Some(t) if torch.starts_with(t) => {}
            other => bad.push(format!(
                "smoke expects torch {other:?}, the recipe installs {torch}"
            )),
        }
        if r.smoke.expect.hip.as_deref() != Some(r.rocm.as_str()) {
            bad.push(format!(
                "smoke expects HIP {:?}, the recipe is ROCm {}",
                r.smoke.expect.hip, r.rocm
            ));
        }
        bad
    }

    /// Wheels name the CPython they are for: it is the recipe's Python.
    pub fn wheels_fit_the_python(r: &Recipe) -> Vec<String> {
        let PyTorch::Wheels(w) = &r.pytorch else {
            return vec![];
        };
        let tag = format!("-cp{}-", r.python.version.replace('.', ""));
        w.packages
            .iter()
            .filter_map(|p| p.url.as_deref())
            .filter(|u| !u.contains(&tag))
            .map(|u| format!("{u} is not for Python {}", r.python.version))
            .collect()
    }

    /// Never MIOPEN_FIND_ENFORCE (SEARCH took >2000 s for one Conv2d on an RX 5600 XT,
    /// DOMAIN 4), and the MIOpen caches under the folder `run` mounts as a volume.
    pub fn miopen_settings(r: &Recipe) -> Vec<String> {
        let mut bad = vec![];
        if render::dockerfile(r).contains("MIOPEN_FIND_ENFORCE") {
            bad.push("MIOPEN_FIND_ENFORCE is set".into());
        }
        for k in ["MIOPEN_USER_DB_PATH", "MIOPEN_CUSTOM_CACHE_DIR"] {
            if !r
                .env
                .get(k)
                .is_some_and(|v| v.starts_with("/var/cache/miopen/"))
            {
                bad.push(format!("{k} is not under /var/cache/miopen/"));
            }
        }
        bad
    }

    pub fn all(r: &Recipe) -> Vec<String> {
        [
            every_wheel_hashed(r),
            base_pinned(r),
            native_targets_not_overridden(r),
            smoke_expects_what_is_installed(r),
            wheels_fit_the_python(r),
            miopen_settings(r),
        ]
        .concat()
    }
}

fn wheel<'a>(r: &'a Recipe, name: &str) -> &'a rdna1_images::recipe::Wheel {
    let PyTorch::Wheels(w) = &r.pytorch else {
        panic!("{} installs wheels", r.name)
    };
    w.packages.iter().find(|p| p.name == name).unwrap()
}

#[test]
fn the_real_recipes_keep_every_rule() {
    for name in ["rocm52", "rocm62"] {
        assert_eq!(rules::all(&load(name)), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn therock_dockerfile_snapshot() {
    insta::assert_snapshot!("therock", render::dockerfile(&load("therock")));
}

/// Pinned by a digest the Dockerfile uses, or excused with a reason.
fn assert_pinned_base(r: &Recipe) {
    if r.base.digest.is_none() {
        assert!(
            r.base.unpinned_reason.is_some(),
            "{}: base neither pinned nor excused",
            r.name
        );
    } else {
        assert_eq!(rules::base_pinned(r), Vec::<String>::new());
    }
}

#[test]
fn each_rule_fails_on_its_planted_defect() {
    let mut r = load("rocm52");
    if let PyTorch::Wheels(w) = &mut r.pytorch {
        w.packages[2].sha256.clear();
        // A malformed hash can no longer be planted: the Sha256 type refuses it at parse time.
        assert!(values::Sha256::parse("F3685D08").is_err());
        w.packages[3].sha256.clear();
    }
    assert_eq!(rules::every_wheel_hashed(&r).len(), 2, "{r:?}");

    let mut r = load("rocm52");
    r.base.digest = None;
    assert_eq!(rules::base_pinned(&r).len(), 1);

    let mut r = load("rocm62");
    r.gpu.targets.insert(
        values::GfxTarget::parse("gfx1010").unwrap(),
        Some(values::GfxVersion::parse("10.3.0").unwrap()),
    );
    let bad = rules::native_targets_not_overridden(&r);
    assert!(
        bad.iter()
            .any(|b| b.contains("built natively but overridden")),
        "{bad:?}"
    );
    assert!(
        bad.iter().any(|b| b.contains("runtime image sets")),
        "{bad:?}"
    );

    let mut r = load("rocm52");
    r.smoke.expect.hip = Some("6.2".into());
    r.smoke.expect.torch = Some("2.4".into());
    assert_eq!(rules::smoke_expects_what_is_installed(&r).len(), 2);

    let mut r = load("rocm52");
    r.python.version = values::PythonVersion::parse("3.11").unwrap();
    assert_eq!(
        rules::wheels_fit_the_python(&r).len(),
        2,
        "torch and torchvision"
    );

    let mut r = load("rocm52");
    let env = |k: &str, v: &str| {
        (
            values::EnvName::parse(k).unwrap(),
            values::Text::parse(v).unwrap(),
        )
    };
    r.env.extend([
        env("MIOPEN_FIND_ENFORCE", "3"),
        env("MIOPEN_USER_DB_PATH", "/root/.config/miopen"),
    ]);
    assert_eq!(rules::miopen_settings(&r).len(), 2);
}

#[test]
fn rocm52_matches_its_sources() {
    let r = load("rocm52");
    let torch = wheel(&r, "torch");
    assert!(torch.url.as_deref().unwrap().ends_with(source::TORCH_WHEEL));
    assert_eq!(torch.sha256, [source::TORCH_1_13_1_ROCM52_CP310_SHA256]);
    let tv = wheel(&r, "torchvision");
    assert!(tv
        .url
        .as_deref()
        .unwrap()
        .ends_with(source::TORCHVISION_WHEEL));
    assert_eq!(tv.sha256, [source::TORCHVISION_0_14_1_ROCM52_CP310_SHA256]);
    let (image, digest) = source::UBUNTU_JAMMY_20260901_2_AMD64;
    assert_eq!(
        (r.base.image.as_str(), r.base.digest.as_deref()),
        (image, Some(digest))
    );
    for t in ["gfx1010", "gfx1011", "gfx1012"] {
        assert_eq!(
            r.gpu.targets[t].as_deref(),
            Some(source::NAVI1_ON_GFX1030_WHEELS),
            "{t}: the wheels carry no gfx101x code"
        );
    }
    // torch 1.13.1 was built against numpy 1.x (DOMAIN 2).
    assert!(wheel(&r, "numpy").version.starts_with("1."));
    let df = render::dockerfile(&r);
    assert!(df.contains("--require-hashes"), "{df}");
    // The allocator setting reaches PyTorch 1.13.1 only under the HIP name.
    assert!(
        r.env.get(source::PYTORCH_1_13_ROCM_ALLOC_CONF).is_some_and(
            |v| df.contains(&format!("{}=\"{v}\"", source::PYTORCH_1_13_ROCM_ALLOC_CONF))
        ),
        "{df}"
    );
    assert!(
        !df.contains("/opt/rocm"),
        "rocm52 needs no system ROCm: the wheels bundle it"
    );
    let PyTorch::Wheels(w) = &r.pytorch else {
        unreachable!()
    };
    let req = render::requirements(&w.packages);
    assert_eq!(
        req.matches("--hash=sha256:").count(),
        w.packages.iter().map(|p| p.sha256.len()).sum::<usize>()
    );
}

#[test]
fn rocm62_matches_its_sources() {
    let r = load("rocm62");
    let (image, digest) = source::ROCM_DEV_UBUNTU_22_04_6_2_COMPLETE;
    assert_eq!(
        (r.base.image.as_str(), r.base.digest.as_deref()),
        (image, Some(digest))
    );
    assert_eq!(
        r.gpu.targets["gfx1010"], None,
        "gfx1010 runs its own code natively"
    );
    for t in ["gfx1011", "gfx1012"] {
        assert_eq!(
            r.gpu.targets[t].as_deref(),
            Some(source::GFX1011_1012_ON_GFX1010_CODE)
        );
    }
    let PyTorch::Source(s) = &r.pytorch else {
        panic!("rocm62 builds from source")
    };
    assert_eq!(s.commit, source::PYTORCH_V2_4_1_COMMIT);
    assert_eq!(s.version, "2.4.1");
    assert_eq!(s.arch, ["gfx1010"]);
    // pytorch #125230: 2.4 needs both attention kernels off plus the guard patch.
    assert_eq!(s.env["USE_FLASH_ATTENTION"], "0");
    assert_eq!(s.env["USE_MEM_EFF_ATTENTION"], "0");
    let df = render::dockerfile(&r);
    assert!(df.contains("PYTORCH_ROCM_ARCH=\"gfx1010\""), "{df}");
    assert!(df.contains(
        "git apply --check /opt/rdna1-images/patches/pytorch-2.4.1-aotriton-guard.patch"
    ));
    assert!(df.contains("roc-obj-ls torch/lib/libtorch_hip.so") && df.contains("grep -q gfx1010"));
    assert!(
        df.contains("TensileLibrary_lazy_gfx1010.dat"),
        "rocBLAS preflight"
    );
    // A ` #` inside a plain YAML scalar once cut this command short. Preflight steps are
    // exec-form RUNs, so the quote is JSON-escaped.
    assert!(df.contains("(Tensile #1757)\\\" >&2; exit 1; }\"]"), "{df}");
    assert!(df.contains("--mount=type=cache,target=/root/.ccache"));
    assert!(df.contains("export MAX_JOBS=\"$jobs\""), "{df}");
    let runtime = runtime_stage(&df);
    assert!(
        runtime.contains("TORCH_BLAS_PREFER_HIPBLASLT=\"0\""),
        "hipBLASLt has no gfx10 code"
    );
    assert!(
        !runtime.to_lowercase().contains("ccache"),
        "no compiler launcher in the runtime image"
    );
    assert!(runtime.contains("COPY --from=builder /wheels/"));
    assert!(runtime.contains("pip check"));
    // Patches are part of the build context and so of the input digest.
    let loaded = Catalog::embedded().load("rocm62").unwrap();
    let ctx = rdna1_images::context::Context::for_recipe(&loaded).unwrap();
    let patch = &ctx.files["patches/pytorch-2.4.1-aotriton-guard.patch"];
    assert!(String::from_utf8_lossy(&patch.data).contains("aotriton"));
}

/// Compilers and tool chains that must not be installed into a runtime image.
const COMPILERS: &[&str] = &[
    "gcc",
    "g++",
    "clang",
    "hipcc",
    "build-essential",
    "rocm-sdk-devel",
    "ccache",
];

#[test]
fn therock_facts() {
    let r = load("therock");
    // ROCm/TheRock cmake/therock_amdgpu_targets.cmake builds gfx1010, gfx1011 and gfx1012
    // (family gfx101X-dgpu), and RELEASES.md ships one device package per target: each
    // chip runs its own code, none needs the override.
    for t in ["gfx1010", "gfx1011", "gfx1012"] {
        assert_eq!(r.gpu.targets[t], None, "{t} runs native code");
    }
    assert_eq!(r.gpu.hsa_override(), None);
    assert_pinned_base(&r);
    assert!(
        r.base.image.starts_with("debian:trixie-"),
        "{}",
        r.base.image
    );
    let PyTorch::Wheels(w) = &r.pytorch else {
        panic!("therock installs wheels")
    };
    let version = |name: &str| {
        w.packages
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no package {name}"))
            .version
            .clone()
    };
    // torch >= 2.12: the first release line TheRock builds for gfx101X with flash
    // attention off (configure_pytorch_release_matrix.py RELEASE_STABLE_PYTORCH_REFS).
    let torch = version("torch");
    let (major, minor) = {
        let mut it = torch
            .split(['.', '+'])
            .map(|x| x.parse::<u32>().unwrap_or(0));
        (it.next().unwrap(), it.next().unwrap())
    };
    assert!((major, minor) >= (2, 12), "torch {torch}");
    assert_eq!(w.torch_version, torch);
    // All three device packages of torch, torchvision and the ROCm SDK, each at the version
    // of the package it belongs to.
    let tv = version("torchvision");
    let sdk = version("rocm-sdk-core");
    for gfx in ["gfx1010", "gfx1011", "gfx1012"] {
        assert_eq!(version(&format!("amd-torch-device-{gfx}")), torch);
        assert_eq!(version(&format!("amd-torchvision-device-{gfx}")), tv);
        assert_eq!(version(&format!("rocm-sdk-device-{gfx}")), sdk);
    }
    // torch requires rocm[libraries]==<sdk> (TheRock build_prod_wheels.py) and imports
    // rocm_sdk from the `rocm` meta package, which AMD ships only as an sdist.
    assert!(torch.ends_with(&format!("+rocm{sdk}")), "{torch} vs {sdk}");
    assert_eq!(version("rocm"), sdk);
    assert_eq!(version("rocm-sdk-libraries"), sdk);
    assert!(w.packages.iter().find(|p| p.name == "rocm").unwrap().sdist);
    // Python matches the wheels: Debian 13's python3 is 3.13, and TheRock builds cp310-cp314
    // (RELEASE_PYTHON_VERSIONS); Debian's Python is externally managed (PEP 668).
    assert_eq!(r.python.version, "3.13");
    assert!(r.python.externally_managed);
    assert_eq!(r.smoke.expect.python.as_deref(), Some("3.13"));
    assert_eq!(r.smoke.expect.torch.as_deref(), Some("2.12.0"));

    let df = render::dockerfile(&r);
    assert!(!df.contains("HSA_OVERRIDE_GFX_VERSION"), "{df}");
    // hipBLASLt is not built for gfx101X (therock_amdgpu_targets.cmake, TheRock #1062).
    assert!(df.contains("TORCH_BLAS_PREFER_HIPBLASLT=\"0\""), "{df}");
    assert!(df.contains("--break-system-packages --require-hashes --only-binary=:all: --no-binary=rocm --no-build-isolation"), "{df}");
    // No compiler: none installed by apt or pip, and the image checks none slipped in.
    let apt = df
        .lines()
        .find(|l| l.contains("apt-get install"))
        .expect("an apt step");
    for c in COMPILERS {
        assert!(
            !apt.split_whitespace().any(|w| w == *c),
            "apt installs {c}: {apt}"
        );
        assert!(!w.packages.iter().any(|p| p.name == *c), "pip installs {c}");
    }
    assert!(!df.contains("rocm-sdk-devel"));
    assert!(df.contains("for c in cc gcc g++ c++ clang clang++"), "{df}");
    assert!(!df.contains("MIOPEN_FIND_ENFORCE"));
    // The same MIOpen layout as rocm52, so `run` mounts the same kind of volume.
    let rocm52 = load("rocm52");
    for k in [
        "MIOPEN_USER_DB_PATH",
        "MIOPEN_CUSTOM_CACHE_DIR",
        "MIOPEN_FIND_MODE",
    ] {
        assert_eq!(r.env[k], rocm52.env[k], "{k}");
    }
    // Versions pinned, hashes to be locked: the Dockerfile stops before installing anything,
    // and says what to run.
    assert!(w.lock_pending.is_some());
    let first_run = df.lines().find(|l| l.starts_with("RUN ")).unwrap();
    assert!(
        first_run.contains("recipe therock is not locked") && first_run.ends_with("exit 1; }"),
        "{first_run}"
    );
    assert!(first_run.contains("lock therock"), "{first_run}");
    let req = render::requirements(&w.packages);
    assert!(
        req.contains("torch==2.12.0+rocm10.1.0  # sha256 to be locked"),
        "{req}"
    );
}

#[test]
fn both_smoke_specs_hold_the_rdna1_limits() {
    for name in ["rocm52", "rocm62", "therock"] {
        let r = load(name);
        let case = |n: &str| {
            r.smoke
                .cases
                .iter()
                .find(|c| c.name == n)
                .unwrap_or_else(|| panic!("{name}: no case {n}"))
        };
        let m = case("medium");
        assert_eq!(
            (m.in_channels, m.out_channels, m.size, m.limit_s),
            (16, 32, 48, Some(5.0))
        );
        let l = case("large");
        assert_eq!(
            (l.in_channels, l.out_channels, l.size, l.limit_s),
            (32, 64, 64, Some(10.0))
        );
        let x = case("xlarge");
        assert_eq!((x.in_channels, x.out_channels, x.size), (64, 128, 128));
        assert!(r.smoke.repeat >= 3, "stable over runs needs repeats");
    }
}
