#!/usr/bin/env bash
# Wall times of the pipeline on the fixture recipe over the local base image:
#   1. cold: build (no cache) + cpu smoke test + tag, through rdna1-images
#   2. the skipped rebuild (same inputs: nothing built, nothing tested)
#   3. for comparison: `docker build` of the same rendered Dockerfile with a warm cache,
#      plus `docker run` of the same smoke command
# Needs the engine and rdna1-test-base:bookworm (ci/ensure-docker.sh, ci/test-base.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet
bin=target/release/rdna1-images
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
name=bench-fixture
sed "s/^name: fixture-ok$/name: $name/" tests/fixtures/recipes/fixture-ok.yaml >"$work/$name.yaml"
# This machine kind's engine has no docker0 bridge; the fixture needs no network.
export RDNA1_IMAGES_BUILD_NETWORK=none
# Time the build itself, not a registry lookup (pull-or-build).
export RDNA1_IMAGES_NO_PULL=1

docker image ls -q "rdna1-images:$name*" | sort -u | xargs -r docker rmi -f >/dev/null 2>&1 || true

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

t0=$(now)
"$bin" --recipes "$work" -q build "$name" --smoke cpu --no-cache >/dev/null
t1=$(now)
"$bin" --recipes "$work" -q build "$name" --smoke cpu >/dev/null
t2=$(now)

"$bin" --recipes "$work" render --all --write --out "$work/out" 2>/dev/null
# The legacy builder: this docker CLI has no buildx plugin for BuildKit.
DOCKER_BUILDKIT=0 docker build -q --network none -t "rdna1-bench:$name" \
  -f "$work/out/$name.Dockerfile" "$work/out/$name" >/dev/null 2>&1   # warm the cache
t3=$(now)
DOCKER_BUILDKIT=0 docker build -q --network none -t "rdna1-bench:$name" \
  -f "$work/out/$name.Dockerfile" "$work/out/$name" >/dev/null 2>&1
cmd=$("$bin" --recipes "$work" smoke "$name" --print-command)
cmd=${cmd/rdna1-images:$name/rdna1-bench:$name}
eval "$cmd" >/dev/null 2>&1
t4=$(now)

printf '%-58s %8s s\n' \
  "rdna1-images build (cold, --no-cache) + cpu smoke + tag" "$(elapsed "$t0" "$t1")" \
  "rdna1-images build again (skipped: digest tag exists)" "$(elapsed "$t1" "$t2")" \
  "docker build (warm cache) + docker run of the smoke test" "$(elapsed "$t3" "$t4")"

docker image ls -q "rdna1-images:$name*" | sort -u | xargs -r docker rmi -f >/dev/null 2>&1 || true
docker rmi -f "rdna1-bench:$name" >/dev/null 2>&1 || true
