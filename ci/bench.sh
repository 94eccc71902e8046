#!/usr/bin/env bash
# The cost of reproducibility, apples to apples, on the engine DOCKER_HOST names (or each of
# BENCH_ENGINES, space separated DOCKER_HOST values):
#   tool:    rdna1-images build <fixture> --smoke cpu --no-cache --force   (build, normalise,
#            cpu smoke test, tag)
#   by hand: docker buildx build --no-cache of the same rendered Dockerfile, docker run of the
#            command `smoke --print-command` prints, docker tag
# on the 1.25 GB test base and on a 4 GB base made here (the same plus one 3 GB layer), the
# median of BENCH_RUNS (default 3) paired runs; then the skipped rebuild against
# `docker image inspect`, and the peak extra disk of the tool's scratch files. The tool's
# per-step breakdown (-v) is printed for the last run. Before the paired runs, one first build
# on the base (what a new base costs once); after them, one run the save way (BENCH_SAVE_WAY=0
# leaves it out), for before and after.
# Needs rdna1-test-base:bookworm on each engine and docker-buildx (ci/engines.sh fetches it).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${BENCH_RUNS:-3}
engines=${BENCH_ENGINES:-${DOCKER_HOST:-unix:///var/run/docker.sock}}
buildx=${BENCH_BUILDX:-}
for c in "$buildx" /usr/libexec/docker/cli-plugins/docker-buildx \
  "${RDNA1_ENGINES_DIR:-/tmp/rdna1-engines}/pkg/root/usr/libexec/docker/cli-plugins/docker-buildx"; do
  [[ -n $c && -x $c ]] && { buildx=$c; break; }
done
[[ -x $buildx ]] || { echo "bench: no docker-buildx plugin (run ci/engines.sh fetch or set BENCH_BUILDX)" >&2; exit 3; }

bin=${BENCH_BIN:-}
if [[ -z $bin ]]; then
  cargo build --release --quiet
  bin=$PWD/target/release/rdna1-images
fi
work=$(mktemp -d)
tmp=$work/tmp
mkdir -p "$tmp" "$work/docker/cli-plugins"
ln -s "$buildx" "$work/docker/cli-plugins/docker-buildx"
cleanup() {
  for h in $engines; do
    DOCKER_HOST=$h docker image ls -q "rdna1-images:bench-*" 2>/dev/null | sort -u |
      xargs -r env DOCKER_HOST="$h" docker rmi -f >/dev/null 2>&1 || true
    DOCKER_HOST=$h docker rmi -f rdna1-bench:hand >/dev/null 2>&1 || true
    [[ ${BENCH_KEEP_BASE:-0} == 1 ]] || DOCKER_HOST=$h docker rmi -f rdna1-bench-base:4g >/dev/null 2>&1 || true
  done
  [[ -n ${sampler:-} ]] && kill "$sampler" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
# A cache of our own: the first build on each base is measured as such.
export XDG_CACHE_HOME=$work/cache
# The fixture needs no network (and this machine kind's engine may have lost docker0).
export RDNA1_IMAGES_BUILD_NETWORK=none
# Time the build itself, not a registry lookup (pull-or-build).
export RDNA1_IMAGES_NO_PULL=1

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
hand_buildx() { DOCKER_CONFIG=$work/docker docker buildx "$@"; }

# The 4 GB base: the test base plus one 3 GB layer of incompressible bytes.
make_big_base() {
  if ! docker image inspect rdna1-bench-base:4g >/dev/null 2>&1; then
    printf 'FROM rdna1-test-base:bookworm\nRUN head -c 3000000000 /dev/urandom > /opt/bench-3g\n' \
      >"$work/big.Dockerfile"
    hand_buildx build -q --network none -t rdna1-bench-base:4g -f "$work/big.Dockerfile" "$work" >/dev/null
  fi
}

# Peak bytes under the tool's TMPDIR while it runs (its scratch folders live there).
sample_disk() {
  local peak=0 n
  while :; do
    n=$(du -sb "$tmp" 2>/dev/null | cut -f1)
    ((n > peak)) && { peak=$n; echo "$peak" >"$work/peak"; }
    sleep 0.2
  done
}

bench_base() {
  local label=$1 base=$2 name=bench-$3
  sed -e "s/^name: fixture-ok$/name: $name/" -e "s|^  image: rdna1-test-base:bookworm$|  image: $base|" \
    tests/fixtures/recipes/fixture-ok.yaml >"$work/$name.yaml"
  "$bin" --recipes "$work" render "$name" >"$work/$name.Dockerfile"
  rm -rf "$work/ctx" && "$bin" --recipes "$work" render --all --write --out "$work/ctx" >/dev/null 2>&1
  local cmd
  cmd=$("$bin" --recipes "$work" smoke "$name" --print-command)
  cmd=${cmd/rdna1-images:$name/rdna1-bench:hand}
  local tool=() hand=()
  # The first build on a base pays once for what later builds skip: the engine pushes the
  # base to the tool's registry (classic: compressed), which reads its folders for the cache.
  local f0 f1
  f0=$(now)
  TMPDIR=$tmp "$bin" --recipes "$work" -v build "$name" --smoke cpu --no-cache --force \
    >"$work/tool.out" 2>"$work/tool.err" || { cat "$work/tool.err" >&2; exit 1; }
  f1=$(now)
  printf '  %-34s first build on this base %.2f s (once per base and engine)\n' "$label" "$(elapsed "$f0" "$f1")"
  grep -h "normalise timing" "$work/tool.err" | sed 's/^.*timing: /    breakdown: /'
  for ((i = 0; i < runs; i++)); do
    echo 0 >"$work/peak"
    sample_disk & sampler=$!
    local t0 t1 t2
    t0=$(now)
    TMPDIR=$tmp "$bin" --recipes "$work" -v build "$name" --smoke cpu --no-cache --force \
      >"$work/tool.out" 2>"$work/tool.err" || { cat "$work/tool.err" >&2; exit 1; }
    t1=$(now)
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true; sampler=
    tool+=("$(elapsed "$t0" "$t1")")
    t1=$(now)
    hand_buildx build -q --no-cache --network none -t rdna1-bench:hand \
      -f "$work/ctx/$name.Dockerfile" "$work/ctx/$name" >/dev/null
    eval "$cmd" >/dev/null 2>"$work/hand.err" || { cat "$work/hand.err" >&2; exit 1; }
    docker tag rdna1-bench:hand "rdna1-bench:hand-tagged"
    t2=$(now)
    hand+=("$(elapsed "$t1" "$t2")")
    # Both names: a tag left on this run's image would move to the next run's, leaving this
    # one dangling.
    docker rmi rdna1-bench:hand-tagged rdna1-bench:hand >/dev/null
  done
  local tm hm
  tm=$(printf '%s\n' "${tool[@]}" | median)
  hm=$(printf '%s\n' "${hand[@]}" | median)
  printf '  %-34s tool %7.2f s   by hand %7.2f s   ratio %.2fx   (runs: tool %s; hand %s)\n' \
    "$label" "$tm" "$hm" "$(awk -v a="$tm" -v b="$hm" 'BEGIN { print a / b }')" "${tool[*]}" "${hand[*]}"
  printf '  %-34s peak extra disk (tool scratch) %s bytes\n' "" "$(cat "$work/peak")"
  grep -h "timing" "$work/tool.err" | sed 's/^.*timing: /    breakdown: /'
  if [[ ${BENCH_SAVE_WAY:-1} == 1 ]]; then
    # Before: the same build with the whole image read from `docker save`.
    local v0 v1
    v0=$(now)
    RDNA1_IMAGES_NORMALISE=save TMPDIR=$tmp "$bin" --recipes "$work" -v build "$name" --smoke cpu --no-cache --force \
      >"$work/tool.out" 2>"$work/tool.err" || { cat "$work/tool.err" >&2; exit 1; }
    v1=$(now)
    printf '  %-34s save way (before) %.2f s, one run\n' "" "$(elapsed "$v0" "$v1")"
    grep -h "timing" "$work/tool.err" | sed 's/^.*timing: /    breakdown: /'
  fi
  # The skip path: the digest tag exists, nothing is built or tested.
  local s0 s1 s2
  s0=$(now)
  "$bin" --recipes "$work" -q build "$name" --smoke cpu >/dev/null
  s1=$(now)
  docker image inspect "rdna1-images:$name" >/dev/null
  s2=$(now)
  printf '  %-34s skip %.3f s   docker image inspect %.3f s\n' "" \
    "$(elapsed "$s0" "$s1")" "$(elapsed "$s1" "$s2")"
}

for h in $engines; do
  export DOCKER_HOST=$h
  echo "engine $h: Docker $(docker version --format '{{.Server.Version}}'), $(docker info --format '{{.Driver}} {{.DriverStatus}}')"
  bench_base "1.25 GB base (rdna1-test-base)" rdna1-test-base:bookworm small
  if [[ ${BENCH_SKIP_BIG:-0} != 1 ]]; then
    make_big_base
    bench_base "4 GB base (+ one 3 GB layer)" rdna1-bench-base:4g big
  fi
done
