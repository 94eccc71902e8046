#!/usr/bin/env bash
# Static gates (step 4 of ci/test.sh). Each fails this script when it finds anything:
#
#   schema      the workflows validate against the GitHub workflow schema
#               (check-jsonschema --builtin-schema vendor.github-workflows; the schema ships
#               inside check-jsonschema, so nothing is fetched)
#   zizmor      no finding at medium severity or higher in .github/workflows (offline audits)
#   scripts     ShellCheck on ci/*.sh; the gate is named shellcheck (the images copy in no
#               shell scripts: hadolint runs ShellCheck on the rendered RUN steps)
#   hadolint    dockerfiles/*.Dockerfile, with the rules in .hadolint.yaml, the one place a
#               rule may be ignored
#
# Then a self-test: each gate runs on a copy of the repository with one deliberate mistake in
# its area and must fail there, so a gate that silently stopped looking fails the run too.
# Each mistake sits exactly at the gate's threshold (a style-level hadolint finding, a
# medium-severity zizmor finding), so a threshold raised past it fails the self-test.
#
# The tools come from PyPI, pinned in ci/gates-requirements.txt, installed with pip's
# configured index into a virtual environment under $RDNA1_GATES_VENV (default
# ~/.cache/rdna1-images/gates-venv), made again only when that file or the Python changes.
#
# Usage: ci/static-gates.sh [--root DIR] [--only GATE] [--no-self-test]
#   --root DIR      check DIR instead of this repository (the self-test uses it)
#   --only GATE     run one gate: schema, zizmor, shellcheck or hadolint
#   --no-self-test  skip the self-test (RDNA1_GATES_SELF_TEST=0 does the same)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=$here
only=
self_test=${RDNA1_GATES_SELF_TEST:-1}
while (($#)); do
    case $1 in
    --root) root=$(cd "$2" && pwd); shift 2 ;;
    --only) only=$2; shift 2 ;;
    --no-self-test) self_test=0; shift ;;
    *) echo "usage: $0 [--root DIR] [--only schema|zizmor|shellcheck|hadolint] [--no-self-test]" >&2; exit 2 ;;
    esac
done
case $only in '' | schema | zizmor | shellcheck | hadolint) ;; *) echo "static-gates: unknown gate '$only'" >&2; exit 2 ;; esac

log() { printf 'static-gates: %s\n' "$*" >&2; }
die() { printf 'static-gates: error: %s\n' "$*" >&2; exit 1; }

requirements=$here/ci/gates-requirements.txt
venv=${RDNA1_GATES_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/rdna1-images/gates-venv}
python=${RDNA1_GATES_PYTHON:-python3}

# (Re)creates the venv when the pinned requirements or the interpreter changed. A lock, because
# several checkouts of this repository on one machine share the cache folder.
ensure_venv() {
    local want have=
    command -v "$python" >/dev/null || die "$python not found (the gates' tools install with pip into a venv)"
    want="$(sha256sum "$requirements" | cut -d' ' -f1) $("$python" -c 'import sys; print(sys.version.split()[0])')"
    mkdir -p "$(dirname "$venv")"
    exec 9>"$venv.lock"
    flock 9
    [[ -f $venv/.rdna1-stamp ]] && have=$(<"$venv/.rdna1-stamp")
    if [[ $have != "$want" || ! -x $venv/bin/python ]]; then
        local start=$SECONDS
        log "installing the gates' tools into $venv (ci/gates-requirements.txt)"
        rm -rf "$venv"
        # Debian's python3 needs python3-venv for ensurepip; install it where it is missing.
        if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
            rm -rf "$venv"
            if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
                log "python3 -m venv failed: installing python3-venv"
                apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
            fi
            "$python" -m venv "$venv" || die "cannot make a virtual environment with $python"
        fi
        "$venv/bin/python" -m pip install -q --disable-pip-version-check --require-virtualenv \
            --no-deps -r "$requirements" || die "pip install -r ci/gates-requirements.txt failed"
        "$venv/bin/python" -m pip check >/dev/null || die "the pinned gate tools do not fit together (pip check); fix ci/gates-requirements.txt"
        printf '%s\n' "$want" >"$venv/.rdna1-stamp"
        log "tools installed in $((SECONDS - start)) s"
    fi
    flock -u 9
}
ensure_venv
bin=$venv/bin

failed=()
gate() {
    local name=$1; shift
    [[ -z $only || $only == "$name" ]] || return 0
    local start=$SECONDS rc=0
    printf -- '--- %s\n' "$name"
    "$@" || rc=$?
    if ((rc)); then
        printf -- '--- %s: FAILED (exit %d, %d s)\n' "$name" "$rc" "$((SECONDS - start))"
        failed+=("$name")
    else
        printf -- '--- %s: ok (%d s)\n' "$name" "$((SECONDS - start))"
    fi
}

files() { # find arguments -> the matches under $root, sorted, one per line
    (cd "$root" && find "$@" 2>/dev/null | LC_ALL=C sort)
}

gate_schema() {
    local -a wf
    mapfile -t wf < <(files .github/workflows -type f \( -name '*.yml' -o -name '*.yaml' \))
    ((${#wf[@]})) || { echo "no workflows in $root/.github/workflows"; return 1; }
    (cd "$root" && "$bin/check-jsonschema" --builtin-schema vendor.github-workflows "${wf[@]}")
}

gate_zizmor() {
    [[ -d $root/.github/workflows ]] || { echo "no $root/.github/workflows"; return 1; }
    # --offline: the same verdict with or without network or a token (CI sets GITHUB_TOKEN).
    (cd "$root" && "$bin/zizmor" --offline --no-progress --color never --min-severity medium \
        --strict-collection .github/workflows)
}

gate_shellcheck() {
    local -a scripts
    mapfile -t scripts < <(files ci -maxdepth 1 -type f -name '*.sh')
    ((${#scripts[@]})) || { echo "no scripts found"; return 1; }
    echo "${#scripts[@]} scripts: ${scripts[*]}"
    (cd "$root" && "$bin/shellcheck" --external-sources "${scripts[@]}")
}

gate_hadolint() {
    local -a dockerfiles
    mapfile -t dockerfiles < <(files dockerfiles -maxdepth 1 -type f -name '*.Dockerfile')
    ((${#dockerfiles[@]})) || { echo "no Dockerfiles in $root/dockerfiles"; return 1; }
    echo "${#dockerfiles[@]} Dockerfiles: ${dockerfiles[*]}"
    (cd "$root" && "$bin/hadolint" --no-color --config .hadolint.yaml "${dockerfiles[@]}")
}

total=$SECONDS
gate schema gate_schema
gate zizmor gate_zizmor
gate shellcheck gate_shellcheck
gate hadolint gate_hadolint

# Self-test: a broken copy per gate; the gate must fail on it.
run_self_test() {
    local gate_name rc
    scratch=$(mktemp -d /tmp/rdna1-gates-selftest.XXXXXX)
    trap 'rm -rf "$scratch"' EXIT
    local -A expect=(
        [schema]='broken.yml::$.jobs.x'
        [zizmor]='artipacked'
        [shellcheck]='SC2086'
        [hadolint]='DL3048 style'
    )
    for gate_name in schema zizmor shellcheck hadolint; do
        local copy=$scratch/$gate_name
        mkdir -p "$copy"
        cp -r "$root/.github" "$root/ci" "$root/dockerfiles" "$root/.hadolint.yaml" "$copy/"
        case $gate_name in
        schema) # a job without runs-on
            printf 'name: broken\non: push\njobs:\n  x:\n    steps:\n      - run: "true"\n' \
                >"$copy/.github/workflows/broken.yml" ;;
        zizmor) # checkout keeping its credentials: artipacked, medium severity (zizmor
            # 1.32 --format json: "severity": "Medium"), the lowest the gate fails on
            cat >"$copy/.github/workflows/broken.yml" <<'YAML'
name: broken
on: push
permissions: {}
jobs:
  x:
    runs-on: ubuntu-24.04
    permissions: {}
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683 # v4.2.2
      - run: echo hi
YAML
            ;;
        shellcheck) # an unquoted expansion handed to rm
            cat >"$copy/ci/broken.sh" <<'SH'
#!/usr/bin/env bash
set -eu
dir=$1
rm -rf $dir/*
SH
            ;;
        hadolint) # only an invalid label key: DL3048, severity style, the lowest there is
            printf 'FROM %s\nLABEL bad_key%%=x\n' \
                'ubuntu:jammy-20260901.2@sha256:281c5745f657873d78e5531fc5ba8575f46ab7769b94550ac99543f122679986' \
                >"$copy/dockerfiles/broken.Dockerfile" ;;
        esac
        rc=0
        bash "$here/ci/static-gates.sh" --root "$copy" --only "$gate_name" --no-self-test \
            >"$scratch/$gate_name.log" 2>&1 || rc=$?
        # It must fail, and for the planted mistake (not, say, because its tool is broken).
        if ((rc)) && grep -q -- "--- $gate_name: FAILED" "$scratch/$gate_name.log" &&
            grep -qF -- "${expect[$gate_name]}" "$scratch/$gate_name.log"; then
            printf 'self-test: %s fails on a broken copy (%s), as it should:\n' "$gate_name" "${expect[$gate_name]}"
            grep -F -m 2 -- "${expect[$gate_name]}" "$scratch/$gate_name.log" | sed 's/^/    /' || true
        else
            printf 'self-test: %s did NOT fail on a broken copy with %s (exit %d):\n' "$gate_name" "${expect[$gate_name]}" "$rc"
            sed 's/^/    /' "$scratch/$gate_name.log"
            failed+=("self-test:$gate_name")
        fi
    done
}
if [[ $self_test == 1 && -z $only ]]; then
    gate_start=$SECONDS
    printf -- '--- self-test\n'
    run_self_test
    printf -- '--- self-test done (%d s)\n' "$((SECONDS - gate_start))"
fi

if ((${#failed[@]})); then
    printf 'static gates FAILED: %s (%d s)\n' "${failed[*]}" "$((SECONDS - total))"
    exit 1
fi
printf 'static gates passed (%d s)\n' "$((SECONDS - total))"
