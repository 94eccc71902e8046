#!/usr/bin/env bash
# The test command (the README's, and .ci/run's). Works from any directory, as
# root on a fresh machine: it installs and starts what the tests need.
#
#   1 engine      ci/ensure-docker.sh
#   2 images      ci/test-base.sh (rdna1-test-base:bookworm, rdna1-test-tiny:latest)
#   3 registries  ci/registry.sh start (stopped again on exit if this run started them)
#   4 gates       ci/static-gates.sh (a missing script fails the run)
#   5 fmt         cargo fmt --all -- --check
#   6 clippy      cargo clippy --all-targets -- -D warnings
#   7 drift       cargo run -- render --all --check (committed Dockerfiles)
#   8 tests       RDNA1_REQUIRE_DOCKER=1 cargo test, then the skip summary: every skip a
#                 test recorded (src/test_skip.rs), failing on one that
#                 ci/expected-skips.txt does not list (ci/skips.sh)
#
# RDNA1_TEST_SETUP_ONLY=1 stops after step 3, leaving the registries running and
# printing the environment the tests would get.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Every script a step runs must be here, checked before anything is installed or started: a
# gate that is missing checks nothing, so that fails the run rather than being skipped.
for script in ci/ensure-docker.sh ci/test-base.sh ci/registry.sh ci/static-gates.sh ci/skips.sh ci/expected-skips.txt; do
    [[ -f $script ]] || { echo "ci/test.sh: $script is missing, so its step cannot run" >&2; exit 1; }
done

TOTAL_STEPS=8
step_no=0
step_started=$SECONDS
step() {
    step_no=$((step_no + 1))
    printf '\n==> [%d/%d] %s\n' "$step_no" "$TOTAL_STEPS" "$*"
    step_started=$SECONDS
}
took() { printf '    (%d s)\n' "$((SECONDS - step_started))"; }

export RDNA1_TEST_BASE=${RDNA1_TEST_BASE:-rdna1-test-base:bookworm}
export RDNA1_TEST_TINY=${RDNA1_TEST_TINY:-rdna1-test-tiny:latest}

step "Docker engine"
bash ci/ensure-docker.sh
docker version --format 'client {{.Client.Version}}, engine {{.Server.Version}} (API {{.Server.APIVersion}})'
took

step "test images $RDNA1_TEST_BASE and $RDNA1_TEST_TINY"
bash ci/test-base.sh
took

step "local registries"
registry_was_running=0
bash ci/registry.sh status >/dev/null 2>&1 && registry_was_running=1
# Stop on exit only what this run started; the trap goes first so that a start
# that fails half-way leaves nothing behind either.
if ((!registry_was_running)) && [[ ${RDNA1_TEST_SETUP_ONLY:-0} != 1 ]]; then
    trap 'bash ci/registry.sh stop >/dev/null 2>&1 || true' EXIT
fi
bash ci/registry.sh start
registry_env=$(bash ci/registry.sh env)
eval "$registry_env"
printf '%s\n' "$registry_env" | sed 's/^/    /'
took

if [[ ${RDNA1_TEST_SETUP_ONLY:-0} == 1 ]]; then
    printf '\nRDNA1_TEST_SETUP_ONLY=1: set-up done, registries left running (ci/registry.sh stop)\n'
    printf '    export RDNA1_TEST_BASE=%s\n    export RDNA1_TEST_TINY=%s\n' "$RDNA1_TEST_BASE" "$RDNA1_TEST_TINY"
    exit 0
fi

step "static gates"
bash ci/static-gates.sh
took

# rustfmt and clippy come with the usual rustup profile; add them where missing.
ensure_component() {
    local component=$1 probe=$2
    if ! cargo "$probe" --version >/dev/null 2>&1; then
        command -v rustup >/dev/null || { echo "cargo $probe is missing and rustup is not installed" >&2; exit 1; }
        rustup component add "$component"
    fi
}

step "cargo fmt --all -- --check"
ensure_component rustfmt fmt
cargo fmt --all -- --check
took

step "cargo clippy --all-targets -- -D warnings"
ensure_component clippy clippy
cargo clippy --all-targets -- -D warnings
took

step "rendered Dockerfiles match the recipes (render --all --check)"
cargo run --quiet -- render --all --check
took

step "cargo test (RDNA1_REQUIRE_DOCKER=1)"
# The terminal test of `run` drives tmux.
if ! command -v tmux >/dev/null && [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null
fi
export RDNA1_TEST_SKIPS=$PWD/target/test-skips.txt
rm -f "$RDNA1_TEST_SKIPS"
tests_rc=0
RDNA1_REQUIRE_DOCKER=1 cargo test || tests_rc=$?
took
printf '\n==> summary\n'
skips_rc=0
bash ci/skips.sh "$RDNA1_TEST_SKIPS" || skips_rc=$?
if ((tests_rc)); then
    echo "cargo test FAILED (exit $tests_rc)"
    exit "$tests_rc"
fi
((skips_rc == 0)) || exit 1
echo "all steps passed"
