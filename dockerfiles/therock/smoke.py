#!/usr/bin/env python3
"""rdna1-images smoke test: Conv2d on the GPU (or the CPU), checked against a CPU reference.

Copied into every image at /opt/rdna1-images/smoke.py and run as

    python3 smoke.py --level gpu|cpu|skip --spec '<json of the recipe's SmokeSpec>'

Progress goes to stderr; stdout gets exactly one line:

    RDNA1_SMOKE_REPORT <compact json>

src/smoke/mod.rs parses and judges that line: keep the two in step and bump SCHEMA on any
incompatible change. Exit code: 0 when every case is `ok`, 1 when something failed, 2 for
bad arguments; the report is printed in every case, so read it whatever the exit code.

Why it is shaped like this: on RDNA1 (gfx1010) the usual failure is a hang inside MIOpen's
kernel search, a crash in a kernel, or a GPU that reports itself available while its kernels
fail. So this parent process never imports torch: a probe and every case run in child
processes (re-invocations of this file) under a watchdog that kills the child's whole process
group, and the parent catches everything so that it always prints its report. The parent also
keeps inside the container's hard limit (`container_timeout_s`) so that the report gets out
before the container is killed.

Runs on Python 3.8 to 3.11 with only torch installed (numpy is not needed).
"""

import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

SCHEMA = 1
REPORT_MARKER = "RDNA1_SMOKE_REPORT"
CASE_MARKER = "RDNA1_SMOKE_CASE"
PROBE_MARKER = "RDNA1_SMOKE_PROBE"
LEVELS = ("gpu", "cpu", "skip")

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
ENV_NAMES = ("CUDA_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL")
MIOPEN_LOG_ENV = {"MIOPEN_ENABLE_LOGGING_CMD": "1", "MIOPEN_LOG_LEVEL": "5"}

SPEC_DEFAULTS = {"warmup": 1, "repeat": 5, "tolerance": 1e-3}
CASE_DEFAULTS = {"batch": 1, "kernel": 3}


class UsageError(Exception):
    """Bad command line or spec: exit code 2."""


class Terminated(BaseException):
    """SIGTERM or SIGINT arrived; raised in the main thread so that the report still goes out."""


class CaseFailure(Exception):
    """A case failed in a way that needs no traceback (the message says it all)."""


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


# ---------------------------------------------------------------------------------------------
# Arguments and spec


def parse_args(argv):
    """Hand-rolled because argparse exits on errors, and the parent must print its report."""
    opts = {"level": None, "spec": None, "run_case": None, "probe": False}
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
        key, value = arg, None
        if "=" in arg and arg.startswith("--"):
            key, value = arg.split("=", 1)
        if key not in ("--level", "--spec", "--run-case"):
            raise UsageError("unknown argument %r (use --level gpu|cpu|skip --spec JSON)" % arg)
        if value is None:
            if i + 1 >= len(argv):
                raise UsageError("%s needs a value" % key)
            value = argv[i + 1]
            i += 1
        opts[key[2:].replace("-", "_")] = value
        i += 1
    if opts["run_case"] is not None or opts["probe"] or opts.get("help"):
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
    if not isinstance(spec.get("cases"), list) or not spec["cases"]:
        raise UsageError("--spec: `cases` must be a non-empty list")
    positive_number(spec.get("case_timeout_s"), "case_timeout_s")
    if spec.get("container_timeout_s") is not None:
        positive_number(spec["container_timeout_s"], "container_timeout_s")
    positive_number(spec["tolerance"], "tolerance")
    positive_number(spec["repeat"], "repeat", integer=True)
    if spec["warmup"] != 0:
        positive_number(spec["warmup"], "warmup", integer=True)
    cases = []
    for i, case in enumerate(spec["cases"]):
        if not isinstance(case, dict) or not isinstance(case.get("name"), str):
            raise UsageError("--spec: cases[%d] needs a string `name`" % i)
        case = dict(CASE_DEFAULTS, **case)
        for field in ("in_channels", "out_channels", "size", "batch", "kernel"):
            positive_number(case.get(field), "cases[%d].%s" % (i, field), integer=True)
        cases.append(case)
    spec["cases"] = cases
    return spec


# ---------------------------------------------------------------------------------------------
# Child processes under a watchdog


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


class ChildRun(object):
    def __init__(self):
        self.timed_out = False
        self.returncode = None
        self.unkillable = False
        self.stdout = ""
        self.stderr_path = None
        self.phase = None
        self.elapsed_s = 0.0


def run_child(args, workdir, tag, timeout_s, extra_env=None):
    """Run this program again with `args`, under a watchdog of `timeout_s` seconds.

    Output goes to files, not pipes: a killed child's grandchildren can keep a pipe open and
    block the reader, and a MIOpen log at level 5 can be large.
    """
    run = ChildRun()
    out_path = os.path.join(workdir, tag + ".out")
    err_path = os.path.join(workdir, tag + ".err")
    phase_path = os.path.join(workdir, tag + ".phase")
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
    run.elapsed_s = time.monotonic() - started
    run.stdout = read_text(out_path)
    run.phase = read_text(phase_path).strip() or None
    return run


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
    return {
        "name": case["name"],
        "in_channels": case["in_channels"],
        "out_channels": case["out_channels"],
        "size": case["size"],
        "batch": case["batch"],
        "kernel": case["kernel"],
        "status": status,
        "first_s": None,
        "steady_s": None,
        "runs": [],
        "rel_error": None,
        "tolerance": spec["tolerance"],
        "error": error,
        "timeout_s": spec["case_timeout_s"] if timeout_s is None else timeout_s,
        "phase": None,
        "miopen_log": None,
        "rerun": None,
    }


def shape_text(case):
    return "%d->%d ch, input %dx%dx%dx%d, kernel %d" % (
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
    for key in ("torch", "hip", "cuda_available", "device_name", "gfx_target"):
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


def run_case(workdir, tag, case, spec, level, timeout_s, why, extra_env=None):
    """One run of one case in a child; returns the fields of its case entry."""
    payload = {
        "level": level,
        "case": case,
        "warmup": spec["warmup"],
        "repeat": spec["repeat"],
        "tolerance": spec["tolerance"],
        "seed": SEED,
    }
    run = run_child(
        ["--run-case", json.dumps(payload)], workdir, tag, timeout_s, extra_env=extra_env
    )
    out = {
        "timeout_s": timeout_s,
        "stderr_path": run.stderr_path,
        "phase": run.phase,
        "unkillable": run.unkillable,
    }
    if run.timed_out:
        out["status"] = "timeout"
        out["error"] = "case " + timeout_message(run, timeout_s, why)
        return out
    result = marked_json(run.stdout, CASE_MARKER)
    if result is None:
        out["status"] = "error"
        out["error"] = no_result_message(run, "the case process")
        return out
    out.update(result)
    return out


def run_one(workdir, index, case, spec, level, budget, gpu_missing):
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
        % (case["name"], shape_text(case), fmt_s(timeout_s))
    )
    try:
        first = run_case(workdir, "case%d" % index, case, spec, level, timeout_s, why)
    except OSError as e:
        entry["error"] = "could not start the case process: %s" % describe(e)
        return entry
    for key in ("status", "first_s", "steady_s", "runs", "rel_error", "error", "timeout_s"):
        if key in first:
            entry[key] = first[key]
    entry["phase"] = first.get("phase")
    if entry["status"] not in ("ok", "mismatch", "error", "timeout"):
        entry["error"] = "unknown status %r from the case process" % entry["status"]
        entry["status"] = "error"
    progress("case `%s`: %s" % (case["name"], summary(entry)))
    if entry["status"] == "ok":
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
            workdir, "case%d-rerun" % index, case, spec, level, timeout_s, why, MIOPEN_LOG_ENV
        )
    except OSError as e:
        entry["rerun"] = "error: could not start the rerun: %s" % describe(e)
        return entry
    entry["rerun"] = again.get("status", "error")
    entry["miopen_log"] = read_tail(again["stderr_path"], LOG_TAIL_BYTES)
    progress("case `%s`: rerun: %s" % (case["name"], entry["rerun"]))
    return entry


def summary(entry):
    if entry["status"] == "ok":
        return "ok, first call %s, steady %s, rel error %.1e" % (
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
            "torch %s, HIP %s, cuda available %s, device %s, gfx target %s, override %s"
            % (
                report["torch"],
                report["hip"],
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
            progress("level skip: no Conv2d case is run")
            return
        gpu_missing = None
        if level == "gpu" and not report["cuda_available"]:
            gpu_missing = no_gpu_message(report["torch"], report["hip"])
            progress(gpu_missing)
        for index, case in enumerate(spec["cases"]):
            report["cases"].append(run_one(workdir, index, case, spec, level, budget, gpu_missing))
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
        ok = not report["error"] and all(c["status"] == "ok" for c in report["cases"])
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
    info = {"torch": None, "hip": None, "cuda_available": None, "device_name": None,
            "gfx_target": None, "error": None}
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


def case_main(payload_text):
    result = {"status": "error", "first_s": None, "steady_s": None, "runs": [],
              "rel_error": None, "error": None}
    try:
        payload = json.loads(payload_text)
        run_conv_case(payload, result)
    except CaseFailure as e:
        result["status"] = "error"
        result["error"] = str(e)
    except BaseException as e:
        result["status"] = "error"
        result["error"] = describe(e)
        traceback.print_exc()
    finally:
        sys.stdout.write("%s %s\n" % (CASE_MARKER, json.dumps(json_clean(result))))
        sys.stdout.flush()


def run_conv_case(payload, result):
    case = payload["case"]
    level = payload["level"]
    set_phase("import torch")
    import torch
    import torch.nn.functional as F

    torch.set_grad_enabled(False)
    if level == "gpu":
        if not torch.cuda.is_available():
            hip = getattr(torch.version, "hip", None)
            raise CaseFailure(no_gpu_message(str(torch.__version__), hip))
        device = torch.device("cuda")
        sync = torch.cuda.synchronize
    else:
        device = torch.device("cpu")

        def sync():
            pass

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
        result["status"] = "mismatch"
        result["error"] = "the %s result contains NaN or Inf" % device
        return
    worst = max(errors)
    result["rel_error"] = worst
    if worst <= tolerance:
        result["status"] = "ok"
    else:
        result["status"] = "mismatch"
        result["error"] = (
            "the %s result differs from the CPU float64 reference: max abs error / max |ref| = "
            "%.3e, tolerance %g (worst of the first call and %d timed runs)"
            % (device, worst, tolerance, len(runs))
        )
    set_phase("done")


def main(argv):
    try:
        opts = parse_args(argv)
    except UsageError:
        opts = {}
    if opts.get("help"):
        sys.stderr.write(__doc__)
        return 0
    if opts.get("probe"):
        probe_main()
        return 0
    if opts.get("run_case") is not None:
        case_main(opts["run_case"])
        return 0
    return parent_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
