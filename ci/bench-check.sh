#!/usr/bin/env bash
# Times `check --strict` on the shipped recipes and on a recipe just under the 1 MiB limit
# with ~60,000 unpinned apt entries (every one a finding, each located by line): the error
# locator must stay linear. BIN overrides the binary (default: the debug build).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-target/debug/rdna1-images}
[ -x "$bin" ] || cargo build -q
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

sed "s/^name: fixture-ok$/name: big/" tests/fixtures/recipes/fixture-ok.yaml >"$work/big.yaml"
# Each entry is 19 bytes; stay just under 1 MiB.
count=$(( (1048576 - $(wc -c <"$work/big.yaml") - 64) / 19 ))
{
  echo "system_packages:"
  echo "  apt:"
  seq -f '    - pkg%09g' 0 $((count - 1))
} >>"$work/big.yaml"
echo "big recipe: $(wc -c <"$work/big.yaml") bytes, $(grep -c -- '- pkg' "$work/big.yaml") unpinned entries"

time_it() {
  local label=$1
  shift
  local start end
  start=$(date +%s.%N)
  for _ in 1 2 3; do "$@" >/dev/null 2>&1 || true; done
  end=$(date +%s.%N)
  echo "$label: $(echo "($end - $start) / 3" | bc -l | cut -c1-6) s per run (mean of 3)"
}
time_it "check --strict, shipped recipes" "$bin" check --strict
time_it "check --strict, 1 MiB recipe" "$bin" --recipes "$work" check --strict
findings=$("$bin" --recipes "$work" check --strict 2>&1 | grep -c 'has no version' || true)
echo "findings reported for the 1 MiB recipe: $findings"
