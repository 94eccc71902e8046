#!/usr/bin/env bash
# One entry of the nightly matrix: build RECIPE and push it to the registry only when
# its exact inputs are not there yet, so a night with nothing new costs one `list` and
# one HTTP request. .github/workflows/nightly.yml calls this; so does
# ci/nightly-dryrun-test.sh, against the loopback registry, with a fixture recipe.
#
# Usage: ci/nightly-entry.sh RECIPE
#
#   0 lock     with RDNA1_NIGHTLY_LOCK=1 (recipes that pin versions only: therock; the apps, comfyui):
#              `rdna1-images lock RECIPE --verify` resolves what RECIPE.lock lacks from the
#              recipe's index, once, into the checkout's lock, and fails when a locked file
#              now has another hash; the steps below read that lock, and the workflow's
#              propose-lock job offers it back to the repository as a pull request. The
#              build runs with --locked: it never resolves anything itself.
#   1 digest   `rdna1-images list --json` gives the recipe's input digest (no Docker needed)
#   2 present? REGISTRY:<recipe>-<digest12> in the registry (ci/nightly-has-tag.sh): done,
#              except on the weekly refresh day (RDNA1_NIGHTLY_REFRESH_DAY): the inputs the
#              recipes leave floating on purpose (system packages, for security fixes) are
#              picked up by a rebuild without cache, compared with the registry's image
#              (pulled), and pushed only when the image differs
#   3 build    `rdna1-images build RECIPE --smoke cpu --json`: tags only on a passed smoke test
#   4 push     the same command with `--push --registry R`: only a passed build is pushed,
#              and a cpu pass reaches the nightly channel only
#   5 report   the JSON report, a Markdown smoke table (also into $GITHUB_STEP_SUMMARY) and
#              key=value results (also into $GITHUB_OUTPUT)
#
# An app (kind app in `list --json`) runs after its stack's entry, in the same job: its input
# digest covers the stack image, so instead of 1-4: a1 the stack image that entry built or
# found (pulled when not here), a2 `build APP` with pull-or-build (the registry's image of
# these inputs on this stack image is "present"), a3 `push APP` after a pass.
#
# Environment:
#   RDNA1_IMAGES_REGISTRY   where to push, HOST[:PORT]/NAME (required), e.g. ghcr.io/owner/rdna1-images
#   RDNA1_IMAGES_BIN        the binary (default: target/release, then target/debug, then PATH)
#   RDNA1_IMAGES_RECIPES    a recipes folder instead of the embedded recipes (the binary reads it)
#   RDNA1_NIGHTLY_OUT       folder for report.json, summary.md, result.env (default target/nightly/RECIPE)
#   RDNA1_NIGHTLY_SMOKE     smoke level (default cpu: hosted runners have no GPU; promote runs gpu)
#   RDNA1_NIGHTLY_FORCE=1   build and push even when the tag is present
#   RDNA1_NIGHTLY_REFRESH_DAY  ISO weekday (1 Monday .. 7 Sunday, UTC) of the weekly refresh
#                           (default 7); 0 turns it off
#   RDNA1_NIGHTLY_TODAY     the ISO weekday to act as (default: today, UTC; for the tests)
#   RDNA1_NIGHTLY_NO_PUSH=1 stop after a passed build (prints what it would push)
#   RDNA1_NIGHTLY_LOCK=1    lock the recipe first (step 0), in RDNA1_IMAGES_RECIPES (default recipes/)
#   RDNA1_REGISTRY_USER / RDNA1_REGISTRY_PASSWORD   for the presence check (see nightly-has-tag.sh);
#                           pushing uses the engine's login (docker login) as usual
#
# Results (stdout, result.env and $GITHUB_OUTPUT): recipe, digest12, tag, status
# (present | pushed | built | failed | same), and ref (REGISTRY@sha256:..., set when pushed or present).
# Exit: 0 present, pushed or built (NO_PUSH); 1 build, smoke test or push failed; 2 bad
# input; 3 the environment (registry unreachable, no binary).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'nightly: %s\n' "$*" >&2; }
fail() { local code=$1; shift; printf 'nightly: error: %s\n' "$*" >&2; exit "$code"; }

[[ $# -eq 1 ]] || fail 2 "usage: $0 RECIPE"
recipe=$1
[[ $recipe =~ ^[a-z0-9][a-z0-9._-]*$ ]] || fail 2 "'$recipe' is not a recipe name"
registry=${RDNA1_IMAGES_REGISTRY:-}
[[ -n $registry ]] || fail 2 "RDNA1_IMAGES_REGISTRY is not set (HOST[:PORT]/NAME, e.g. ghcr.io/owner/rdna1-images)"
[[ $registry == */* && ${registry##*/} != *[:@]* ]] ||
    fail 2 "RDNA1_IMAGES_REGISTRY='$registry' is not HOST[:PORT]/NAME (no tag)"
smoke=${RDNA1_NIGHTLY_SMOKE:-cpu}
out=${RDNA1_NIGHTLY_OUT:-target/nightly/$recipe}
mkdir -p "$out"

# shellcheck source=ci/lib/binary.sh
source ci/lib/binary.sh
bin=$(find_rdna1_images) || fail 3 "no rdna1-images binary: run cargo build --release or set RDNA1_IMAGES_BIN"

: >"$out/result.env"
result() {
    printf '%s=%s\n' "$1" "$2" | tee -a "$out/result.env"
    if [[ -n ${GITHUB_OUTPUT:-} ]]; then printf '%s=%s\n' "$1" "$2" >>"$GITHUB_OUTPUT"; fi
}
summary() {
    if [[ -n ${GITHUB_STEP_SUMMARY:-} ]]; then
        tee -a "$out/summary.md" >>"$GITHUB_STEP_SUMMARY"
    else
        cat >>"$out/summary.md"
    fi
}
: >"$out/summary.md"
result recipe "$recipe"

# The status of RECIPE in build's JSON outcome (unknown when there is none).
built_status() {
    jq -r --arg r "$recipe" '(.result // []) | map(select(.recipe == $r))[0].status // "unknown"' "$out/report.json" 2>/dev/null || echo unknown
}

# The job summary of a build: its status, then the smoke table from the JSON outcome.
smoke_summary() {
    {
        printf '### %s: build %s (smoke %s, input digest %s)\n\n' "$recipe" "$1" "$smoke" "$digest12"
        jq -r --arg r "$recipe" '
            (.result // []) | map(select(.recipe == $r))[0] as $o
            | ($o.smoke // {}) as $s
            | (($s.report // {}) | "torch \(.torch // "?"), Python \(.python // "?"), HIP \(.hip // "none"), device \(.device_name // "none")\n"),
              "| case | status | first call (s) | steady (s) | rel. error |",
              "|---|---|---|---|---|",
              ((($s.report // {}).cases // [])[] | "| \(.name) | \(.status) | \(.first_s // "-") | \(.steady_s // "-") | \(.rel_error // "-") |"),
              "",
              (if (($s.findings // []) | length) > 0 then "Findings:\n" + (($s.findings // []) | map("- \(.)") | join("\n")) + "\n" else empty end)
        ' "$out/report.json" 2>/dev/null || printf 'No JSON report (exit %d); see the job log.\n' "$build_rc"
        printf '\n'
    } | summary
}


# 0 lock
if [[ ${RDNA1_NIGHTLY_LOCK:-0} == 1 ]]; then
    export RDNA1_IMAGES_RECIPES=${RDNA1_IMAGES_RECIPES:-recipes}
    log "$bin --recipes $RDNA1_IMAGES_RECIPES lock $recipe --verify"
    lock_rc=0
    "$bin" --recipes "$RDNA1_IMAGES_RECIPES" lock "$recipe" --verify >"$out/lock.txt" || lock_rc=$?
    cat "$out/lock.txt" >&2
    if ((lock_rc != 0)); then
        result status failed
        printf '### %s: lock failed (exit %d)\n\nSee the job log: a changed hash for a pinned version, or the index out of reach. Nothing was built.\n' \
            "$recipe" "$lock_rc" | summary
        fail "$lock_rc" "lock $recipe failed (exit $lock_rc); nothing built, nothing pushed"
    fi
fi

# 1 digest. An app's input digest covers its stack's image, which `list` cannot know
# (its input_digest is null): an app goes through steps a1-a3 instead.
listed=$("$bin" list --json) || fail 2 "rdna1-images list --json failed"
kind=$(jq -r --arg r "$recipe" '.result[] | select(.name == $r) | .kind' <<<"$listed")
if [[ $kind == app ]]; then
    stack=$(jq -r --arg r "$recipe" '.result[] | select(.name == $r) | .stack' <<<"$listed")
    stack_digest=$(jq -r --arg s "$stack" '.result[] | select(.name == $s) | .input_digest | ltrimstr("sha256:")' <<<"$listed")
    [[ $stack_digest =~ ^[0-9a-f]{64}$ ]] || fail 2 "app $recipe: no input digest for its stack '$stack' in rdna1-images list --json"
    stack_tag=$stack-${stack_digest:0:12}
    # a1 stack: the app builds on the stack image its own entry built or found tonight (run
    #    it first, in the same job): here already, or pulled with its smoke report.
    if ! docker image inspect "rdna1-images:$stack_tag" >/dev/null 2>&1; then
        log "$bin pull $stack --tag $stack_tag --registry $registry"
        "$bin" pull "$stack" --tag "$stack_tag" --registry "$registry" >&2 ||
            fail 3 "app $recipe builds on $registry:$stack_tag, which could not be pulled: run ci/nightly-entry.sh $stack first"
    fi
    # a2 pull-or-build: the registry's app image of these inputs on this stack image is
    #    pulled instead of built (that is "present"); otherwise built and smoke tested.
    build_rc=0
    log "$bin build $recipe --smoke $smoke --json --registry $registry"
    "$bin" build "$recipe" --smoke "$smoke" --json --registry "$registry" >"$out/report.json" || build_rc=$?
    status=$(built_status)
    digest=$(jq -r --arg r "$recipe" '(.result // []) | map(select(.recipe == $r))[0].input_digest // "" | ltrimstr("sha256:")' "$out/report.json" 2>/dev/null || true)
    digest12=${digest:0:12}
    tag=$recipe-$digest12
    result digest12 "$digest12"
    result tag "$tag"
    smoke_summary "$status"
    case $status in
    pulled)
        remote_digest=$(bash ci/nightly-has-tag.sh "$registry:$tag") || fail 3 "$registry:$tag was pulled but is not in the registry now"
        result status present
        result ref "$registry@$remote_digest"
        exit 0
        ;;
    passed) ;;
    *)
        result status failed
        fail 1 "build of app $recipe did not pass (exit $build_rc, status $status); nothing pushed"
        ;;
    esac
    # a3 push, as for a stack: the cpu pass reaches the nightly channel only.
    if [[ ${RDNA1_NIGHTLY_NO_PUSH:-0} == 1 ]]; then
        log "RDNA1_NIGHTLY_NO_PUSH=1: would push $registry:$tag and $registry:$recipe-nightly"
        result status built
        exit 0
    fi
    "$bin" push "$recipe" --registry "$registry" >&2 || fail 1 "push of app $recipe failed"
    remote_digest=$(bash ci/nightly-has-tag.sh "$registry:$tag") || fail 1 "after the push, $registry:$tag is not in the registry"
    result status pushed
    result ref "$registry@$remote_digest"
    log "pushed $registry:$tag ($remote_digest)"
    exit 0
fi
digest=$(jq -r --arg r "$recipe" '.result[] | select(.name == $r) | .input_digest | ltrimstr("sha256:")' <<<"$listed") ||
    fail 2 "rdna1-images list --json failed"
[[ $digest =~ ^[0-9a-f]{64}$ ]] || fail 2 "no recipe '$recipe' (or no input digest) in rdna1-images list --json"
digest12=${digest:0:12}
tag=$recipe-$digest12
result digest12 "$digest12"
result tag "$tag"

# 2 present?
presence=0
remote_digest=$(bash ci/nightly-has-tag.sh "$registry:$tag") || presence=$?
case $presence in
0)
    refresh_day=${RDNA1_NIGHTLY_REFRESH_DAY:-7}
    today=${RDNA1_NIGHTLY_TODAY:-$(date -u +%u)}
    [[ $refresh_day =~ ^[0-7]$ && $today =~ ^[1-7]$ ]] ||
        fail 2 "RDNA1_NIGHTLY_REFRESH_DAY='$refresh_day' / RDNA1_NIGHTLY_TODAY='$today' are not ISO weekdays"
    if [[ ${RDNA1_NIGHTLY_FORCE:-0} != 1 && $refresh_day == "$today" ]]; then
        refresh=1
        log "$registry:$tag is present; weekly refresh (day $refresh_day): rebuilding without cache to pick up floating inputs, pushing only if the image differs"
    elif [[ ${RDNA1_NIGHTLY_FORCE:-0} != 1 ]]; then
        log "$registry:$tag is in the registry ($remote_digest): nothing new, nothing built"
        result status present
        result ref "$registry@$remote_digest"
        printf '### %s: nothing new\n\n%s is already in the registry (%s); no build.\n' \
            "$recipe" "\`$registry:$tag\`" "$remote_digest" | summary
        exit 0
    fi
    log "$registry:$tag is present, RDNA1_NIGHTLY_FORCE=1: building anyway"
    ;;
1) log "$registry:$tag is not in the registry: building" ;;
*) fail 3 "could not tell whether $registry:$tag exists (see above)" ;;
esac

# 3 build + 4 push
refresh=${refresh:-0}
if ((refresh)); then
    # The registry's image, for the comparison after the build (its name is removed again).
    docker pull -q "$registry:$tag" >/dev/null || fail 3 "could not pull $registry:$tag for the weekly comparison"
    before=$(docker image inspect --format '{{json .RootFS.Layers}} {{json .Config}}' "$registry:$tag")
    docker image rm "$registry:$tag" >/dev/null 2>&1 || true
fi
build_args=(build "$recipe" --smoke "$smoke" --json)
# The refresh rebuilds every step (apt's floating packages are in cached layers otherwise)
# and pushes only after the comparison.
((refresh)) && build_args+=(--no-cache)
# --force: the engine may still hold the <recipe>-<digest12> tag from an earlier run (a
# persistent self-hosted runner), and `build` would skip it; the registry is what counts here.
build_args+=(--force)
# --no-pull: a build that finds its tag in the registry pulls it instead of building; the
# nightly builds only when the tag is absent, or when forced, and then it means it.
build_args+=(--no-pull)
# --locked: the lock was resolved and verified once, in step 0 (or is the shipped one);
# a package it lacks fails the build (exit 2) instead of being resolved a second time.
build_args+=(--locked)
if [[ ${RDNA1_NIGHTLY_NO_PUSH:-0} != 1 ]] && ((!refresh)); then
    build_args+=(--push --registry "$registry")
fi
log "$bin ${build_args[*]}"
build_rc=0
"$bin" "${build_args[@]}" >"$out/report.json" || build_rc=$?

# 5 report (whatever happened): the smoke table from the JSON outcome
status=$(built_status)
smoke_summary "$status"
if ((build_rc != 0)) || [[ $status != passed ]]; then
    result status failed
    fail 1 "build of $recipe did not pass (exit $build_rc, status $status); nothing pushed, the registry's tags are untouched"
fi

if ((refresh)); then
    image=$(jq -r '.result[0].image_id' "$out/report.json")
    after=$(docker image inspect --format '{{json .RootFS.Layers}} {{json .Config}}' "$image")
    if [[ $after == "$before" ]]; then
        log "weekly refresh: the rebuild of $tag is the image in the registry: nothing pushed"
        result status same
        result ref "$registry@$remote_digest"
        printf 'Weekly refresh: the rebuild is the same image as %s; nothing pushed.\n\n' "\`$registry:$tag\`" | summary
        exit 0
    fi
    log "weekly refresh: the rebuild of $tag differs from the registry's image (a floating input moved)"
    if [[ ${RDNA1_NIGHTLY_NO_PUSH:-0} != 1 ]]; then
        "$bin" push "$recipe" --registry "$registry" >&2 || fail 1 "push of the refreshed $recipe failed"
    fi
fi

if [[ ${RDNA1_NIGHTLY_NO_PUSH:-0} == 1 ]]; then
    log "RDNA1_NIGHTLY_NO_PUSH=1: would push $registry:$tag and $registry:$recipe-nightly"
    result status built
    exit 0
fi

pushed=0
remote_digest=$(bash ci/nightly-has-tag.sh "$registry:$tag") || pushed=$?
((pushed == 0)) || fail 1 "after the push, $registry:$tag is not in the registry"
result status pushed
result ref "$registry@$remote_digest"
printf 'Pushed %s (%s).\n\n' "\`$registry:$tag\`" "$remote_digest" | summary
log "pushed $registry:$tag ($remote_digest)"
