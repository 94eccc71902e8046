#!/usr/bin/env bash
# A dry run of one nightly matrix entry (ci/nightly-entry.sh), end to end, against the
# loopback registry and fixture recipes on the local base image: what nightly.yml does on a
# hosted runner, minus GHCR, the SBOM and the signature.
#
#   1 absent   fixture-ok under a fresh name: built, smoke-tested (cpu), pushed; the tag is
#              then in the registry, and the smoke table is in the job summary
#   2 present  the same entry again, with the local image removed: nothing is built (the
#              registry alone decides), status=present with the same digest
#   3 failing  fixture-wrong-torch: exit 1, status=failed, nothing pushed
#   4 app      the test app (tests/fixtures/apps) on that stack, its stack image not here:
#              the stack pulled, the app built on it, smoke-tested, pushed
#   5 app again  with the local app removed: pulled instead of built, status=present
#
# Needs: the engine, rdna1-test-base:bookworm (ci/test-base.sh) and the open loopback registry
# (ci/registry.sh start; RDNA1_TEST_REGISTRY). tests/nightly.rs runs this under cargo test with
# RDNA1_IMAGES_BIN set to the binary cargo just built; by hand:
#   eval "$(ci/registry.sh env)" && ci/nightly-dryrun-test.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

registry_host=${RDNA1_TEST_REGISTRY:-}
[[ -n $registry_host ]] || { echo "nightly-dryrun-test: RDNA1_TEST_REGISTRY is not set; run: eval \"\$(ci/registry.sh env)\"" >&2; exit 3; }

passed=0 failed=0
check() {
    local what=$1; shift
    if "$@"; then
        printf 'ok      %s\n' "$what"
        passed=$((passed + 1))
    else
        printf 'FAILED  %s\n' "$what"
        failed=$((failed + 1))
    fi
}

work=$(mktemp -d /tmp/rdna1-nightly-dryrun.XXXXXX)
id=$$-$RANDOM
good=nightly-t$id
bad=nightly-bad-t$id
app=nightly-app-t$id
# Every image name this run made: its local tags, and whatever it pulled under its own
# registry repository (an app's leg pulls its stack by that name).
names_of_run() {
    local n
    docker image ls --format '{{.Repository}}:{{.Tag}}' | while IFS= read -r n; do
        case $n in
        "rdna1-images:$good" | "rdna1-images:$good-"* | "rdna1-images:$bad" | "rdna1-images:$bad-"* | \
            "rdna1-images:$app" | "rdna1-images:$app-"*) printf '%s\n' "$n" ;;
        *) [[ -n ${RDNA1_IMAGES_REGISTRY:-} && $n == "$RDNA1_IMAGES_REGISTRY:"* ]] && printf '%s\n' "$n" ;;
        esac
    done
}
remove_images_of_run() { names_of_run | xargs -r docker rmi --no-prune >/dev/null 2>&1 || true; }
cleanup() {
    remove_images_of_run
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/recipes"
sed "s/^name: fixture-ok$/name: $good/" tests/fixtures/recipes/fixture-ok.yaml >"$work/recipes/$good.yaml"
sed "s/^name: fixture-wrong-torch$/name: $bad/" tests/fixtures/recipes/fixture-wrong-torch.yaml >"$work/recipes/$bad.yaml"
sed -e "s/^name: fixture-app$/name: $app/" -e "s/^stack: STACK$/stack: $good/" tests/fixtures/apps/fixture-app.yaml >"$work/recipes/$app.yaml"
mkdir -p "$work/recipes/apps"
cp tests/fixtures/apps/server.py "$work/recipes/apps/"

export RDNA1_IMAGES_RECIPES=$work/recipes
export RDNA1_IMAGES_REGISTRY=$registry_host/rdna1-nightly-dryrun-$id
# This machine's engine has no bridge network; the fixtures need none.
export RDNA1_IMAGES_BUILD_NETWORK=${RDNA1_IMAGES_BUILD_NETWORK:-none}
unset RDNA1_NIGHTLY_FORCE RDNA1_NIGHTLY_NO_PUSH RDNA1_REGISTRY_USER RDNA1_REGISTRY_PASSWORD
# The weekly refresh on Sundays; each step below says which day it acts as.
export RDNA1_NIGHTLY_REFRESH_DAY=7 RDNA1_NIGHTLY_TODAY=1

# Runs one entry like the workflow step does, with its own GITHUB_OUTPUT/STEP_SUMMARY files.
entry() {
    local run=$1 recipe=$2
    mkdir -p "$work/$run"
    : >"$work/$run/github-output"
    : >"$work/$run/step-summary"
    local rc=0
    GITHUB_OUTPUT=$work/$run/github-output GITHUB_STEP_SUMMARY=$work/$run/step-summary \
        RDNA1_NIGHTLY_OUT=$work/$run/out \
        bash ci/nightly-entry.sh "$recipe" >"$work/$run/stdout" 2>"$work/$run/stderr" || rc=$?
    echo "$rc" >"$work/$run/rc"
    printf -- '--- %s (%s): exit %s\n' "$run" "$recipe" "$rc"
    sed 's/^/    /' "$work/$run/github-output"
}
output() { sed -n "s/^$2=//p" "$work/$1/github-output" | tail -n1; }
rc_is() { [[ $(<"$work/$1/rc") == "$2" ]]; }
has_tag() { bash ci/nightly-has-tag.sh "$RDNA1_IMAGES_REGISTRY:$1" >/dev/null 2>&1; }
lacks_tag() { ! has_tag "$1"; }
report_passed() { jq -e '.schema == 1 and .result[0].status == "passed"' "$1" >/dev/null; }
local_tags_of() { docker image ls --format '{{.Repository}}:{{.Tag}}' rdna1-images | grep -c "^rdna1-images:$1" || true; }
show_log_on_failure() {
    if ((failed)); then
        local run
        for run in "$@"; do
            printf -- '--- %s stderr (last 40 lines)\n' "$run"
            tail -n 40 "$work/$run/stderr" | sed 's/^/    /'
        done
    fi
}

start=$SECONDS
# 1 absent: build, smoke, push
entry absent "$good"
tag=$(output absent tag)
check "absent: exit 0" rc_is absent 0
check "absent: status=pushed" test "$(output absent status)" = pushed
check "absent: $tag is in the registry" has_tag "$tag"
check "absent: the ref names a manifest digest" grep -Eq "^ref=$RDNA1_IMAGES_REGISTRY@sha256:[0-9a-f]{64}$" "$work/absent/github-output"
check "absent: the smoke table is in the step summary" grep -q '^| medium | pass |' "$work/absent/step-summary"
check "absent: the JSON report is kept" report_passed "$work/absent/out/report.json"

# 2 present: the registry alone decides (the local image is gone)
docker image ls --format '{{.Repository}}:{{.Tag}}' rdna1-images | grep "^rdna1-images:$good" |
    xargs -r docker rmi --no-prune >/dev/null
entry present "$good"
check "present: exit 0" rc_is present 0
check "present: status=present" test "$(output present status)" = present
check "present: same ref as the push" test "$(output present ref)" = "$(output absent ref)"
check "present: nothing was built (no local image came back)" test "$(local_tags_of "$good")" = 0
check "present: the step summary says nothing new" grep -q 'nothing new' "$work/present/step-summary"

# 2b the weekly refresh: present, rebuilt without cache, the same image: nothing pushed
export RDNA1_NIGHTLY_TODAY=7
entry refresh "$good"
export RDNA1_NIGHTLY_TODAY=1
check "refresh: exit 0" rc_is refresh 0
check "refresh: status=same" test "$(output refresh status)" = same
check "refresh: it rebuilt without cache" grep -q -- '--no-cache' "$work/refresh/stderr"
check "refresh: the registry's tag did not move" test "$(output refresh ref)" = "$(output absent ref)"
check "refresh: the step summary says nothing pushed" grep -q 'nothing pushed' "$work/refresh/step-summary"

# 3 failing smoke test: nothing pushed
entry failing "$bad"
check "failing: exit 1" rc_is failing 1
check "failing: status=failed" test "$(output failing status)" = failed
check "failing: nothing pushed" lacks_tag "$(output failing tag)"
check "failing: the step summary shows the failed build" grep -q "build failed" "$work/failing/step-summary"

# 4 app: after its stack's entry; the stack image is not here, as on a fresh runner
untag_all() {
    docker image ls --format '{{.Repository}}:{{.Tag}}' | grep -E "(^rdna1-images|/rdna1-nightly-dryrun-$id):$1(-|$)" |
        xargs -r docker rmi --no-prune >/dev/null
}
untag_all "$good"
entry app "$app"
app_tag=$(output app tag)
check "app: exit 0" rc_is app 0
check "app: its stack was pulled" grep -q "pull $good --tag $tag" "$work/app/stderr"
check "app: status=pushed" test "$(output app status)" = pushed
check "app: $app_tag is in the registry" has_tag "$app_tag"
check "app: the stack's suite ran again in the app image" grep -q '^| medium | pass |' "$work/app/step-summary"
check "app: its checks passed" jq -e '.result[0].smoke.findings == [] and .result[0].status == "passed"' "$work/app/out/report.json"

# 5 app again: in the registry on this stack image: pulled, not built
untag_all "$app"
entry app-again "$app"
check "app again: exit 0" rc_is app-again 0
check "app again: status=present" test "$(output app-again status)" = present
check "app again: same ref as the push" test "$(output app-again ref)" = "$(output app ref)"

remove_images_of_run
check "nothing of this run is left on the engine" test -z "$(names_of_run)"

show_log_on_failure absent present refresh failing app app-again
printf 'nightly dry run: %d s\n' "$((SECONDS - start))"
printf '%d passed, %d failed\n' "$passed" "$failed"
((failed == 0))
