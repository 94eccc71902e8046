"""The app's own smoke checks (rdna1-images), run inside the app image with networking off:

  1. start: the app's command starts and answers its health endpoint within a limit
     (at the gpu level the health answer's devices must list a GPU);
  2. job: one real job through the app's own API; a new file must appear in its output;
  3. stop: SIGTERM, and the app exits within a limit.

usage: app_checks.py SPEC_JSON. Prints one line `RDNA1-APP-REPORT {json}` at the end, and
the app's own output on stderr. Standard library only."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

MARK = "RDNA1-APP-REPORT "


def get(url, timeout):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def post(url, body, timeout):
    req = urllib.request.Request(url, data=body.encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def files_under(folder):
    out = {}
    for root, _, names in os.walk(folder):
        for n in names:
            p = os.path.join(root, n)
            try:
                out[p] = os.path.getsize(p)
            except OSError:
                pass
    return out


def main():
    spec = json.loads(sys.argv[1])
    base = f"http://127.0.0.1:{spec['port']}"
    checks = []
    report = {"level": spec["level"], "checks": checks, "devices": None}

    def check(name, ok, seconds, detail):
        checks.append({"name": name, "verdict": "pass" if ok else "fail",
                       "seconds": round(seconds, 3), "detail": detail})
        print(f"app check {name}: {'pass' if ok else 'FAIL'} ({seconds:.1f} s) {detail}",
              file=sys.stderr, flush=True)
        return ok

    for v in spec["volumes"]:
        os.makedirs(os.path.join(spec["data"], v), exist_ok=True)
    started = time.monotonic()
    app = subprocess.Popen(spec["command"], cwd=spec["workdir"], stdout=sys.stderr,
                           stderr=sys.stderr, start_new_session=True)
    try:
        run_checks(spec, base, app, started, check, report)
    finally:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGKILL)
            app.wait()
    print(MARK + json.dumps(report), flush=True)


def run_checks(spec, base, app, started, check, report):
    # 1. start and health
    answer, last = None, "no answer yet"
    while time.monotonic() - started < spec["start_timeout_s"]:
        if app.poll() is not None:
            last = f"the app exited with code {app.returncode} before it answered"
            break
        try:
            status, body = get(base + spec["health"], 5)
            if status == 200:
                answer = json.loads(body)
                break
            last = f"HTTP {status}"
        except (OSError, ValueError, urllib.error.URLError) as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.5)
    took = time.monotonic() - started
    if answer is None:
        check("start", False, took, f"{spec['health']} did not answer within "
              f"{spec['start_timeout_s']} s: {last}")
        return
    devices = answer.get(spec["devices_field"]) if spec.get("devices_field") else None
    report["devices"] = devices
    if spec["level"] == "gpu" and spec.get("devices_field"):
        gpus = [d for d in devices or [] if isinstance(d, dict) and d.get("type") not in (None, "cpu")]
        if not gpus:
            check("start", False, took, f"{spec['health']} answered, but `{spec['devices_field']}` "
                  f"lists no GPU: {json.dumps(devices)[:300]}")
            return
        detail = "devices: " + ", ".join(str(d.get("name", d.get("type"))) for d in gpus)
    else:
        detail = f"answered {spec['health']}"
        if devices is not None:
            detail += " (devices: " + ", ".join(
                str(d.get("name", d.get("type"))) if isinstance(d, dict) else str(d)
                for d in devices) + ")"
    check("start", True, took, detail)

    # 2. one real job
    out_dir = os.path.join(spec["data"], spec["output"])
    seen = files_under(out_dir)
    t = time.monotonic()
    try:
        status, body = post(base + spec["job_path"], spec["job"], 30)
    except urllib.error.HTTPError as e:
        check("job", False, time.monotonic() - t, f"POST {spec['job_path']}: HTTP {e.code} "
              f"{e.read()[:300]!r}")
        return
    except (OSError, urllib.error.URLError) as e:
        check("job", False, time.monotonic() - t, f"POST {spec['job_path']}: {e}")
        return
    new = {}
    while time.monotonic() - t < spec["job_timeout_s"]:
        new = {p: s for p, s in files_under(out_dir).items() if p not in seen and s > 0}
        if new:
            # Written fully: the size holds still for a moment.
            time.sleep(0.3)
            now = files_under(out_dir)
            if all(now.get(p) == s for p, s in new.items()):
                break
        if app.poll() is not None:
            break
        time.sleep(0.3)
    took = time.monotonic() - t
    if not new:
        check("job", False, took, f"POST {spec['job_path']} answered HTTP {status}, but no new "
              f"file appeared in {out_dir} within {spec['job_timeout_s']} s")
        return
    check("job", True, took, "wrote " + ", ".join(
        f"{os.path.relpath(p, spec['data'])} ({s} bytes)" for p, s in sorted(new.items())))

    # 3. clean stop
    t = time.monotonic()
    os.killpg(app.pid, signal.SIGTERM)
    try:
        code = app.wait(timeout=spec["stop_timeout_s"])
    except subprocess.TimeoutExpired:
        check("stop", False, time.monotonic() - t, f"still running {spec['stop_timeout_s']} s "
              "after SIGTERM")
        return
    clean = code in (0, -signal.SIGTERM, 128 + signal.SIGTERM)
    check("stop", clean, time.monotonic() - t, f"exited with code {code} after SIGTERM")


if __name__ == "__main__":
    main()
