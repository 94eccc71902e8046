//! Runs `program.py` for real, then parses and judges what it printed.
//!
//! - With the host's `python3` and a stand-in torch (`tests/fixtures/smoke/fake_torch`): the
//!   GPU paths (a hang under the watchdog, the MIOpen-logging rerun, mismatch, NaN, a crash, a
//!   hung probe, SIGTERM, the container time budget) need a GPU otherwise. Skipped with a note
//!   when there is no `python3`.
//! - In the test base image through `docker run`, with the real PyTorch 1.13.1 (CPU). When
//!   Docker or the image is missing these skip with a note, and fail under
//!   `RDNA1_REQUIRE_DOCKER=1` (set by `ci/test.sh`), so CI never passes them silently.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::test_fixtures::dir as fixtures;
use super::{command, judge, parse_report, Case, Expect, Judgement, Level, SmokeReport, SmokeSpec};
use crate::smoke::CaseStatus;

fn program() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/smoke/program.py")
}

fn case(name: &str, cin: u32, cout: u32, size: u32) -> Case {
    Case {
        name: name.into(),
        in_channels: cin,
        out_channels: cout,
        size,
        batch: 1,
        kernel: 3,
        limit_s: None,
    }
}

fn spec(case_timeout_s: f64, cases: Vec<Case>) -> SmokeSpec {
    SmokeSpec {
        expect: Expect::default(),
        warmup: 1,
        repeat: 3,
        case_timeout_s,
        container_timeout_s: 600.0,
        tolerance: 1e-3,
        cases,
        conformance: Default::default(),
    }
}

struct Run {
    report: SmokeReport,
    judgement: Judgement,
    stderr: String,
    code: Option<i32>,
    took: Duration,
}

fn finish(spec: &SmokeSpec, level: Level, out: Output, took: Duration) -> Run {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        stdout.lines().count(),
        1,
        "stdout must be exactly one line:\n{stdout}\nstderr:\n{stderr}"
    );
    let report = parse_report(&stdout).unwrap_or_else(|e| panic!("{e}\nstderr:\n{stderr}"));
    let judgement = judge(spec, level, &report);
    Run {
        report,
        judgement,
        stderr,
        code: out.status.code(),
        took,
    }
}

// ---------------------------------------------------------------------------------------------
// Host python3 with the stand-in torch

fn host_python() -> bool {
    let ok = Command::new("python3")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        crate::test_skip::skip("no python3 on this machine to run src/smoke/program.py");
    }
    ok
}

/// The program's command as the engine builds it, pointed at the file in the source tree.
fn host_command(spec: &SmokeSpec, level: Level, torch_dir: &Path) -> Command {
    let argv = command(spec, level, "python3");
    let mut cmd = Command::new(&argv[0]);
    cmd.arg(program())
        .args(&argv[2..])
        .env("PYTHONPATH", torch_dir)
        .env_remove("HSA_OVERRIDE_GFX_VERSION")
        .stdin(Stdio::null());
    cmd
}

fn run_fake(mode: &str, level: Level, spec: &SmokeSpec, pids: Option<&Path>) -> Run {
    let mut cmd = host_command(spec, level, &fixtures().join("fake_torch"));
    cmd.env("FAKE_TORCH", mode);
    if let Some(p) = pids {
        cmd.env("FAKE_TORCH_PIDS", p);
    }
    let start = Instant::now();
    let out = cmd.output().expect("python3 runs");
    finish(spec, level, out, start.elapsed())
}

fn pids_in(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn three_cases() -> Vec<Case> {
    vec![
        case("medium", 16, 32, 48),
        case("large", 32, 64, 64),
        case("xlarge", 64, 128, 128),
    ]
}

#[test]
fn fake_gpu_pass_reports_the_device_and_gfx_target() {
    if !host_python() {
        return;
    }
    let spec = spec(20.0, three_cases());
    let run = run_fake("gpu", Level::Gpu, &spec, None);
    assert!(
        run.judgement.passed,
        "{:?}\n{}",
        run.judgement.findings, run.stderr
    );
    assert_eq!(run.code, Some(0));
    assert_eq!(
        run.report.device_name.as_deref(),
        Some("AMD Radeon RX 5700 XT")
    );
    assert_eq!(run.report.gfx_target.as_deref(), Some("gfx1030"));
    assert_eq!(run.report.cases.len(), 3);
    assert!(run
        .report
        .cases
        .iter()
        .all(|c| c.runs.len() == 3 && c.rerun.is_none()));
    assert!(
        run.stderr.contains("[smoke] case `xlarge`: pass"),
        "{}",
        run.stderr
    );
}

#[test]
fn fake_gpu_hang_is_killed_rerun_with_miopen_logging_and_the_next_case_runs() {
    if !host_python() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pids = tmp.path().join("pids");
    let spec = spec(2.0, three_cases());
    let run = run_fake("gpu-hang:32", Level::Gpu, &spec, Some(&pids));
    assert_eq!(
        run.judgement.findings,
        ["case `large` timed out after 2 s (case_timeout_s), in phase `first call on cuda`"]
    );
    assert_eq!(run.code, Some(1));
    let large = &run.report.cases[1];
    assert_eq!(large.status, CaseStatus::Hang);
    assert_eq!(large.rerun.as_deref(), Some("hang"));
    let log = large.miopen_log.as_deref().unwrap();
    assert!(log.contains("MIOpenDriver conv -c 32"), "{log}");
    assert!(log.contains("[smoke case] first call on cuda"), "{log}");
    assert_eq!(run.report.cases[2].status, CaseStatus::Pass);
    // First run and rerun both hung, and both were killed.
    let hung = pids_in(&pids);
    assert_eq!(hung.len(), 2, "{hung:?}");
    assert!(hung.iter().all(|p| !alive(*p)), "left running: {hung:?}");
    assert!(run.took < Duration::from_secs(15), "{:?}", run.took);
}

#[test]
fn fake_gpu_wrong_results_are_mismatches_with_the_error() {
    if !host_python() {
        return;
    }
    let spec = spec(20.0, vec![case("medium", 16, 32, 48)]);
    let run = run_fake("gpu-wrong", Level::Gpu, &spec, None);
    assert_eq!(
        run.judgement.findings,
        ["case `medium`: result differs from the CPU reference: relative error 5.00e-1, tolerance 1e-3"]
    );
    let medium = &run.report.cases[0];
    assert_eq!(medium.status, CaseStatus::Wrong);
    assert_eq!(medium.rerun.as_deref(), Some("wrong"));
    assert!(medium.miopen_log.is_some());
}

#[test]
fn fake_gpu_nan_is_a_mismatch_that_says_nan() {
    if !host_python() {
        return;
    }
    let spec = spec(20.0, vec![case("medium", 16, 32, 48)]);
    let run = run_fake("gpu-nan", Level::Gpu, &spec, None);
    assert_eq!(
        run.judgement.findings,
        ["case `medium`: the cuda result contains NaN or Inf"]
    );
    assert_eq!(run.report.cases[0].rel_error, None);
}

#[test]
fn fake_gpu_crash_names_the_signal_and_the_phase() {
    if !host_python() {
        return;
    }
    let spec = spec(20.0, vec![case("medium", 16, 32, 48)]);
    let run = run_fake("gpu-crash", Level::Gpu, &spec, None);
    assert_eq!(
        run.judgement.findings,
        ["case `medium` failed: the case process was killed by SIGABRT without a result (last phase: first call on cuda); stderr tail:"]
    );
    let error = run.report.cases[0].error.as_deref().unwrap();
    assert!(error.contains("Device::callbackQueue aborting"), "{error}");
}

#[test]
fn fake_probe_hang_becomes_a_report_error() {
    if !host_python() {
        return;
    }
    let spec = spec(2.0, vec![case("medium", 16, 32, 48)]);
    let run = run_fake("probe-hang", Level::Gpu, &spec, None);
    assert_eq!(
        run.judgement.findings,
        [
            "the smoke program failed: probing torch and the GPU timed out after 2 s (case_timeout_s) during phase `torch.cuda.is_available()`; its process group was killed",
            "case `medium` failed: no result: probing torch and the GPU timed out after 2 s (case_timeout_s) during phase `torch.cuda.is_available()`; its process group was killed",
        ]
    );
}

#[test]
fn fake_rocm_build_without_a_gpu_says_what_to_pass() {
    if !host_python() {
        return;
    }
    let spec = spec(20.0, vec![case("medium", 16, 32, 48)]);
    let run = run_fake("nogpu", Level::Gpu, &spec, None);
    assert_eq!(
        run.judgement.findings,
        [
            "level gpu: torch.cuda.is_available() is False in the container, so no case ran on a GPU",
            "case `medium` failed: level gpu needs a GPU, but torch.cuda.is_available() is False: torch 1.13.1+rocm5.2 (HIP 5.2.21151-afdc89f8) sees no GPU: pass /dev/kfd and /dev/dri to the container, add the host's render/video group IDs, and check HSA_OVERRIDE_GFX_VERSION. The smoke test never falls back to the CPU",
        ]
    );
}

#[test]
fn a_torch_that_fails_to_import_is_the_report_error() {
    if !host_python() {
        return;
    }
    let spec = spec(20.0, vec![case("medium", 16, 32, 48)]);
    let mut cmd = host_command(&spec, Level::Cpu, &fixtures().join("broken_torch"));
    let out = cmd.output().unwrap();
    let run = finish(&spec, Level::Cpu, out, Duration::ZERO);
    assert_eq!(
        run.report.error.as_deref(),
        Some("cannot import torch: ImportError: libamdhip64.so: cannot open shared object file: No such file or directory")
    );
    assert_eq!(run.report.torch, None);
    assert_eq!(
        run.judgement.findings[0],
        "the smoke program failed: cannot import torch: ImportError: libamdhip64.so: cannot open shared object file: No such file or directory"
    );
}

#[test]
fn the_container_budget_shortens_the_watchdog_and_the_report_gets_out_in_time() {
    if !host_python() {
        return;
    }
    let mut spec = spec(4.0, vec![case("a", 16, 16, 8), case("b", 16, 16, 8)]);
    // 3 s of the 6 s are kept to print the report: the first case gets what is left.
    spec.container_timeout_s = 6.0;
    let run = run_fake("gpu-hang:16", Level::Gpu, &spec, None);
    assert!(run.took < Duration::from_secs(6), "{:?}", run.took);
    let a = &run.report.cases[0];
    assert_eq!(a.status, CaseStatus::Hang);
    assert!(a.timeout_s < 3.0, "{}", a.timeout_s);
    assert_eq!(
        a.rerun.as_deref(),
        Some("skipped: the container's time budget is used up")
    );
    // The watchdog is what remained after start-up: about 2-3 s, less on a loaded machine.
    let f = &run.judgement.findings[0];
    let secs: f64 = f
        .strip_prefix("case `a` timed out after ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{f}"));
    assert!(secs > 0.0 && secs < 3.0, "{f}");
    assert!(
        f.ends_with(
            " s (what remained of container_timeout_s = 6 s), in phase `first call on cuda`"
        ),
        "{:?}",
        run.judgement.findings
    );
    assert_eq!(
        run.judgement.findings[1],
        "case `b` failed: not run: the container's time budget (container_timeout_s) is used up"
    );
}

#[test]
fn sigterm_kills_the_running_case_and_still_prints_the_report() {
    if !host_python() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let pids = tmp.path().join("pids");
    let spec = spec(
        60.0,
        vec![case("medium", 16, 32, 48), case("large", 32, 64, 64)],
    );
    let mut cmd = host_command(&spec, Level::Gpu, &fixtures().join("fake_torch"));
    cmd.env("FAKE_TORCH", "gpu-hang:16")
        .env("FAKE_TORCH_PIDS", &pids)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let child = cmd.spawn().unwrap();
    while pids_in(&pids).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the case never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let run = finish(&spec, Level::Gpu, out, start.elapsed());
    assert_eq!(
        run.report.error.as_deref(),
        Some("interrupted by SIGTERM before the smoke test finished")
    );
    assert_eq!(
        run.judgement.findings,
        [
            "the smoke program failed: interrupted by SIGTERM before the smoke test finished",
            "case `medium` failed: no result: interrupted by SIGTERM before the smoke test finished",
            "case `large` failed: no result: interrupted by SIGTERM before the smoke test finished",
        ]
    );
    let hung = pids_in(&pids);
    assert!(hung.iter().all(|p| !alive(*p)), "left running: {hung:?}");
    assert!(run.took < Duration::from_secs(20), "{:?}", run.took);
}

#[test]
fn bad_arguments_exit_2_with_a_report() {
    if !host_python() {
        return;
    }
    let out = Command::new("python3")
        .arg(program())
        .args(["--level", "cpu", "--spec", "{\"cases\": []}"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let report = parse_report(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(
        report.error.as_deref(),
        Some("bad arguments: --spec: `cases` and `conformance` are both empty: nothing to test")
    );
}

// ---------------------------------------------------------------------------------------------
// The test base image through `docker run`

/// Docker runs are heavy on the shared cores: one at a time.
static DOCKER: Mutex<()> = Mutex::new(());

fn test_base_image() -> String {
    std::env::var("RDNA1_TEST_BASE").unwrap_or_else(|_| "rdna1-test-base:bookworm".into())
}

/// The image when Docker and the test base image are there; else a note (or a failure under
/// `RDNA1_REQUIRE_DOCKER=1`).
fn docker_image() -> Option<String> {
    let image = test_base_image();
    let problem = match Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", &image])
        .output()
    {
        Ok(o) if o.status.success() => return Some(image),
        Ok(o) => format!(
            "`docker image inspect {image}` failed ({}); build it with ci/test-base.sh",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("cannot run the docker CLI ({e})"),
    };
    if std::env::var("RDNA1_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("RDNA1_REQUIRE_DOCKER=1 but {problem}");
    }
    crate::test_skip::skip(&format!("a Docker smoke test: {problem}"));
    None
}

fn run_docker(image: &str, spec: &SmokeSpec, level: Level) -> Run {
    let _one_at_a_time = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    let mount = format!("{}:{}:ro", program().display(), super::PROGRAM_PATH);
    let start = Instant::now();
    let out = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "-v", &mount, image])
        .args(command(spec, level, "python3"))
        .stdin(Stdio::null())
        .output()
        .expect("docker runs");
    let took = start.elapsed();
    let run = finish(spec, level, out, took);
    eprintln!("{level} run in {image} took {took:?}:\n{}", run.stderr);
    run
}

fn base_expect() -> Expect {
    // Debian's python3-torch 1.13.1 calls itself 1.13.0a0.
    Expect {
        torch: Some("1.13".into()),
        hip: None,
        python: Some("3".into()),
    }
}

#[test]
fn docker_cpu_level_passes_in_the_test_base_image() {
    let Some(image) = docker_image() else { return };
    let mut spec = spec(120.0, three_cases());
    spec.expect = base_expect();
    spec.repeat = 5;
    spec.cases[0].limit_s = Some(5.0);
    spec.cases[1].limit_s = Some(10.0);
    let run = run_docker(&image, &spec, Level::Cpu);
    eprintln!("{}", super::table(&spec, &run.report, &run.judgement));
    assert!(run.judgement.passed, "{:?}", run.judgement.findings);
    assert_eq!(run.code, Some(0));
    assert_eq!(run.report.cuda_available, Some(false));
    assert_eq!(run.report.hip, None);
    for c in &run.report.cases {
        assert_eq!(c.runs.len(), 5, "{c:?}");
        assert!(c.rel_error.unwrap() < 1e-5, "{c:?}");
    }
}

#[test]
fn docker_a_case_far_too_big_times_out_and_the_report_still_arrives() {
    let Some(image) = docker_image() else { return };
    // Small in memory (64 MB input) but ~10^12 flops in the float64 reference.
    let mut huge = case("huge", 256, 256, 256);
    huge.kernel = 7;
    // 15 s, not 5: the watchdog also covers `import torch`, which takes several seconds on a
    // loaded 2-core machine; the huge case still needs minutes, so it is the one cut short.
    let mut spec = spec(15.0, vec![huge, case("after", 4, 8, 16)]);
    spec.expect = base_expect();
    let run = run_docker(&image, &spec, Level::Cpu);
    assert_eq!(
        run.judgement.findings,
        ["case `huge` timed out after 15 s (case_timeout_s), in phase `cpu reference (float64)`"]
    );
    let huge = &run.report.cases[0];
    assert_eq!(
        huge.rerun.as_deref(),
        Some("skipped: level cpu does not use MIOpen")
    );
    assert_eq!(run.report.cases[1].status, CaseStatus::Pass);
    assert!(run.took < Duration::from_secs(60), "{:?}", run.took);
}

#[test]
fn docker_gpu_level_without_a_gpu_fails_clearly() {
    let Some(image) = docker_image() else { return };
    let mut spec = spec(30.0, vec![case("medium", 16, 32, 48)]);
    spec.expect = base_expect();
    spec.expect.hip = Some("5.2".into());
    let run = run_docker(&image, &spec, Level::Gpu);
    assert!(!run.judgement.passed);
    let torch = run.report.torch.clone().unwrap();
    assert_eq!(
        run.judgement.findings,
        [
            "HIP version not reported, the recipe expects a version starting with `5.2`".to_string(),
            "level gpu: torch.cuda.is_available() is False in the container, so no case ran on a GPU".into(),
            format!("case `medium` failed: level gpu needs a GPU, but torch.cuda.is_available() is False: this torch ({torch}) is not a ROCm build (torch.version.hip is None), so it cannot use an AMD GPU. The smoke test never falls back to the CPU"),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// The conformance suite on the three torch eras (ci/test-base.sh builds the bases)

/// Every suite case, all `required` (so that anything but pass or n/a shows as a finding).
fn whole_suite(case_timeout_s: f64) -> SmokeSpec {
    let mut s = spec(case_timeout_s, vec![case("medium", 16, 32, 48)]);
    s.container_timeout_s = 900.0;
    s.conformance = super::SUITE
        .iter()
        .map(|c| (c.name.to_string(), super::Expectation::Required))
        .collect();
    s
}

fn era_image(var: &str, default: &str) -> Option<String> {
    let image = std::env::var(var).unwrap_or_else(|_| default.into());
    let ok = Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", &image])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if ok {
        return Some(image);
    }
    let problem = format!("{image} ({var}) is not in the engine: build it with ci/test-base.sh");
    if std::env::var("RDNA1_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("RDNA1_REQUIRE_DOCKER=1 but {problem}");
    }
    crate::test_skip::skip(&format!("a Docker smoke test: {problem}"));
    None
}

/// The cases that are n/a on Debian's CPU torch 1.13.1: APIs it lacks (SDPA, torch.compile,
/// _int_mm) and fp16 kernels its CPU build lacks (layer_norm, conv, addmm, fp16 autocast).
const NA_ON_1_13: &[&str] = &[
    "layernorm_fp16",
    "conv2d_fp16",
    "conv1d_fp16",
    "matmul_fp16",
    "sdpa",
    "compile",
    "int_mm",
    "train_fp16_autocast",
];

fn check_era(image: &str, torch: &str, python: &str, na: &[&str]) {
    let mut spec = whole_suite(120.0);
    spec.expect.torch = Some(torch.into());
    spec.expect.python = Some(python.into());
    let run = run_docker(image, &spec, Level::Cpu);
    eprintln!("{}", super::table(&spec, &run.report, &run.judgement));
    let wrong_na: Vec<String> = run
        .report
        .cases
        .iter()
        .filter(|c| (c.status == CaseStatus::NotApplicable) != na.contains(&c.name.as_str()))
        .map(|c| format!("{}: {} ({:?})", c.name, c.status.as_str(), c.error))
        .collect();
    assert!(
        wrong_na.is_empty(),
        "n/a where not expected or missing: {wrong_na:?}"
    );
    // Every other case passes: the judge sees every required case pass.
    let findings: Vec<&String> = run
        .judgement
        .findings
        .iter()
        .filter(|f| !f.contains("is required, but this torch has no such API"))
        .collect();
    assert!(findings.is_empty(), "{findings:?}");
    assert_eq!(run.report.cases.len(), 1 + super::SUITE.len());
    assert!(run
        .report
        .cases
        .iter()
        .all(|c| matches!(c.status, CaseStatus::Pass | CaseStatus::NotApplicable)));
}

#[test]
fn era_bookworm_torch_1_13_whole_suite_in_docker() {
    let Some(image) = docker_image() else { return };
    check_era(&image, "1.13", "3.11", NA_ON_1_13);
}

#[test]
fn era_trixie_torch_2_6_whole_suite_in_docker() {
    let Some(image) = era_image("RDNA1_TEST_BASE_TRIXIE", "rdna1-test-base:trixie") else {
        return;
    };
    check_era(&image, "2.6", "3.13", &[]);
}

#[test]
fn era_sid_torch_2_14_whole_suite_in_docker() {
    let Some(image) = era_image("RDNA1_TEST_BASE_SID", "rdna1-test-base:sid") else {
        return;
    };
    check_era(&image, "2.14", "3.14", &[]);
}

// ---------------------------------------------------------------------------------------------
// The fault injector (tests/fixtures/gpu_faults) in its CPU mode: each fault turns exactly its
// case away from pass, with the right verdict. On a GPU the same faults fire on CUDA tensors
// (tests/fixtures/gpu_faults/run-matrix.sh; README has the H100 figures).

#[test]
fn faults_each_injected_fault_turns_exactly_its_case_in_docker() {
    let Some(image) = era_image("RDNA1_TEST_BASE_TRIXIE", "rdna1-test-base:trixie") else {
        return;
    };
    let faults = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpu_faults");
    let cases = [
        ("zeros", "matmul_fp32", CaseStatus::Wrong),
        ("noise", "sdpa", CaseStatus::Wrong),
        ("fp16", "layernorm_fp16", CaseStatus::Wrong),
        ("compile", "compile", CaseStatus::Wrong),
        ("hang", "index_ops", CaseStatus::Hang),
        ("crash", "rnn", CaseStatus::Crash),
        // A clean "not supported" is `unsupported` on a GPU and n/a at level cpu.
        ("raise", "int_mm", CaseStatus::NotApplicable),
    ];
    // 60 s: the watchdog also covers `import torch`, which takes 25 s and more on a loaded
    // 2-core machine; the hang fault costs one watchdog.
    let mut spec = spec(60.0, Vec::new());
    spec.conformance = cases
        .iter()
        .map(|(_, c, _)| (c.to_string(), super::Expectation::Required))
        .collect();
    let _one_at_a_time = DOCKER.lock().unwrap_or_else(|e| e.into_inner());
    for (fault, target, verdict) in cases {
        let mount = format!("{}:{}:ro", program().display(), super::PROGRAM_PATH);
        let faults_mount = format!("{}:/opt/gpu_faults:ro", faults.display());
        let out = Command::new("docker")
            .args(["run", "--rm", "--network", "none", "-v", &mount])
            .args(["-v", &faults_mount, "-e", "PYTHONPATH=/opt/gpu_faults"])
            .args([
                "-e",
                &format!("RDNA1_FAULT={fault}"),
                "-e",
                "RDNA1_FAULT_DEVICE=cpu",
            ])
            .arg(&image)
            .args(command(&spec, Level::Cpu, "python3"))
            .stdin(Stdio::null())
            .output()
            .expect("docker runs");
        let run = finish(&spec, Level::Cpu, out, Duration::ZERO);
        let got: Vec<(&str, CaseStatus)> = run
            .report
            .cases
            .iter()
            .map(|c| (c.name.as_str(), c.status))
            .collect();
        for (name, status) in &got {
            let want = if *name == target {
                verdict
            } else {
                CaseStatus::Pass
            };
            assert_eq!(*status, want, "fault {fault}: {got:?}\n{}", run.stderr);
        }
    }
}
