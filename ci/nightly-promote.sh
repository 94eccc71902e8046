#!/usr/bin/env bash
# The GPU half of the nightly, on a self-hosted runner with an RDNA1 card: for RECIPE,
# `rdna1-images promote` pulls the nightly image, runs the gpu smoke test and, only on a
# pass, moves the stable tags in the registry. The logic is the binary's; this script finds
# the binary, checks the host first (a runner without /dev/kfd says so plainly instead of
# failing deep inside a container), and copies the outcome into the job summary.
#
# Usage: ci/nightly-promote.sh RECIPE REPO@sha256:DIGEST
# The digest is the one the nightly pushed and signed (the build job's output): promote pulls,
# tests and promotes exactly it, never what the moving `<recipe>-nightly` tag names later.
# Environment: RDNA1_IMAGES_REGISTRY (HOST[:PORT]/NAME, required), RDNA1_IMAGES_BIN (optional),
# RDNA1_NIGHTLY_LOCK=1 (re-check the build job's lock, put beside the recipe, with
# `lock --verify --locked`: promote reads the same pins, which the input digest covers,
# and resolves nothing),
# RDNA1_COSIGN_IDENTITY and RDNA1_COSIGN_ISSUER (when set: `cosign verify` the digest against
# that keyless signer identity first, and promote nothing unless it verifies).
# Exit: the binary's (0 promoted, 1 smoke test failed, 2 bad input, 3 environment); 1 when
# the signature does not verify.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

fail() { local code=$1; shift; printf 'nightly-promote: error: %s\n' "$*" >&2; exit "$code"; }

[[ $# -eq 2 ]] || fail 2 "usage: $0 RECIPE REPO@sha256:DIGEST"
recipe=$1
image=$2
[[ $image =~ @sha256:[0-9a-f]{64}$ ]] || fail 2 "$image is not REPO@sha256:<64 hex>: promote takes the digest the nightly signed, not a tag"
[[ -n ${RDNA1_IMAGES_REGISTRY:-} ]] || fail 2 "RDNA1_IMAGES_REGISTRY is not set"
# shellcheck source=ci/lib/binary.sh
source ci/lib/binary.sh
bin=$(find_rdna1_images) || fail 3 "no rdna1-images binary: run cargo build --release or set RDNA1_IMAGES_BIN"
"$bin" promote --help >/dev/null 2>&1 || fail 3 "this rdna1-images has no \`promote\` command yet"
[[ -e /dev/kfd ]] || fail 3 "no /dev/kfd on this runner: promote needs an AMD GPU with the amdgpu driver"

summary() {
    if [[ -n ${GITHUB_STEP_SUMMARY:-} ]]; then tee -a "$GITHUB_STEP_SUMMARY"; else cat; fi
}

if [[ ${RDNA1_NIGHTLY_LOCK:-0} == 1 ]]; then
    export RDNA1_IMAGES_RECIPES=${RDNA1_IMAGES_RECIPES:-recipes}
    # --locked: the build job's lock (downloaded beside the recipe) as it is: nothing is
    # resolved here, a missing entry fails, and a changed hash on the index fails.
    "$bin" --recipes "$RDNA1_IMAGES_RECIPES" lock "$recipe" --verify --locked >&2 ||
        fail $? "lock $recipe --verify --locked failed: the build job's lock is missing an entry, a locked file changed on the index, or the index is out of reach"
fi

if [[ -n ${RDNA1_COSIGN_IDENTITY:-} ]]; then
    command -v cosign >/dev/null || fail 3 "RDNA1_COSIGN_IDENTITY is set but cosign is not installed"
    [[ -n ${RDNA1_COSIGN_ISSUER:-} ]] || fail 2 "RDNA1_COSIGN_IDENTITY needs RDNA1_COSIGN_ISSUER"
    cosign verify "$image" \
        --certificate-identity "$RDNA1_COSIGN_IDENTITY" \
        --certificate-oidc-issuer "$RDNA1_COSIGN_ISSUER" >/dev/null ||
        fail 1 "the signature of $image does not verify for $RDNA1_COSIGN_IDENTITY: not promoted"
    printf 'nightly-promote: %s is signed by %s\n' "$image" "$RDNA1_COSIGN_IDENTITY" >&2
fi

# An app is tested on its stack's image (its input digest covers it): that stack's nightly,
# pulled first with its smoke report (the app's nightly was built on it the same night).
kind=$("$bin" list --json | jq -r --arg r "$recipe" '.result[] | select(.name == $r) | .kind') ||
    fail 2 "rdna1-images list --json failed"
if [[ $kind == app ]]; then
    stack=$("$bin" list --json | jq -r --arg r "$recipe" '.result[] | select(.name == $r) | .stack')
    "$bin" pull "$stack" --channel nightly --registry "$RDNA1_IMAGES_REGISTRY" >&2 ||
        fail $? "app $recipe: its stack's nightly ($stack-nightly) could not be pulled; promote $stack's nightly first"
fi
rc=0
"$bin" promote "$recipe" --image "$image" --registry "$RDNA1_IMAGES_REGISTRY" 2>&1 | tee "promote-$recipe.log" || rc=${PIPESTATUS[0]}
{
    printf '### promote %s: %s\n\n```\n' "$recipe" "$( ((rc == 0)) && echo promoted || echo "not promoted (exit $rc)")"
    tail -n 40 "promote-$recipe.log"
    printf '```\n\n'
} | summary
exit "$rc"
