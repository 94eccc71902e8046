#!/usr/bin/env python3
"""rdna1-images smoke test: a conformance suite of the operations that break on RDNA1, each run
on the GPU (or the CPU) and checked against a CPU reference.

Copied into every image at /opt/rdna1-images/smoke.py and run as

    python3 smoke.py --level gpu|cpu|skip --spec '<json of the recipe's SmokeSpec>'

The spec's `cases` are the seed's fp32 Conv2d cases (always run, always gating); its
`conformance` map names the suite cases to run (see SUITE below) and what the recipe expects
of each. An application image runs the same command with its stack's spec (README).

Progress goes to stderr; stdout gets exactly one line:

    RDNA1_SMOKE_REPORT <compact json>

src/smoke/report.rs parses and src/smoke/judge.rs judges that line: keep them in step and bump
SCHEMA on any incompatible change. Each case ends as exactly one of: pass, wrong (the error and
the tolerance), error (an exception), crash (a signal), hang (the watchdog fired), unsupported
(a clean "not available"), n/a (this torch has no such API). Exit code: 0 when every gating
case (the Conv2d cases and those the recipe marks `required`) passes, 1 otherwise, 2 for bad
arguments; the report is printed in every case, so read it whatever the exit code.

Why it is shaped like this: on RDNA1 (gfx1010) the usual failures are a hang inside MIOpen's
kernel search, a crash in a kernel, or a GPU that reports itself available while its kernels
fail or compute garbage. So this parent process never imports torch: a probe runs in a child,
and every case runs in a process of its own (forked from a fork server that has imported torch
but never touched the GPU, so each case still meets a fresh GPU context and empty in-memory
caches) under a watchdog that kills the case's whole process group. A hang or crash in one case
loses nothing of the others. The parent catches everything so that it always prints its report,
and keeps inside the container's hard limit (`container_timeout_s`) so that the report gets out
before the container is killed.

Runs on Python 3.8 to 3.14 with only torch installed (numpy is not needed).
"""

import copy
import json
import math
import multiprocessing
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

SCHEMA = 2
REPORT_MARKER = "RDNA1_SMOKE_REPORT"
CASE_MARKER = "RDNA1_SMOKE_CASE"
PROBE_MARKER = "RDNA1_SMOKE_PROBE"
LEVELS = ("gpu", "cpu", "skip")
VERDICTS = ("pass", "wrong", "error", "crash", "hang", "unsupported", "n/a")

# Fixed so that a mismatch can be reproduced with the same inputs.
SEED = 0
# What goes into the report of the MIOpen-logging rerun: the end of its stderr.
LOG_TAIL_BYTES = 8192
# How much stderr of a crashed child goes into the case's `error`.
ERROR_TAIL_BYTES = 1500
# A process stuck in the GPU driver may not die at once on SIGKILL: wait this long, then give up.
KILL_GRACE_S = 10.0
# Environment that decides how ROCm, MIOpen and PyTorch behave (DOMAIN.md section 4).
ENV_PREFIXES = ("HSA_", "MIOPEN_", "HIP_", "ROCR_", "AMD_", "PYTORCH_", "TORCH_", "ROCM_", "HCC_")
ENV_NAMES = ("CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL", "AMDGCN_USE_BUFFER_OPS")
MIOPEN_LOG_ENV = {"MIOPEN_ENABLE_LOGGING_CMD": "1", "MIOPEN_LOG_LEVEL": "5"}

SPEC_DEFAULTS = {"warmup": 1, "repeat": 5, "tolerance": 1e-3}
CASE_DEFAULTS = {"batch": 1, "kernel": 3}

# Max |device - reference| / max |reference| allowed, by the dtype the device computes in; the
# reference is float64 on the CPU. fp16 has 11 significant bits (eps 9.8e-4) and bf16 8 (eps
# 7.8e-3): a correct kernel stays well inside these, a wrong one (zeros, garbage, a
# gfx1030 kernel on gfx1010) lands at the order of the result itself. fp32 is checked with
# TF32 off, so 1e-4 holds for GEMM, direct and Winograd solvers on these small shapes.
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 4e-2, "exact": 0.0, "train-fp32": 1e-4,
             "train-fp16": 3e-2}
# How long the sustained-load case keeps the device busy, by level (short and bounded: the
# watchdog covers it with a wide margin).
SUSTAINED_S = {"gpu": 5.0, "cpu": 1.0}
# The memory case allocates this share of the free device memory, twice.
MEMORY_SHARE = 0.8
MEMORY_CHUNK = 256 << 20
# At level cpu it only proves the code path, with a small bounded allocation.
CPU_MEMORY_BYTES = 64 << 20

# The conformance suite: name -> (what it runs, which MIOpen/rocBLAS path it exercises, the
# public report of it breaking on RDNA1). src/smoke/suite.rs lists the same names (a test
# keeps them in step); README's "The conformance suite" explains each.
SUITE = {
    "layernorm_fp16": (
        "LayerNorm(4, eps=1e-5) in fp16 on (64, 4)",
        "vladmandic/sdnext #900 (its fp16 check); AUTOMATIC1111 #4634; ROCm #1857",
    ),
    "conv2d_fp16": (
        "Conv2d 16->32, 1x16x48x48, k3, in fp16",
        "AUTOMATIC1111 #4634 (gray/black images, --no-half); ROCm #1857",
    ),
    "conv1d_fp16": (
        "fp16 conv1d k=1 and k=7 dilation 3, conv_transpose1d k=4 stride 2, on 1x16x64",
        "Comfy-Org/ComfyUI PR #15615 (MIOpen segfault on RDNA1/2)",
    ),
    "batchnorm_backward": (
        "BatchNorm2d(8) forward and backward, fp32, (2, 8, 16, 16), training mode",
        "jc1122/pytorch-gfx1010 README; lamikr/rocm_sdk_builder #98 (DPP row_bcast)",
    ),
    "index_ops": (
        "nonzero, masked_select, boolean indexing, unique, printing a device tensor",
        "jc1122/pytorch-gfx1010 commits 1f6421b, 9e661ae (rocPRIM without gfx1010 code)",
    ),
    "rnn": (
        "LSTM(8, 16) and GRU(8, 16), fp32, sequence 5 x batch 2",
        "jc1122/pytorch-gfx1010 commit 2581b26 (MIOpen RNN compile path)",
    ),
    "matmul_fp32": (
        "matmul 128x256 @ 256x64, fp32 (TF32 off)",
        "pytorch #132570 (invalid device function); TheRock #1062 (no hipBLASLt)",
    ),
    "matmul_fp16": (
        "matmul 128x256 @ 256x64, fp16",
        "pytorch #132570; TheRock #1062",
    ),
    "matmul_bf16": (
        "matmul 128x256 @ 256x64, bf16",
        "pytorch #132570; TheRock #1062; ComfyUI treats gfx101x as without bf16",
    ),
    "sdpa": (
        "scaled_dot_product_attention, (1, 2, 16, 32) fp16 (fp32 at level cpu)",
        "TheRock commit 730319d; build_prod_wheels.py AOTriton arch list (math backend only)",
    ),
    "compile": (
        "torch.compile of an elementwise + reduction function on (64, 32) fp32 "
        "(inductor/Triton at level gpu, aot_eager at level cpu); zeros are wrong",
        "unslothai/unsloth #11614 (zeros under AMD buffer ops; AMDGCN_USE_BUFFER_OPS=0)",
    ),
    "int_mm": (
        "torch._int_mm, int8 32x64 @ 64x32 -> int32, exact",
        "comfy-kitchen rdna1 report; warpfront/hipfire #301 (no v_dot4_i32_i8 on gfx1010)",
    ),
    "randn_to_print": (
        "torch.randn(2, 2).to(0), then print it",
        "pytorch #106728 (segfault with the override on torch >= 2.0)",
    ),
    "sustained": (
        "conv2d + matmul in a loop for a few seconds, results checked",
        "lamikr/rocm_sdk_builder #98; Efenstor/PyTorch-ROCm-gfx1010 README (hangs under load)",
    ),
    "train_fp32": (
        "4 SGD steps of a small conv net with BatchNorm, fp32; losses against the CPU run",
        "the workload itself (Stable Diffusion, ComfyUI training)",
    ),
    "train_fp16_autocast": (
        "the same 4 steps under fp16 autocast; losses against the fp32 CPU run",
        "the workload itself; AUTOMATIC1111 #4634 (fp16 on RDNA1)",
    ),
    "memory": (
        "allocate and free 80% of the free device memory, twice, under the image's allocator "
        "setting (64 MiB at level cpu)",
        "8 GB cards running out mid-job; PYTORCH_HIP_ALLOC_CONF (DOMAIN.md section 4)",
    ),
}
# Suite cases whose failures are worth a rerun with MIOpen's logging on.
USES_MIOPEN = ("conv2d_fp16", "conv1d_fp16", "batchnorm_backward", "rnn", "train_fp32",
               "train_fp16_autocast", "sustained")
EXPECTATIONS = ("required", "pass", "unsupported")
KNOWN_FAILURES = ("wrong", "error", "crash", "hang")


class UsageError(Exception):
    """Bad command line or spec: exit code 2."""


class Terminated(BaseException):
    """SIGTERM or SIGINT arrived; raised in the main thread so that the report still goes out."""


class CaseFailure(Exception):
    """A case failed in a way that needs no traceback (the message says it all)."""


class Wrong(Exception):
    """The device's result differs from the reference beyond the tolerance."""


class NotApplicable(Exception):
    """This torch has no such API (or no such kernel on the CPU at level cpu)."""


class Unsupported(Exception):
    """The operation raised a clean "not available"."""


def progress(msg):
    # Python < 3.9 block-buffers a non-interactive stderr: flush so that `docker logs` follows.
    sys.stderr.write("[smoke] %s\n" % msg)
    sys.stderr.flush()


def describe(exc):
    """One readable line for an exception: its type and the first lines of its message."""
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    text = " | ".join(lines[:4])
    if len(text) > 1000:
        text = text[:1000] + "..."
    name = type(exc).__name__
    return "%s: %s" % (name, text) if text else name


def fmt_s(seconds):
    """Seconds for messages: 30, 7.5, 112.8 (a shortened watchdog is not worth more digits)."""
    return "%g" % round(seconds, 1)


def finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_clean(obj):
    """JSON has no NaN or Infinity (serde_json rejects them): turn them into null."""
    if isinstance(obj, dict):
        return {str(k): json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v) for v in obj]
    if isinstance(obj, float):
        return finite_or_none(obj)
    if isinstance(obj, str):
        return clean_str(obj)
    if obj is None or isinstance(obj, (bool, int)):
        return obj
    return clean_str(str(obj))


def clean_str(text):
    """Valid UTF-8 only: a lone surrogate (from undecodable env bytes) breaks serde_json."""
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "replace")
    return raw.decode("utf-8", "replace")


def fmt_duration(seconds):
    """Short, in the unit that fits (as the Rust table does): 12.40 s, 3.1 ms, 85 us."""
    if seconds is None:
        return "-"
    if seconds >= 1:
        return "%.2f s" % seconds
    if seconds >= 1e-3:
        return "%.1f ms" % (seconds * 1e3)
    return "%.0f us" % (seconds * 1e6)


def relevant_env():
    return {
        k: v
        for k, v in sorted(os.environ.items())
        if k.startswith(ENV_PREFIXES) or k in ENV_NAMES
    }


def read_tail(path, limit):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    if size > limit:
        # Start at a line boundary, and say that the head was cut.
        cut = text.find("\n")
        if 0 <= cut < len(text) - 1:
            text = text[cut + 1 :]
        text = "[... %d bytes before this cut ...]\n%s" % (size - len(data), text)
    return text


def read_text(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def kill_group(proc):
    """SIGKILL the child and everything it started (MIOpen may spawn compilers)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        try:
            proc.kill()
        except OSError:
            pass
    try:
        proc.wait(timeout=KILL_GRACE_S)
        return True
    except subprocess.TimeoutExpired:
        return False


def signal_name(code):
    try:
        return signal.Signals(-code).name
    except (ValueError, AttributeError):
        return "signal %d" % -code


# ---------------------------------------------------------------------------------------------
# Arguments and spec


def parse_args(argv):
    """Hand-rolled because argparse exits on errors, and the parent must print its report."""
    opts = {"level": None, "spec": None, "probe": False}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            opts["help"] = True
            i += 1
            continue
        if arg == "--probe":
            opts["probe"] = True
            i += 1
            continue
        if arg == "--list":
            opts["list"] = True
            i += 1
            continue
        key, value = arg, None
        if "=" in arg and arg.startswith("--"):
            key, value = arg.split("=", 1)
        if key not in ("--level", "--spec"):
            raise UsageError("unknown argument %r (use --level gpu|cpu|skip --spec JSON)" % arg)
        if value is None:
            if i + 1 >= len(argv):
                raise UsageError("%s needs a value" % key)
            value = argv[i + 1]
            i += 1
        opts[key[2:]] = value
        i += 1
    if opts["probe"] or opts.get("help") or opts.get("list"):
        return opts
    if opts["level"] not in LEVELS:
        raise UsageError(
            "--level must be one of %s, got %r" % (", ".join(LEVELS), opts["level"])
        )
    if opts["spec"] is None:
        raise UsageError("--spec JSON is required (the recipe's smoke section as JSON)")
    return opts


def positive_number(value, where, integer=False):
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not value > 0:
        kind = "a positive integer" if integer else "a positive number"
        raise UsageError("--spec: %s must be %s, got %r" % (where, kind, value))
    return value


def expectation(value, name):
    """A conformance entry: required, pass, unsupported, or {"wrong": "<public source>"} (or
    error, crash, hang: a known failure)."""
    if value in EXPECTATIONS:
        return value
    if (isinstance(value, dict) and len(value) == 1 and list(value)[0] in KNOWN_FAILURES
            and isinstance(list(value.values())[0], str)):
        return value
    raise UsageError(
        "--spec: conformance.%s must be one of %s or {\"wrong|error|crash|hang\": SOURCE}, "
        "got %r" % (name, ", ".join(EXPECTATIONS), value)
    )


def load_spec(text):
    """Parse the SmokeSpec JSON; the Rust side validated it, this guards hand-made specs."""
    try:
        spec = json.loads(text)
    except ValueError as e:
        raise UsageError("--spec is not valid JSON: %s" % e)
    if not isinstance(spec, dict):
        raise UsageError("--spec must be a JSON object")
    for key, default in SPEC_DEFAULTS.items():
        spec.setdefault(key, default)
    cases = spec.get("cases", [])
    conformance = spec.get("conformance") or {}
    if not isinstance(cases, list):
        raise UsageError("--spec: `cases` must be a list")
    if not isinstance(conformance, dict):
        raise UsageError("--spec: `conformance` must be an object")
    if not cases and not conformance:
        raise UsageError("--spec: `cases` and `conformance` are both empty: nothing to test")
    positive_number(spec.get("case_timeout_s"), "case_timeout_s")
    if spec.get("container_timeout_s") is not None:
        positive_number(spec["container_timeout_s"], "container_timeout_s")
    positive_number(spec["tolerance"], "tolerance")
    positive_number(spec["repeat"], "repeat", integer=True)
    if spec["warmup"] != 0:
        positive_number(spec["warmup"], "warmup", integer=True)
    checked = []
    for i, case in enumerate(cases):
        if not isinstance(case, dict) or not isinstance(case.get("name"), str):
            raise UsageError("--spec: cases[%d] needs a string `name`" % i)
        case = dict(CASE_DEFAULTS, **case)
        for field in ("in_channels", "out_channels", "size", "batch", "kernel"):
            positive_number(case.get(field), "cases[%d].%s" % (i, field), integer=True)
        case["kind"] = "conv2d"
        checked.append(case)
    names = set(c["name"] for c in checked)
    for name in sorted(conformance):
        if name not in SUITE:
            raise UsageError(
                "--spec: conformance names unknown case %r (known: %s)"
                % (name, ", ".join(SUITE))
            )
        if name in names:
            raise UsageError("--spec: %r is both a Conv2d case and a suite case" % name)
        expectation(conformance[name], name)
    # Suite cases run in SUITE's order, after the Conv2d cases (whose first calls the seed's
    # limits are about: they meet MIOpen with nothing compiled yet).
    for name in SUITE:
        if name in conformance:
            checked.append({"name": name, "kind": "suite", "expect": conformance[name]})
    spec["cases"] = checked
    return spec


def gates(case):
    """A case whose failure fails the smoke test: every Conv2d case, and `required` ones."""
    return case["kind"] == "conv2d" or case.get("expect") == "required"


def expected_verdict(case):
    exp = case.get("expect")
    if case["kind"] == "conv2d" or exp in ("required", "pass"):
        return "pass"
    if exp == "unsupported":
        return "unsupported"
    return list(exp)[0]


# ---------------------------------------------------------------------------------------------
# Child processes under a watchdog


class ChildRun(object):
    def __init__(self):
        self.timed_out = False
        self.returncode = None
        self.unkillable = False
        self.stdout = ""
        self.stderr_path = None
        self.phase = None
        self.elapsed_s = 0.0


def child_paths(workdir, tag):
    return tuple(os.path.join(workdir, tag + ext) for ext in (".out", ".err", ".phase"))


def finish_run(run, out_path, phase_path, started):
    run.elapsed_s = time.monotonic() - started
    run.stdout = read_text(out_path)
    run.phase = read_text(phase_path).strip() or None
    return run


def run_child(args, workdir, tag, timeout_s, extra_env=None):
    """Run this program again with `args`, under a watchdog of `timeout_s` seconds.

    Output goes to files, not pipes: a killed child's grandchildren can keep a pipe open and
    block the reader, and a MIOpen log at level 5 can be large.
    """
    run = ChildRun()
    out_path, err_path, phase_path = child_paths(workdir, tag)
    run.stderr_path = err_path
    env = dict(os.environ)
    env.update(extra_env or {})
    env["RDNA1_SMOKE_PHASE_FILE"] = phase_path
    cmd = [sys.executable or "python3", os.path.abspath(__file__)] + list(args)
    started = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, start_new_session=True
        )
        try:
            run.returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            run.timed_out = True
            run.unkillable = not kill_group(proc)
        finally:
            # Also reached on SIGTERM of the parent: leave no child running.
            if proc.poll() is None and not run.timed_out:
                kill_group(proc)
    return finish_run(run, out_path, phase_path, started)


class ForkServer(object):
    """Case processes forked from a server that imported torch once.

    `import torch` takes seconds (more on a busy machine); a suite of twenty cases would spend
    most of its time there. The server imports torch but never touches the GPU, so every case
    still starts with no GPU context, no loaded kernels and no in-memory MIOpen state: its
    first call is the cold one the limits are about. RDNA1_SMOKE_NO_FORKSERVER=1 (or a
    platform without fork servers) runs each case in a fresh interpreter instead.
    """

    def __init__(self):
        self.ctx = None
        self.failed = os.environ.get("RDNA1_SMOKE_NO_FORKSERVER") == "1"

    def context(self):
        if self.failed:
            return None
        if self.ctx is None:
            try:
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload(["torch"])
                self.ctx = ctx
            except (ValueError, OSError, ImportError) as e:
                progress("no fork server (%s): each case starts its own interpreter" % describe(e))
                self.failed = True
        return self.ctx


def forked_case(payload_text, out_path, err_path, phase_path, extra_env):
    """The body of a forked case process: its own process group, output to files."""
    os.setsid()
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    os.dup2(os.open(out_path, flags, 0o644), 1)
    os.dup2(os.open(err_path, flags, 0o644), 2)
    sys.stdout = open(out_path, "a")
    sys.stderr = open(err_path, "a")
    os.environ["RDNA1_SMOKE_PHASE_FILE"] = phase_path
    os.environ.update(extra_env)
    case_main(payload_text)
    sys.stdout.flush()
    sys.stderr.flush()


def run_forked(server, payload, workdir, tag, timeout_s, extra_env=None):
    """Like run_child, with the case forked from the fork server."""
    ctx = server.context()
    if ctx is None:
        return run_child(["--run-case", json.dumps(payload)], workdir, tag, timeout_s, extra_env)
    run = ChildRun()
    out_path, err_path, phase_path = child_paths(workdir, tag)
    run.stderr_path = err_path
    for path in (out_path, err_path):
        open(path, "wb").close()
    started = time.monotonic()
    proc = ctx.Process(
        target=forked_case,
        args=(json.dumps(payload), out_path, err_path, phase_path, dict(extra_env or {})),
    )
    try:
        proc.start()
    except (OSError, ValueError, RuntimeError) as e:
        progress("the fork server failed (%s): cases start their own interpreter" % describe(e))
        server.failed = True
        return run_child(["--run-case", json.dumps(payload)], workdir, tag, timeout_s, extra_env)
    try:
        proc.join(max(timeout_s - (time.monotonic() - started), 0.0))
        if proc.exitcode is None:
            run.timed_out = True
            run.unkillable = not kill_process(proc)
    finally:
        if proc.exitcode is None and not run.timed_out:
            kill_process(proc)
    run.returncode = proc.exitcode
    return finish_run(run, out_path, phase_path, started)


def kill_process(proc):
    """SIGKILL a forked case and its process group; False if it did not exit in time."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.kill()
    except (OSError, AttributeError, ValueError):
        pass
    proc.join(KILL_GRACE_S)
    return proc.exitcode is not None


def marked_json(text, marker):
    """The JSON after the last `marker` line in text, or None."""
    found = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(marker + " "):
            found = line[len(marker) + 1 :]
    if found is None:
        return None
    try:
        value = json.loads(found)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def no_result_message(run, what):
    """Why a child that was not timed out gave no result line."""
    code = run.returncode
    if code is not None and code < 0:
        how = "was killed by %s" % signal_name(code)
        if code == -signal.SIGKILL:
            how += " (out of memory?)"
    else:
        how = "exited with code %s" % code
    tail = read_tail(run.stderr_path, ERROR_TAIL_BYTES).strip()
    msg = "%s %s without a result" % (what, how)
    if run.phase:
        msg += " (last phase: %s)" % run.phase
    if tail:
        msg += "; stderr tail:\n%s" % tail
    return msg


def timeout_message(run, timeout_s, why):
    msg = "timed out after %s s (%s)" % (fmt_s(timeout_s), why)
    if run.phase:
        msg += " during phase `%s`" % run.phase
    msg += "; its process group was killed"
    if run.unkillable:
        msg += (
            ", but the process did not exit within %s s of SIGKILL"
            " (stuck in the GPU driver?)" % fmt_s(KILL_GRACE_S)
        )
    return msg


# ---------------------------------------------------------------------------------------------
# Parent


class Budget(object):
    """What is left of the container's hard limit, minus a reserve to print the report."""

    def __init__(self, spec, started):
        total = spec.get("container_timeout_s")
        if total is None:
            self.deadline = None
            self.total = None
        else:
            reserve = min(30.0, max(3.0, 0.05 * total))
            self.deadline = started + total - reserve
            self.total = total

    def remaining(self):
        if self.deadline is None:
            return float("inf")
        return self.deadline - time.monotonic()

    def timeout_for(self, case_timeout_s):
        """The watchdog to use now, and why it is what it is."""
        left = self.remaining()
        if left < case_timeout_s:
            return (
                max(0.0, left),
                "what remained of container_timeout_s = %s s" % fmt_s(self.total),
            )
        return case_timeout_s, "case_timeout_s"


def new_report(level):
    return {
        "schema": SCHEMA,
        "level": level,
        "python": platform.python_version(),
        "torch": None,
        "hip": None,
        "cuda": None,
        "cuda_available": None,
        "device_name": None,
        "gfx_target": None,
        "hsa_override": os.environ.get("HSA_OVERRIDE_GFX_VERSION"),
        "env": relevant_env(),
        "cases": [],
        "error": None,
        "elapsed_s": None,
    }


def case_entry(case, spec, status, error=None, timeout_s=None):
    conv = case["kind"] == "conv2d"
    return {
        "name": case["name"],
        "kind": case["kind"],
        "what": shape_text(case) if conv else SUITE[case["name"]][0],
        "expect": None if conv else case["expect"],
        "in_channels": case.get("in_channels"),
        "out_channels": case.get("out_channels"),
        "size": case.get("size"),
        "batch": case.get("batch"),
        "kernel": case.get("kernel"),
        "status": status,
        "first_s": None,
        "steady_s": None,
        "runs": [],
        "rel_error": None,
        "tolerance": spec["tolerance"] if conv else None,
        "error": error,
        "detail": None,
        "timeout_s": spec["case_timeout_s"] if timeout_s is None else timeout_s,
        "phase": None,
        "miopen_log": None,
        "rerun": None,
    }


def shape_text(case):
    return "Conv2d fp32 %d->%d ch, input %dx%dx%dx%d, kernel %d" % (
        case["in_channels"],
        case["out_channels"],
        case["batch"],
        case["in_channels"],
        case["size"],
        case["size"],
        case["kernel"],
    )


def run_probe(workdir, report, budget, spec):
    """Versions and the device, from a child: importing torch or starting HIP can hang or crash."""
    timeout_s, why = budget.timeout_for(spec["case_timeout_s"])
    if timeout_s < 1:
        return "not run: the container's time budget is used up"
    run = run_child(["--probe"], workdir, "probe", timeout_s)
    if run.timed_out:
        return "probing torch and the GPU " + timeout_message(run, timeout_s, why)
    info = marked_json(run.stdout, PROBE_MARKER)
    if info is None:
        return no_result_message(run, "the torch/GPU probe")
    for key in ("torch", "hip", "cuda", "cuda_available", "device_name", "gfx_target"):
        report[key] = info.get(key)
    return info.get("error")


def no_gpu_message(torch_version, hip):
    if hip is None:
        why = (
            "this torch (%s) is not a ROCm build (torch.version.hip is None), "
            "so it cannot use an AMD GPU" % torch_version
        )
    else:
        why = (
            "torch %s (HIP %s) sees no GPU: pass /dev/kfd and /dev/dri to the container, "
            "add the host's render/video group IDs, and check HSA_OVERRIDE_GFX_VERSION"
            % (torch_version, hip)
        )
    return (
        "level gpu needs a GPU, but torch.cuda.is_available() is False: %s. "
        "The smoke test never falls back to the CPU" % why
    )


def run_case(server, workdir, tag, case, spec, level, timeout_s, why, extra_env=None):
    """One run of one case in a child; returns the fields of its case entry."""
    payload = {
        "level": level,
        "case": case,
        "warmup": spec["warmup"],
        "repeat": spec["repeat"],
        "tolerance": spec["tolerance"],
        "seed": SEED,
    }
    run = run_forked(server, payload, workdir, tag, timeout_s, extra_env=extra_env)
    out = {
        "timeout_s": timeout_s,
        "stderr_path": run.stderr_path,
        "phase": run.phase,
        "unkillable": run.unkillable,
    }
    if run.timed_out:
        out["status"] = "hang"
        out["error"] = "case " + timeout_message(run, timeout_s, why)
        return out
    result = marked_json(run.stdout, CASE_MARKER)
    if result is None:
        code = run.returncode
        out["status"] = "crash" if code is not None and code < 0 else "error"
        out["error"] = no_result_message(run, "the case process")
        return out
    out.update(result)
    return out


def run_one(server, workdir, index, case, spec, level, budget, gpu_missing):
    entry = case_entry(case, spec, "error")
    if gpu_missing:
        entry["error"] = gpu_missing
        entry["rerun"] = "skipped: no GPU to rerun on"
        return entry
    timeout_s, why = budget.timeout_for(spec["case_timeout_s"])
    entry["timeout_s"] = timeout_s
    if timeout_s < 1:
        entry["error"] = "not run: the container's time budget (container_timeout_s) is used up"
        return entry
    progress(
        "case `%s` (%s): running, watchdog %s s"
        % (case["name"], entry["what"], fmt_s(timeout_s))
    )
    try:
        first = run_case(server, workdir, "case%d" % index, case, spec, level, timeout_s, why)
    except OSError as e:
        entry["error"] = "could not start the case process: %s" % describe(e)
        return entry
    for key in ("status", "first_s", "steady_s", "runs", "rel_error", "tolerance", "error",
                "detail", "timeout_s"):
        if key in first:
            entry[key] = first[key]
    entry["phase"] = first.get("phase")
    if entry["status"] not in VERDICTS:
        entry["error"] = "unknown status %r from the case process" % entry["status"]
        entry["status"] = "error"
    progress("case `%s`: %s" % (case["name"], summary(entry)))
    if entry["status"] == expected_verdict(case):
        return entry
    if entry["status"] in ("n/a", "unsupported", "pass"):
        return entry
    if case["kind"] != "conv2d" and case["name"] not in USES_MIOPEN:
        return entry
    if level != "gpu":
        entry["rerun"] = "skipped: level %s does not use MIOpen" % level
        return entry
    if first.get("unkillable"):
        # A process stuck in the driver after SIGKILL: the GPU is wedged, a rerun would hang too.
        entry["rerun"] = "skipped: the first run did not exit after SIGKILL (GPU stuck?)"
        return entry
    timeout_s, why = budget.timeout_for(spec["case_timeout_s"])
    if timeout_s < 1:
        entry["rerun"] = "skipped: the container's time budget is used up"
        return entry
    progress("case `%s`: rerun with MIOpen logging (MIOPEN_LOG_LEVEL=5)" % case["name"])
    try:
        again = run_case(
            server, workdir, "case%d-rerun" % index, case, spec, level, timeout_s, why,
            MIOPEN_LOG_ENV,
        )
    except OSError as e:
        entry["rerun"] = "error: could not start the rerun: %s" % describe(e)
        return entry
    entry["rerun"] = again.get("status", "error")
    entry["miopen_log"] = read_tail(again["stderr_path"], LOG_TAIL_BYTES)
    progress("case `%s`: rerun: %s" % (case["name"], entry["rerun"]))
    return entry


def summary(entry):
    if entry["status"] == "pass":
        return "pass, first call %s, steady %s, max error %.1e" % (
            fmt_duration(entry["first_s"]),
            fmt_duration(entry["steady_s"]),
            entry["rel_error"] or 0.0,
        )
    return "%s: %s" % (entry["status"], entry["error"])


def run_parent(level, spec, report, started):
    budget = Budget(spec, started)
    progress(
        "level %s, python %s, %d case(s), watchdog %s s per case"
        % (level, report["python"], len(spec["cases"]), fmt_s(spec["case_timeout_s"]))
    )
    workdir = tempfile.mkdtemp(prefix="rdna1-smoke-")
    try:
        probe_error = run_probe(workdir, report, budget, spec)
        progress(
            "torch %s, HIP %s, CUDA %s, cuda available %s, device %s, gfx target %s, override %s"
            % (
                report["torch"],
                report["hip"],
                report["cuda"],
                report["cuda_available"],
                report["device_name"],
                report["gfx_target"],
                report["hsa_override"],
            )
        )
        if probe_error:
            report["error"] = probe_error
            progress("probe failed: %s" % probe_error)
            return
        if level == "skip":
            progress("level skip: no case is run")
            return
        gpu_missing = None
        if level == "gpu" and not report["cuda_available"]:
            gpu_missing = no_gpu_message(report["torch"], report["hip"])
            progress(gpu_missing)
        server = ForkServer()
        for index, case in enumerate(spec["cases"]):
            report["cases"].append(
                run_one(server, workdir, index, case, spec, level, budget, gpu_missing)
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def fill_missing_cases(report, spec):
    """Cases that never ran (an early error, a signal) are listed with the reason."""
    if spec is None or report.get("level") == "skip":
        return
    done = set(c["name"] for c in report["cases"])
    reason = report.get("error") or "not run"
    for case in spec["cases"]:
        if case["name"] not in done:
            report["cases"].append(case_entry(case, spec, "error", "no result: %s" % reason))


def emit(report):
    line = None
    try:
        line = json.dumps(json_clean(report), separators=(",", ":"), sort_keys=False)
    except Exception as e:  # never expected; the report must still get out
        line = json.dumps(
            {"schema": SCHEMA, "level": report.get("level"), "cases": [], "error": describe(e)}
        )
    sys.stdout.write("%s %s\n" % (REPORT_MARKER, line))
    sys.stdout.flush()


def on_signal(signum, frame):
    raise Terminated(signal_name(-signum))


def parent_main(argv):
    started = time.monotonic()
    report = new_report(None)
    spec = None
    code = 1
    try:
        # PID 1 in a container ignores SIGTERM without a handler; with one, `docker stop`
        # still gets a report (with what ran so far) instead of a 10 s wait and a SIGKILL.
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            opts = parse_args(argv)
            report["level"] = opts["level"]
            spec = load_spec(opts["spec"])
        except UsageError as e:
            report["error"] = "bad arguments: %s" % e
            progress(report["error"])
            code = 2
            return code
        run_parent(opts["level"], spec, report, started)
        by_name = dict((c["name"], c) for c in report["cases"])
        ok = not report["error"] and all(
            by_name.get(c["name"], {}).get("status") == "pass"
            for c in spec["cases"]
            if gates(c)
        )
        code = 0 if ok else 1
    except Terminated as e:
        report["error"] = "interrupted by %s before the smoke test finished" % e
        progress(report["error"])
    except BaseException as e:
        report["error"] = "the smoke program failed: %s" % describe(e)
        progress(report["error"])
        traceback.print_exc()
    finally:
        # A second signal must not cut the report line in half.
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                signal.signal(sig, signal.SIG_IGN)
            except (OSError, ValueError):
                pass
        try:
            fill_missing_cases(report, spec)
        except Exception:
            pass
        report["elapsed_s"] = round(time.monotonic() - started, 3)
        emit(report)
    return code


# ---------------------------------------------------------------------------------------------
# Children


def set_phase(name):
    """Tell the parent where we are, so that a timeout can say where it hung."""
    sys.stderr.write("[smoke case] %s\n" % name)
    sys.stderr.flush()
    path = os.environ.get("RDNA1_SMOKE_PHASE_FILE")
    if path:
        try:
            with open(path, "w") as f:
                f.write(name)
        except OSError:
            pass


def probe_main():
    info = {"torch": None, "hip": None, "cuda": None, "cuda_available": None,
            "device_name": None, "gfx_target": None, "error": None}
    try:
        set_phase("import torch")
        try:
            import torch
        except BaseException as e:
            info["error"] = "cannot import torch: %s" % describe(e)
            return
        info["torch"] = str(torch.__version__)
        hip = getattr(torch.version, "hip", None)
        info["hip"] = str(hip) if hip else None
        cuda = getattr(torch.version, "cuda", None)
        info["cuda"] = str(cuda) if cuda else None
        set_phase("torch.cuda.is_available()")
        info["cuda_available"] = bool(torch.cuda.is_available())
        if info["cuda_available"]:
            set_phase("device properties")
            info["device_name"] = str(torch.cuda.get_device_name(0))
            props = torch.cuda.get_device_properties(0)
            # gcnArchName came with later PyTorch releases; 1.13 does not have it.
            arch = getattr(props, "gcnArchName", None)
            info["gfx_target"] = str(arch) if arch else "unknown"
    except BaseException as e:
        info["error"] = "probing torch and the GPU failed: %s" % describe(e)
        traceback.print_exc()
    finally:
        sys.stdout.write("%s %s\n" % (PROBE_MARKER, json.dumps(json_clean(info))))
        sys.stdout.flush()


# A clean "not available" from an operation (verdict `unsupported` at level gpu). At level cpu
# the same words mean the CPU build lacks the kernel for that dtype: n/a, since the level only
# proves the program and the stack's Python side.
UNSUPPORTED_PATTERNS = (
    r"not implemented for '(Half|BFloat16)'",
    r"\bnot (currently )?supported\b",
    r"\bunsupported\b",
    r"\bnot implemented\b",
    r"Could not run 'aten::",
    r"TensileLibrary\S*\.dat",
    r"(CU|HIP)BLAS_STATUS_NOT_SUPPORTED",
    r"No available kernel",
)
# torch.compile that refuses this Python (dynamo lags new CPython releases): no such API here.
NA_PATTERNS = (r"not supported on Python", r"Python 3\.\d+\+? is not supported",
               r"Dynamo is not supported")


def classify(exc, level):
    """The verdict for an exception a case raised, and its message."""
    text = describe(exc)
    if isinstance(exc, NotApplicable):
        return "n/a", str(exc)
    if isinstance(exc, Wrong):
        return "wrong", str(exc)
    if isinstance(exc, (Unsupported, NotImplementedError)):
        return ("n/a" if level == "cpu" else "unsupported"), text
    if isinstance(exc, CaseFailure):
        return "error", str(exc)
    if any(re.search(p, text) for p in NA_PATTERNS):
        return "n/a", text
    if isinstance(exc, RuntimeError) and any(re.search(p, text) for p in UNSUPPORTED_PATTERNS):
        return ("n/a" if level == "cpu" else "unsupported"), text
    return "error", text


def case_main(payload_text):
    result = {"status": "error", "first_s": None, "steady_s": None, "runs": [],
              "rel_error": None, "tolerance": None, "error": None, "detail": None}
    level = "cpu"
    try:
        payload = json.loads(payload_text)
        level = payload["level"]
        case = payload["case"]
        if case["kind"] == "conv2d":
            result["tolerance"] = float(payload["tolerance"])
            run_conv_case(payload, result)
        else:
            ctx = Ctx(payload, result)
            SUITE_FUNCTIONS[case["name"]](ctx)
            ctx.finish()
    except BaseException as e:
        result["status"], result["error"] = classify(e, level)
        if result["status"] == "error":
            traceback.print_exc()
    finally:
        sys.stdout.write("%s %s\n" % (CASE_MARKER, json.dumps(json_clean(result))))
        sys.stdout.flush()


def load_torch(level):
    """torch, the device and a sync function; TF32 off so that fp32 means fp32."""
    set_phase("import torch")
    import torch

    torch.set_grad_enabled(False)
    if level == "gpu":
        if not torch.cuda.is_available():
            hip = getattr(torch.version, "hip", None)
            raise CaseFailure(no_gpu_message(str(torch.__version__), hip))
        try:
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        except AttributeError:
            pass
        return torch, torch.device("cuda"), torch.cuda.synchronize

    def sync():
        pass

    return torch, torch.device("cpu"), sync


def run_conv_case(payload, result):
    case = payload["case"]
    level = payload["level"]
    torch, device, sync = load_torch(level)
    import torch.nn.functional as F

    cin, cout, k = case["in_channels"], case["out_channels"], case["kernel"]
    size, batch, pad = case["size"], case["batch"], case["kernel"] // 2
    set_phase("build inputs")
    gen = torch.Generator().manual_seed(int(payload.get("seed", SEED)))
    x = torch.randn(batch, cin, size, size, generator=gen, dtype=torch.float32)
    # The scale nn.Conv2d's default init would give, so outputs stay O(1).
    w = torch.randn(cout, cin, k, k, generator=gen, dtype=torch.float32) / math.sqrt(cin * k * k)
    b = torch.randn(cout, generator=gen, dtype=torch.float32) * 0.1

    # float64 on the CPU: an independent reference even at level cpu, where the device
    # result comes from the same fp32 CPU kernels.
    set_phase("cpu reference (float64)")
    ref = F.conv2d(x.double(), w.double(), b.double(), padding=pad)
    scale = float(ref.abs().max())
    if not scale > 0:
        scale = 1.0

    def rel_error(y):
        return float((y.to("cpu", torch.float64) - ref).abs().max()) / scale

    set_phase("copy inputs to %s" % device)
    xd, wd, bd = x.to(device), w.to(device), b.to(device)
    sync()

    set_phase("first call on %s" % device)
    t0 = time.perf_counter()
    y = F.conv2d(xd, wd, bd, padding=pad)
    sync()
    result["first_s"] = round(time.perf_counter() - t0, 6)
    errors = [rel_error(y)]

    set_phase("warmup on %s" % device)
    for _ in range(int(payload.get("warmup", 1))):
        F.conv2d(xd, wd, bd, padding=pad)
        sync()

    set_phase("timed runs on %s" % device)
    runs = []
    for _ in range(int(payload.get("repeat", 5))):
        t0 = time.perf_counter()
        y = F.conv2d(xd, wd, bd, padding=pad)
        sync()
        runs.append(round(time.perf_counter() - t0, 6))
        result["runs"] = runs
        errors.append(rel_error(y))
    result["steady_s"] = statistics.median(runs) if runs else None

    set_phase("compare with the reference")
    tolerance = float(payload["tolerance"])
    if not all(math.isfinite(e) for e in errors):
        result["status"] = "wrong"
        result["error"] = "the %s result contains NaN or Inf" % device
        return
    worst = max(errors)
    result["rel_error"] = worst
    if worst <= tolerance:
        result["status"] = "pass"
    else:
        result["status"] = "wrong"
        result["error"] = (
            "the %s result differs from the CPU float64 reference: max abs error / max |ref| = "
            "%.3e, tolerance %g (worst of the first call and %d timed runs)"
            % (device, worst, tolerance, len(runs))
        )
    set_phase("done")


class Ctx(object):
    """What a suite case needs: torch, the device, timing, and the comparison."""

    def __init__(self, payload, result):
        self.level = payload["level"]
        self.gpu = self.level == "gpu"
        self.warmup = int(payload.get("warmup", 1))
        self.repeat = int(payload.get("repeat", 5))
        if not self.gpu:
            # CPU times say nothing about a card: two runs prove the steady path, and keep
            # the cpu level of the whole suite inside its minute on a small CI machine.
            self.warmup, self.repeat = min(self.warmup, 1), min(self.repeat, 2)
        self.result = result
        self.torch, self.device, self.sync = load_torch(self.level)
        self.worst = 0.0
        self.tolerance = None
        self.failures = []
        self.detail = {}

    def gen(self):
        return self.torch.Generator().manual_seed(SEED)

    def need(self, obj, attr, what):
        """n/a unless `obj.attr` exists (an API this torch does not have)."""
        if not hasattr(obj, attr):
            raise NotApplicable(
                "torch %s has no %s" % (self.torch.__version__, what)
            )
        return getattr(obj, attr)

    def timed(self, fn):
        """The first call (cold), the warm-up, and the timed runs; returns every result."""
        dev = self.device
        set_phase("first call on %s" % dev)
        t0 = time.perf_counter()
        out = [fn()]
        self.sync()
        self.result["first_s"] = round(time.perf_counter() - t0, 6)
        set_phase("warmup on %s" % dev)
        for _ in range(self.warmup):
            fn()
            self.sync()
        set_phase("timed runs on %s" % dev)
        runs = []
        for _ in range(self.repeat):
            t0 = time.perf_counter()
            y = fn()
            self.sync()
            runs.append(round(time.perf_counter() - t0, 6))
        out.append(y)
        self.result["runs"] = runs
        self.result["steady_s"] = statistics.median(runs) if runs else None
        return out

    def check(self, what, results, ref, tolerance):
        """Compare each result with the float64 CPU reference: max abs error / max |ref|."""
        torch = self.torch
        self.tolerance = tolerance if self.tolerance is None else max(self.tolerance, tolerance)
        ref = ref.to("cpu", torch.float64)
        scale = float(ref.abs().max()) if ref.numel() else 0.0
        if not scale > 0:
            scale = 1.0
        for got in results:
            got = got.to("cpu", torch.float64)
            if tuple(got.shape) != tuple(ref.shape):
                self.failures.append("%s: shape %s, expected %s"
                                     % (what, tuple(got.shape), tuple(ref.shape)))
                return
            if not bool(torch.isfinite(got).all()):
                self.failures.append("%s: the %s result contains NaN or Inf" % (what, self.device))
                self.worst = float("inf")
                return
            err = float((got - ref).abs().max()) / scale if got.numel() else 0.0
            self.worst = max(self.worst, err)
            if err > tolerance:
                self.failures.append(
                    "%s: max abs error / max |ref| = %.3e, tolerance %g" % (what, err, tolerance)
                )
                return

    def check_equal(self, what, got, expected):
        """Exact comparison of anything printable (indices, counts, text)."""
        self.tolerance = 0.0 if self.tolerance is None else self.tolerance
        if got != expected:
            self.worst = float("inf")
            self.failures.append("%s: got %s, expected %s" % (what, clip(got), clip(expected)))

    def finish(self):
        set_phase("compare with the reference")
        r = self.result
        r["tolerance"] = self.tolerance
        r["detail"] = self.detail or None
        r["rel_error"] = self.worst
        if self.failures:
            r["status"] = "wrong"
            r["error"] = "; ".join(self.failures)
        else:
            r["status"] = "pass"
        set_phase("done")


def clip(value, n=200):
    text = str(value)
    return text if len(text) <= n else text[:n] + "..."


def randn(c, *shape, **kw):
    scale = kw.get("scale", 1.0)
    return c.torch.randn(*shape, generator=c.gen_state, dtype=c.torch.float32) * scale


def seeded(c):
    c.gen_state = c.gen()
    return c


def case_layernorm_fp16(c):
    torch = seeded(c).torch
    F = torch.nn.functional
    x = randn(c, 64, 4) * 3 + 1
    ref = F.layer_norm(x.double(), (4,), eps=1e-5)
    ln = torch.nn.LayerNorm(4, eps=1e-5).to(c.device, torch.float16)
    xd = x.to(c.device, torch.float16)
    c.check("LayerNorm(4) fp16", c.timed(lambda: ln(xd)), ref, TOLERANCE["fp16"])


def case_conv2d_fp16(c):
    torch = seeded(c).torch
    F = torch.nn.functional
    x = randn(c, 1, 16, 48, 48)
    w = randn(c, 32, 16, 3, 3, scale=1 / math.sqrt(16 * 9))
    ref = F.conv2d(x.double(), w.double(), padding=1)
    xd, wd = x.to(c.device, torch.float16), w.to(c.device, torch.float16)
    c.check("conv2d fp16", c.timed(lambda: F.conv2d(xd, wd, padding=1)), ref, TOLERANCE["fp16"])


def case_conv1d_fp16(c):
    torch = seeded(c).torch
    F = torch.nn.functional
    x = randn(c, 1, 16, 64)
    w1 = randn(c, 32, 16, 1, scale=1 / 4.0)
    w7 = randn(c, 32, 16, 7, scale=1 / math.sqrt(16 * 7))
    wt = randn(c, 16, 8, 4, scale=1 / 8.0)
    ops = (
        ("conv1d k=1", lambda x, w: F.conv1d(x, w), w1),
        ("conv1d k=7 dilation 3", lambda x, w: F.conv1d(x, w, padding=9, dilation=3), w7),
        ("conv_transpose1d k=4 stride 2", lambda x, w: F.conv_transpose1d(x, w, stride=2), wt),
    )
    half = torch.float16
    xd = x.to(c.device, half)
    dev_w = [w.to(c.device, half) for _, _, w in ops]
    results = c.timed(lambda: [op(xd, wd) for (_, op, _), wd in zip(ops, dev_w)])
    for i, (what, op, w) in enumerate(ops):
        c.check(what + " fp16", [r[i] for r in results], op(x.double(), w.double()),
                TOLERANCE["fp16"])


def case_batchnorm_backward(c):
    torch = seeded(c).torch
    F = torch.nn.functional
    x = randn(c, 2, 8, 16, 16) * 2 + 0.5
    w = randn(c, 8) * 0.5 + 1
    b = randn(c, 8) * 0.1
    g = randn(c, 2, 8, 16, 16)

    def step(x, w, b, g):
        with torch.enable_grad():
            x = x.clone().requires_grad_(True)
            w = w.clone().requires_grad_(True)
            b = b.clone().requires_grad_(True)
            mean = torch.zeros(8, dtype=x.dtype, device=x.device)
            var = torch.ones(8, dtype=x.dtype, device=x.device)
            y = F.batch_norm(x, mean, var, w, b, training=True, momentum=0.1, eps=1e-5)
            gx, gw, gb = torch.autograd.grad((y * g).sum(), [x, w, b])
        return [y.detach(), gx, gw, gb, mean]

    ref = step(x.double(), w.double(), b.double(), g.double())
    dev = [t.to(c.device) for t in (x, w, b, g)]
    results = c.timed(lambda: step(*dev))
    names = ("output", "grad input", "grad weight", "grad bias", "running mean")
    for i, what in enumerate(names):
        c.check("BatchNorm2d " + what, [r[i] for r in results], ref[i], TOLERANCE["fp32"])


def case_index_ops(c):
    torch = seeded(c).torch
    x = randn(c, 64)
    ints = torch.randint(0, 10, (100,), generator=c.gen_state)
    mask = x > 0.3

    def ops(x, ints, mask):
        return (
            torch.nonzero(x > 0.3),
            torch.masked_select(x, mask),
            x[mask],
            torch.unique(ints),
            x[:4],
        )

    ref = ops(x, ints, mask)
    xd, intsd, maskd = x.to(c.device), ints.to(c.device), mask.to(c.device)
    results = c.timed(lambda: ops(xd, intsd, maskd))
    for got in results:
        for what, g, r in zip(("nonzero", "masked_select", "boolean indexing", "unique"),
                              got, ref):
            c.check_equal(what, g.cpu().tolist(), r.tolist())
        set_phase("print a %s tensor" % c.device)
        text = re.sub(r",\s*device='[^']*'", "", repr(got[4]))
        sys.stderr.write("%s\n" % text)
        c.check_equal("printing", text, repr(ref[4]))


def case_rnn(c):
    torch = seeded(c).torch
    torch.manual_seed(SEED)
    x = randn(c, 5, 2, 8)
    for cls in (torch.nn.LSTM, torch.nn.GRU):
        cpu = cls(8, 16, 1)
        ref_out, ref_h = cpu.double()(x.double())
        dev = copy.deepcopy(cpu).float().to(c.device)
        xd = x.to(c.device)
        name = cls.__name__
        set_phase("%s on %s" % (name, c.device))
        results = c.timed(lambda: dev(xd))
        c.check(name + " output", [r[0] for r in results], ref_out, TOLERANCE["fp32"])
        ref_h = ref_h[0] if isinstance(ref_h, tuple) else ref_h
        c.check(name + " hidden", [r[1][0] if isinstance(r[1], tuple) else r[1]
                                   for r in results], ref_h, TOLERANCE["fp32"])


def matmul(c, dtype_name, tolerance):
    torch = seeded(c).torch
    a = randn(c, 128, 256, scale=1 / 16.0)
    b = randn(c, 256, 64)
    dtype = getattr(torch, dtype_name)
    ad, bd = a.to(c.device, dtype), b.to(c.device, dtype)
    # The reference starts from the inputs as the device holds them (rounded to the dtype):
    # what is checked is the kernel, not the dtype's rounding of the inputs.
    ref = torch.matmul(a.to(dtype).double(), b.to(dtype).double())
    c.check("matmul " + dtype_name, c.timed(lambda: torch.matmul(ad, bd)), ref, tolerance)


def case_matmul_fp32(c):
    matmul(c, "float32", TOLERANCE["fp32"])


def case_matmul_fp16(c):
    matmul(c, "float16", TOLERANCE["fp16"])


def case_matmul_bf16(c):
    # Debian's CPU torch 1.13 accumulates bf16 GEMMs in bf16 (4.9e-2 measured on this shape);
    # the CPU is not what this level tests, so it gets room for that.
    matmul(c, "bfloat16", TOLERANCE["bf16"] if c.gpu else 0.1)


def case_sdpa(c):
    torch = seeded(c).torch
    F = torch.nn.functional
    sdpa = c.need(F, "scaled_dot_product_attention", "scaled_dot_product_attention (2.0+)")
    q, k, v = (randn(c, 1, 2, 16, 32) for _ in range(3))
    att = torch.softmax(torch.matmul(q.double(), k.double().transpose(-2, -1)) / math.sqrt(32), -1)
    ref = torch.matmul(att, v.double())
    dtype, tol = (torch.float16, TOLERANCE["fp16"]) if c.gpu else (torch.float32, TOLERANCE["fp32"])
    qd, kd, vd = (t.to(c.device, dtype) for t in (q, k, v))
    c.check("scaled_dot_product_attention", c.timed(lambda: F.scaled_dot_product_attention(
        qd, kd, vd)), ref, tol)


def case_compile(c):
    torch = seeded(c).torch
    compile_fn = c.need(torch, "compile", "torch.compile (2.0+)")

    def f(x):
        return torch.sin(x) * 2 + x.sum(dim=-1, keepdim=True) / 32

    x = randn(c, 64, 32)
    ref = f(x.double())
    backend = "inductor" if c.gpu else "aot_eager"
    c.detail["backend"] = backend
    compiled = compile_fn(f, backend=backend)
    xd = x.to(c.device)
    results = c.timed(lambda: compiled(xd))
    if any(float(r.abs().max()) == 0.0 for r in results):
        c.failures.append(
            "the compiled kernel wrote zeros (Triton's AMD buffer ops, unsloth #11614: try "
            "AMDGCN_USE_BUFFER_OPS=0)"
        )
    c.check("torch.compile (%s)" % backend, results, ref, TOLERANCE["fp32"])


def case_int_mm(c):
    torch = seeded(c).torch
    int_mm = c.need(torch, "_int_mm", "torch._int_mm (2.1+)")
    a = torch.randint(-8, 8, (32, 64), generator=c.gen_state, dtype=torch.int8)
    b = torch.randint(-8, 8, (64, 32), generator=c.gen_state, dtype=torch.int8)
    ref = torch.matmul(a.long(), b.long())
    ad, bd = a.to(c.device), b.to(c.device)
    results = c.timed(lambda: int_mm(ad, bd))
    for r in results:
        c.check_equal("_int_mm (int8 -> int32)", r.cpu().long().tolist(), ref.tolist())


def case_randn_to_print(c):
    torch = seeded(c).torch
    x = torch.randn(2, 2, generator=c.gen_state)
    target = 0 if c.gpu else "cpu"

    def move_and_print():
        y = x.to(target)
        text = repr(y)
        sys.stderr.write("%s\n" % text)
        return y, text

    for y, text in c.timed(move_and_print):
        c.check_equal("torch.randn(2, 2).to(%r)" % target, y.cpu().tolist(), x.tolist())
        c.check_equal("printing it", re.sub(r",\s*device='[^']*'", "", text), repr(x))


def case_sustained(c):
    torch = seeded(c).torch
    F = torch.nn.functional
    x = randn(c, 4, 16, 32, 32)
    w = randn(c, 16, 16, 3, 3, scale=1 / 12.0)
    a = randn(c, 256, 256, scale=1 / 16.0)
    ref_conv = F.conv2d(x.double(), w.double(), padding=1)
    ref_mm = torch.mm(a.double(), a.double())
    xd, wd, ad = x.to(c.device), w.to(c.device), a.to(c.device)
    seconds = SUSTAINED_S[c.level]
    c.detail["seconds"] = seconds

    def burst():
        return F.conv2d(xd, wd, padding=1), torch.mm(ad, ad)

    results = c.timed(burst)
    set_phase("sustained load on %s for %s s" % (c.device, seconds))
    start = time.perf_counter()
    end = start + seconds
    iterations = 0
    # One result kept (and the queue drained) every half second: at most a dozen checks,
    # and at most half a second of kernels in flight.
    next_sample = start
    while True:
        out = burst()
        iterations += 1
        now = time.perf_counter()
        if now >= next_sample or now >= end:
            c.sync()
            results.append(out)
            next_sample = now + 0.5
            if now >= end:
                break
    c.detail["iterations"] = iterations
    set_phase("check %d results of the sustained load" % len(results))
    c.check("conv2d under load", [r[0] for r in results], ref_conv, TOLERANCE["fp32"])
    c.check("matmul under load", [r[1] for r in results], ref_mm, TOLERANCE["fp32"])


def small_net(torch):
    nn = torch.nn
    torch.manual_seed(SEED)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )


TRAIN_STEPS = 4


def train_losses(torch, net, x, y, autocast_device=None):
    """TRAIN_STEPS of SGD with momentum from the same weights; the losses."""
    net = copy.deepcopy(net)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    losses = []
    with torch.enable_grad():
        for _ in range(TRAIN_STEPS):
            opt.zero_grad()
            if autocast_device is None:
                out = net(x)
            else:
                autocast = torch.autocast(autocast_device, dtype=torch.float16)
                try:
                    autocast.__enter__()
                except RuntimeError as e:
                    # 1.13: "AutocastCPU only support Bfloat16 as the autocast_cpu_dtype".
                    if autocast_device != "cpu":
                        raise
                    raise NotApplicable("torch %s has no fp16 autocast on the CPU: %s"
                                        % (torch.__version__, describe(e)))
                try:
                    out = net(x)
                finally:
                    autocast.__exit__(None, None, None)
                if out.dtype != torch.float16:
                    raise NotApplicable(
                        "torch %s has no fp16 autocast on %s" % (torch.__version__,
                                                                 autocast_device))
            loss = torch.nn.functional.cross_entropy(out.float(), y)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
    return torch.stack(losses)


def train(c, fp16):
    torch = seeded(c).torch
    x = randn(c, 8, 3, 16, 16)
    y = torch.randint(0, 4, (8,), generator=c.gen_state)
    net = small_net(torch)
    ref = train_losses(torch, copy.deepcopy(net).double(), x.double(), y)
    dev_net = copy.deepcopy(net).to(c.device)
    xd, yd = x.to(c.device), y.to(c.device)
    autocast = c.device.type if fp16 else None
    results = c.timed(lambda: train_losses(torch, dev_net, xd, yd, autocast))
    c.detail["losses"] = [round(float(v), 6) for v in results[0]]
    c.detail["cpu_losses"] = [round(float(v), 6) for v in ref]
    tol = TOLERANCE["train-fp16" if fp16 else "train-fp32"]
    c.check("training losses (%d steps)" % TRAIN_STEPS, results, ref, tol)


def case_train_fp32(c):
    train(c, False)


def case_train_fp16_autocast(c):
    train(c, True)


def case_memory(c):
    torch = seeded(c).torch
    env = dict((k, v) for k, v in os.environ.items() if k.endswith("_ALLOC_CONF"))
    c.detail["allocator"] = env or "default"
    if c.gpu:
        free, total = c.need(torch.cuda, "mem_get_info", "torch.cuda.mem_get_info")()
        target = int(free * MEMORY_SHARE)
        c.detail["device_free_gib"] = round(free / 2.0 ** 30, 2)
        c.detail["device_total_gib"] = round(total / 2.0 ** 30, 2)
    else:
        target = CPU_MEMORY_BYTES
    c.detail["bytes_per_round"] = target

    def round_trip():
        chunks = []
        left = target
        while left > 0:
            n = min(MEMORY_CHUNK, left)
            t = torch.empty(n, dtype=torch.uint8, device=c.device)
            t.fill_(len(chunks) % 251)
            chunks.append(t)
            left -= n
        c.sync()
        seen = [int(t[-1]) for t in chunks]
        count = len(chunks)
        del chunks, t
        if c.gpu:
            torch.cuda.empty_cache()
        return seen, count

    set_phase("allocate %.2f GiB on %s, twice" % (target / 2.0 ** 30, c.device))
    saved_warmup, saved_repeat = c.warmup, c.repeat
    c.warmup, c.repeat = 0, 1
    try:
        results = c.timed(round_trip)
    finally:
        c.warmup, c.repeat = saved_warmup, saved_repeat
    for seen, count in results:
        c.check_equal("values read back", seen, [i % 251 for i in range(count)])


SUITE_FUNCTIONS = {
    "layernorm_fp16": case_layernorm_fp16,
    "conv2d_fp16": case_conv2d_fp16,
    "conv1d_fp16": case_conv1d_fp16,
    "batchnorm_backward": case_batchnorm_backward,
    "index_ops": case_index_ops,
    "rnn": case_rnn,
    "matmul_fp32": case_matmul_fp32,
    "matmul_fp16": case_matmul_fp16,
    "matmul_bf16": case_matmul_bf16,
    "sdpa": case_sdpa,
    "compile": case_compile,
    "int_mm": case_int_mm,
    "randn_to_print": case_randn_to_print,
    "sustained": case_sustained,
    "train_fp32": case_train_fp32,
    "train_fp16_autocast": case_train_fp16_autocast,
    "memory": case_memory,
}


def list_main():
    """`--list`: the suite's cases as JSON (name, what, source), for people and tools."""
    rows = [{"name": n, "what": w, "source": s} for n, (w, s) in SUITE.items()]
    sys.stdout.write(json.dumps(rows, indent=1) + "\n")


def main(argv):
    if argv[:1] == ["--run-case"] and len(argv) == 2:
        case_main(argv[1])
        return 0
    try:
        opts = parse_args(argv)
    except UsageError:
        opts = {}
    if opts.get("help"):
        sys.stderr.write(__doc__)
        return 0
    if opts.get("list"):
        list_main()
        return 0
    if opts.get("probe"):
        probe_main()
        return 0
    return parent_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
