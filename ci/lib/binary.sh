# Shared by the nightly scripts that run the tool: where its binary is.
# shellcheck shell=bash

# Prints the rdna1-images binary to run: $RDNA1_IMAGES_BIN when set, else the release build,
# then the debug build (paths relative to the checkout, the callers' working folder), then
# the one on PATH; returns 1 when there is none.
find_rdna1_images() {
    local candidate
    if [[ -n ${RDNA1_IMAGES_BIN:-} ]]; then
        printf '%s\n' "$RDNA1_IMAGES_BIN"
        return 0
    fi
    for candidate in target/release/rdna1-images target/debug/rdna1-images; do
        [[ -x $candidate ]] && { printf '%s\n' "$candidate"; return 0; }
    done
    command -v rdna1-images
}
