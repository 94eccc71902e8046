#!/usr/bin/env bash
# The test command (the README's, and .ci/run's). Works from any directory, as
# root on a fresh machine: it installs and starts what the tests need.
#
#   1 engine      ci/ensure-docker.sh
#   2 images      ci/test-base.sh (rdna1-test-base:bookworm, rdna1-test-tiny:latest)
#   3 registries  ci/registry.sh start (stopped again on exit if this run started them)
#   4 gates       ci/static-gates.sh, when present
#   5 fmt         cargo fmt --all -- --check
#   6 clippy      cargo clippy --all-targets -- -D warnings
#   7 drift       cargo run -- render --all --check (committed Dockerfiles)
#   8 tests       RDNA1_REQUIRE_DOCKER=1 cargo test
#
# RDNA1_TEST_SETUP_ONLY=1 stops after step 3, leaving the registries running and
# printing the environment the tests would get.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

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
if [[ -f ci/static-gates.sh ]]; then
    bash ci/static-gates.sh
else
    echo "    ci/static-gates.sh not present, skipped"
fi
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
RDNA1_REQUIRE_DOCKER=1 cargo test
