//! The two real stacks, checked on paper: snapshots of their Dockerfiles and the facts from
//! DOMAIN.md that decide whether they work on an RX 5600 XT / 5700 XT.

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

#[test]
fn both_smoke_specs_hold_the_rdna1_limits() {
    for name in ["rocm52", "rocm62"] {
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
