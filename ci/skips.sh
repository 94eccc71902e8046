#!/usr/bin/env bash
# The skip summary of a test run (ci/test.sh's last step). Tests record each skip as one line
# `<test binary>::<test path><TAB><why>` in the file named by RDNA1_TEST_SKIPS
# (src/test_skip.rs); this lists them, counts them, and fails on any skip the allow-list does
# not expect, so a test that quietly stopped running fails CI instead of showing `ok`.
#
# Usage: ci/skips.sh SKIPS_FILE [ALLOW_LIST]   (default allow-list: ci/expected-skips.txt)
#   allow-list lines: `<test id glob> <why it is expected here>`; # starts a comment
#   exit 0  no skip, or only expected ones;  1  an unexpected skip;  2  bad usage
set -euo pipefail

[[ $# -ge 1 && $# -le 2 ]] || { echo "usage: $0 SKIPS_FILE [ALLOW_LIST]" >&2; exit 2; }
skips=$1
allow=${2:-$(dirname "${BASH_SOURCE[0]}")/expected-skips.txt}
[[ -f $allow ]] || { echo "skips: no allow-list at $allow" >&2; exit 2; }

patterns=()
reasons=()
while IFS= read -r line || [[ -n $line ]]; do
    line=${line%%#*}
    [[ $line =~ ^[[:space:]]*([^[:space:]]+)[[:space:]]*(.*[^[:space:]])?[[:space:]]*$ ]] || continue
    patterns+=("${BASH_REMATCH[1]}")
    reasons+=("${BASH_REMATCH[2]:-no reason given}")
done <"$allow"

total=0 unexpected=0
report=()
if [[ -f $skips ]]; then
    while IFS=$'\t' read -r id why || [[ -n $id ]]; do
        [[ -n $id ]] || continue
        total=$((total + 1))
        verdict="NOT EXPECTED (add it to $allow with the reason, or make it run)"
        for i in "${!patterns[@]}"; do
            # shellcheck disable=SC2053 # the pattern is a glob on purpose
            if [[ $id == ${patterns[$i]} ]]; then
                verdict="expected: ${reasons[$i]}"
                break
            fi
        done
        [[ $verdict == expected:* ]] || unexpected=$((unexpected + 1))
        report+=("    SKIPPED $id: $why [$verdict]")
    done < <(LC_ALL=C sort "$skips")
fi

printf 'skipped tests: %d (%d not expected)\n' "$total" "$unexpected"
((${#report[@]} == 0)) || printf '%s\n' "${report[@]}"
((unexpected == 0)) || { printf 'skips: FAILED: %d skip(s) not in %s\n' "$unexpected" "$allow"; exit 1; }
