//! The real stacks, checked on paper: snapshots of their Dockerfiles and the facts that
//! decide whether they work on an RX 5600 XT / 5700 XT, each citing its public source.

use rdna1_images::recipe::{Catalog, PyTorch, Recipe};
use rdna1_images::render;

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

#[test]
fn therock_dockerfile_snapshot() {
    insta::assert_snapshot!("therock", render::dockerfile(&load("therock")));
}

fn assert_pinned_base(r: &Recipe) {
    let d = r.base.digest.as_deref().unwrap_or_else(|| {
        assert!(
            r.base.unpinned_reason.is_some(),
            "{}: base neither pinned nor excused",
            r.name
        );
        ""
    });
    if !d.is_empty() {
        assert!(d.starts_with("sha256:") && d.len() == 71, "{}: {d}", r.name);
        assert!(render::dockerfile(r).contains(&format!("FROM {}@{d}", r.base.image)));
    }
}

#[test]
fn rocm52_facts() {
    let r = load("rocm52");
    assert_eq!(
        r.python.version, "3.10",
        "no rocm5.2 wheel exists for Python 3.11+"
    );
    for t in ["gfx1010", "gfx1011", "gfx1012"] {
        assert_eq!(
            r.gpu.targets[t].as_deref(),
            Some("10.3.0"),
            "{t}: the wheels carry no gfx101x code"
        );
    }
    assert_pinned_base(&r);
    let PyTorch::Wheels(w) = &r.pytorch else {
        panic!("rocm52 installs wheels")
    };
    assert!(w.torch_version.starts_with("1.13.1+rocm5.2"));
    let torch = w.packages.iter().find(|p| p.name == "torch").unwrap();
    assert!(torch
        .url
        .as_deref()
        .unwrap()
        .ends_with("torch-1.13.1%2Brocm5.2-cp310-cp310-linux_x86_64.whl"));
    assert_eq!(
        torch.sha256,
        ["f3685d08ac0d8c951cc367f9bd4b2c924c5d4517669c476807748abcd966136f"]
    );
    let tv = w.packages.iter().find(|p| p.name == "torchvision").unwrap();
    assert_eq!(
        tv.sha256,
        ["a01606fcaedb824c6ed14be6c92d94d6e7762e4150fc26ab731a4427dc733184"]
    );
    for p in &w.packages {
        assert!(!p.sha256.is_empty(), "{} has no hash", p.name);
        for h in &p.sha256 {
            assert!(
                h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()),
                "{}: {h}",
                p.name
            );
        }
    }
    let numpy = w.packages.iter().find(|p| p.name == "numpy").unwrap();
    assert!(
        numpy.version.starts_with("1."),
        "torch 1.13.1 needs numpy<2, got {}",
        numpy.version
    );
    let df = render::dockerfile(&r);
    assert!(df.contains("--require-hashes"), "{df}");
    assert!(df.contains("HSA_OVERRIDE_GFX_VERSION=\"10.3.0\""), "{df}");
    // PyTorch 1.13.1's ROCm build reads only the HIP name: hipify turns the getenv of
    // PYTORCH_CUDA_ALLOC_CONF in c10/cuda/CUDACachingAllocator.cpp into
    // PYTORCH_HIP_ALLOC_CONF (rdna1-images issue #13).
    assert!(
        df.contains(
            "PYTORCH_HIP_ALLOC_CONF=\"garbage_collection_threshold:0.9,max_split_size_mb:512\""
        ),
        "{df}"
    );
    assert!(!df.contains("MIOPEN_FIND_ENFORCE"));
    assert!(
        !df.contains("/opt/rocm"),
        "rocm52 needs no system ROCm: the wheels bundle it"
    );
    let req = render::requirements(&w.packages);
    assert_eq!(
        req.matches("--hash=sha256:").count(),
        w.packages.iter().map(|p| p.sha256.len()).sum::<usize>()
    );
    // The MIOpen caches sit under one folder that `run` mounts as a volume.
    assert!(r.env["MIOPEN_USER_DB_PATH"].starts_with("/var/cache/miopen/"));
    assert!(r.env["MIOPEN_CUSTOM_CACHE_DIR"].starts_with("/var/cache/miopen/"));
    assert_eq!(r.smoke.expect.python.as_deref(), Some("3.10"));
    assert_eq!(r.smoke.expect.hip.as_deref(), Some("5.2"));
}

#[test]
fn rocm62_facts() {
    let r = load("rocm62");
    assert_eq!(
        r.gpu.targets["gfx1010"], None,
        "gfx1010 runs its own code natively"
    );
    assert_eq!(r.gpu.targets["gfx1011"].as_deref(), Some("10.1.0"));
    assert_eq!(r.gpu.targets["gfx1012"].as_deref(), Some("10.1.0"));
    assert_pinned_base(&r);
    let PyTorch::Source(s) = &r.pytorch else {
        panic!("rocm62 builds from source")
    };
    assert_eq!(
        s.commit, "ee1b6804381c57161c477caa380a840a84167676",
        "v2.4.1"
    );
    assert_eq!(s.arch, ["gfx1010"]);
    assert_eq!(s.env["USE_FLASH_ATTENTION"], "0");
    assert_eq!(s.env["USE_MEM_EFF_ATTENTION"], "0");
    for p in s.build_requirements.iter().chain(&s.requirements) {
        assert!(!p.sha256.is_empty(), "{} has no hash", p.name);
    }
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
        !runtime.contains("HSA_OVERRIDE_GFX_VERSION"),
        "native gfx1010: no override"
    );
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
    assert!(!df.contains("MIOPEN_FIND_ENFORCE"));
    assert_eq!(r.smoke.expect.hip.as_deref(), Some("6.2"));
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
