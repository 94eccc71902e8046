"""Build-time guard of an app image (rdna1-images): the app's packages never replace the
stack's torch, torchvision or torchaudio.

  app_build.py before DIR      record the stack's versions, write DIR/constraints.txt
                               (pip -c) and the dependency problems the stack already has
  app_build.py after DIR PIP.. compare the versions, and fail naming each package whose
                               requirements the stack's torch does not meet
  app_build.py fetch URL SHA256 DEST
                               download an archive, check its sha256, unpack it into DEST
                               with its top folder stripped

Standard library only: it runs in the stack image before anything else is installed."""

import hashlib
import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
import tarfile
import urllib.request
import zipfile

GUARDED = ("torch", "torchvision", "torchaudio")


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def versions():
    out = {}
    for name in GUARDED:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


def problems(pip):
    """`pip check`'s lines (pip exits 1 when it finds any)."""
    r = subprocess.run(pip + ["check"], capture_output=True, text=True)
    return [l for l in r.stdout.splitlines() if l.strip() and "No broken requirements" not in l]


def before(folder, pip):
    v = versions()
    with open(os.path.join(folder, "constraints.txt"), "w") as f:
        f.write("# the stack's tested packages: an app's install must not change them\n")
        for name, ver in sorted(v.items()):
            f.write(f"{name}=={ver}\n")
    with open(os.path.join(folder, "before.json"), "w") as f:
        json.dump({"versions": v, "problems": problems(pip)}, f)
    print("stack packages kept: " + ", ".join(f"{k} {x}" for k, x in sorted(v.items())))


def after(folder, pip):
    with open(os.path.join(folder, "before.json")) as f:
        was = json.load(f)
    now = versions()
    failed = False
    for name, ver in sorted(was["versions"].items()):
        if now.get(name) != ver:
            failed = True
            print(f"ERROR: the app's packages replaced the stack's {name} {ver} with "
                  f"{now.get(name, 'nothing')}", file=sys.stderr)
    known = set(was["problems"])
    for line in problems(pip):
        if line in known:
            continue
        words = line.split()
        culprit = words[0] if words else "?"
        named = [g for g in GUARDED if re.search(rf"\b{g}\b", line, re.I)]
        failed = True
        if named:
            print(f"ERROR: package {culprit} requires a {named[0]} other than the stack's "
                  f"({now.get(named[0], 'none')}), and the stack's torch, torchvision and "
                  f"torchaudio are never replaced: pin a version of {culprit} that works "
                  f"with them, or build the app on another stack ({line})", file=sys.stderr)
        else:
            print(f"ERROR: the app's packages are incomplete or in conflict: {line}",
                  file=sys.stderr)
    if failed:
        sys.exit(1)
    print("stack packages unchanged: " + ", ".join(f"{k} {x}" for k, x in sorted(now.items())))


def fetch(url, sha256, dest):
    path = dest + ".download"
    h = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=300) as r, open(path, "wb") as f:
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            f.write(chunk)
    if h.hexdigest() != sha256:
        sys.exit(f"ERROR: {url} has sha256 {h.hexdigest()}, the recipe says {sha256}")
    os.makedirs(dest, exist_ok=True)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            members = [(m, m.filename) for m in z.infolist()]
            strip(members, dest, lambda m, to: open(to, "wb").write(z.read(m)),
                  lambda m: m.is_dir())
    else:
        with tarfile.open(path) as t:
            members = [(m, m.name) for m in t.getmembers() if m.isfile() or m.isdir()]
            strip(members, dest, lambda m, to: open(to, "wb").write(t.extractfile(m).read()),
                  lambda m: m.isdir())
    os.remove(path)


def strip(members, dest, write, is_dir):
    for m, name in members:
        parts = [p for p in name.split("/") if p not in ("", ".")][1:]
        if not parts or ".." in parts:
            continue
        to = os.path.join(dest, *parts)
        if is_dir(m):
            os.makedirs(to, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(to), exist_ok=True)
            write(m, to)


def main():
    cmd = sys.argv[1]
    if cmd == "before":
        before(sys.argv[2], sys.argv[3:])
    elif cmd == "after":
        after(sys.argv[2], sys.argv[3:])
    elif cmd == "fetch":
        fetch(*sys.argv[2:5])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
