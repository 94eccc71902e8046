#!/usr/bin/env bash
# Current Docker engines beside the machine's own (Debian bookworm's 20.10), so the
# engine tests also run against what users have: Debian sid's docker.io 28.5 with
# containerd 2.1, started twice from the same unpacked packages:
#
#   classic     the classic image store, storage driver overlay2 (what a stock install
#               uses; RDNA1_ENGINES_CLASSIC_DRIVER=vfs where the kernel has no overlay)
#               socket $DIR/classic/docker.sock              RDNA1_ENGINE_CLASSIC
#   containerd  the containerd image store (containerd-snapshotter), as fresh
#               Docker 29 installs and Docker Desktop use it
#               socket $DIR/containerd/docker.sock           RDNA1_ENGINE_CONTAINERD
#
# Usage: ci/engines.sh start [NAME...] | stop [NAME...] | alive NAME... | status | env | hosts
#   start   fetch and unpack the packages once (a throwaway sources list for sid on
#           the machine's own Debian mirror), start each daemon on its own socket,
#           data root, exec root, pid file and config file, wait for it, then copy
#           the test images in (docker save | docker load); a no-op for a running one
#   stop    stop the daemons this script started (by pid file), then their containerd
#   alive   exit 0 when each named engine's dockerd runs (answering or not), else 1
#   env     `export` lines for the variables above (eval "$(ci/engines.sh env)")
#   hosts   one `name DOCKER_HOST` line per running engine, the machine's first
#
# Why these flags: the machine's /etc/docker/daemon.json sets data-root and
# storage-driver, which conflict with flags, so each daemon gets a config file of
# its own; iptables belongs to the machine's engine, hence --iptables=false. The daemons
# share the host's network namespace, so docker0 (the machine engine's bridge) is not
# theirs either. Networks differ on purpose, so `run <app>` is proven both ways:
#   containerd  its own bridge, rdna1-ctd0 ($RDNA1_ENGINES_CONTAINERD_NET, default
#               10.231.2.1/24), made here before the start and deleted at stop: ports
#               publish as on a stock install (docker-proxy carries 127.0.0.1:PORT to
#               the container, no iptables needed), and the host reaches them
#   classic     --bridge=none: an engine that publishes nothing, where `run` must refuse
# sid's runc needs glibc 2.38, so the machine's own runc runs the containers (dockerd and
# containerd 2.1 run on bookworm's glibc).
# State lives in $RDNA1_ENGINES_DIR (default /tmp/rdna1-engines); the mirror comes
# from apt's configuration (RDNA1_ENGINES_MIRROR overrides it) and is never written
# into the repository.
set -euo pipefail

CI_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${RDNA1_ENGINES_DIR:-/tmp/rdna1-engines}
PKG=$DIR/pkg
ROOT=$PKG/root
ALL_ENGINES=(classic containerd)
PACKAGES=(docker.io containerd docker-buildx)
WAIT=${RDNA1_ENGINES_WAIT:-90}
IMAGES=("${RDNA1_TEST_BASE:-rdna1-test-base:bookworm}" "${RDNA1_TEST_TINY:-rdna1-test-tiny:latest}")

log() { printf 'engines: %s\n' "$*" >&2; }
die() { printf 'engines: error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=ci/lib/mirror.sh
source "$CI_DIR/lib/mirror.sh"
# shellcheck source=ci/lib/pidfile.sh
source "$CI_DIR/lib/pidfile.sh"

sock() { printf '%s/%s/docker.sock\n' "$DIR" "$1"; }
host_of() { printf 'unix://%s\n' "$(sock "$1")"; }

# The pid in a pid file, only while that process is still our dockerd for $1.
live_pid() { pid_from_file "$DIR/$1/dockerd.pid" "--config-file $DIR/$1/daemon.json"; }

answers() { DOCKER_HOST=$(host_of "$1") timeout 20 docker info >/dev/null 2>&1; }

fetch_packages() {
    [[ -x $ROOT/usr/sbin/dockerd && -x $ROOT/usr/bin/containerd ]] && return 0
    [[ $(id -u) -eq 0 ]] || die "fetching ${PACKAGES[*]} needs root (apt-get, dpkg-deb)"
    local mirror apt=$PKG/apt deb
    mirror=${RDNA1_ENGINES_MIRROR:-$(find_mirror bookworm | head -n1)}
    [[ -n $mirror ]] || die "no Debian mirror found in apt's configuration; set RDNA1_ENGINES_MIRROR"
    rm -rf "$apt" "$ROOT" "$PKG/debs"
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/sources.list.d" "$PKG/debs"
    : >"$apt/status"
    printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s sid main\n' "$mirror" >"$apt/sources.list"
    # A private apt state: the machine's own package lists and sources stay as they were.
    local -a opts=(
        -o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/sources.list.d"
        -o "Dir::State::Lists=$apt/lists" -o "Dir::State::status=$apt/status"
        -o "Dir::Cache=$apt/cache" -o Acquire::Check-Valid-Until=false -o Acquire::Retries=3
        -o APT::Sandbox::User=root
    )
    log "fetching ${PACKAGES[*]} from sid (apt's configured mirror)"
    apt-get "${opts[@]}" -qq update || die "apt-get update for sid failed"
    (cd "$PKG/debs" && apt-get "${opts[@]}" -qq download "${PACKAGES[@]}") || die "apt-get download ${PACKAGES[*]} failed"
    mkdir -p "$ROOT"
    for deb in "$PKG"/debs/*.deb; do dpkg-deb -x "$deb" "$ROOT"; done
    rm -rf "$apt"
    [[ -x $ROOT/usr/sbin/dockerd ]] || die "the unpacked docker.io has no usr/sbin/dockerd"
    log "unpacked $("$ROOT/usr/sbin/dockerd" --version)"
}

# The --bridge value for engine $1: its own bridge (made here when missing), or none.
bridge_of() {
    case $1 in
    containerd) printf 'rdna1-ctd0\n' ;;
    *) printf 'none\n' ;;
    esac
}

# Makes bridge $2 for engine $1 with its address (gateway/bits), unless it is there with it.
make_bridge() {
    local name=$1 br=$2 net
    [[ $br == none ]] && return 0
    net=${RDNA1_ENGINES_CONTAINERD_NET:-10.231.2.1/24}
    [[ $net =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+/[0-9]+$ ]] ||
        die "RDNA1_ENGINES_CONTAINERD_NET '$net' is not an IPv4 address with its prefix length (e.g. 10.231.2.1/24)"
    if ip link show "$br" >/dev/null 2>&1; then
        ip -o -4 addr show dev "$br" | grep -qF " $net " && return 0
        die "$name: bridge $br is there without $net (ip addr show $br); delete it or set RDNA1_ENGINES_CONTAINERD_NET to its address"
    fi
    if [[ $(id -u) -ne 0 ]] || ! command -v ip >/dev/null; then
        die "$name: its bridge $br is missing and only root with iproute2 can make it"
    fi
    # Another interface on that subnet would take the engine's traffic: say so, not fail late.
    if ip -o -4 route show to match "${net%/*}" | grep -v '^default' | grep -q .; then
        die "$name: $net is already routed here ($(ip -o -4 route show to match "${net%/*}" | grep -v '^default' | head -n 1)); set RDNA1_ENGINES_CONTAINERD_NET to a free subnet"
    fi
    ip link add "$br" type bridge
    ip addr add "$net" dev "$br"
    ip link set "$br" up
    log "$name: made its bridge $br ($net)"
}

write_config() {
    local name=$1 d=$DIR/$1
    mkdir -p "$d/data" "$d/exec" "$d/containerd"
    case $name in
    # overlay2, not vfs: vfs copies the whole 1.25 GB base for every layer and every
    # build-cache record, which filled a 80 GB disk during one engine-test run here.
    classic) printf '{"storage-driver":"%s","features":{"containerd-snapshotter":false}}\n' "${RDNA1_ENGINES_CLASSIC_DRIVER:-overlay2}" >"$d/daemon.json" ;;
    containerd) printf '{"features":{"containerd-snapshotter":true}}\n' >"$d/daemon.json" ;;
    *) die "unknown engine '$name' (known: ${ALL_ENGINES[*]})" ;;
    esac
}

copy_images() {
    local name=$1 image
    for image in "${IMAGES[@]}"; do
        docker image inspect "$image" >/dev/null 2>&1 || { log "$image is not on the machine's engine (run ci/test-base.sh); not copied"; continue; }
        DOCKER_HOST=$(host_of "$name") docker image inspect "$image" >/dev/null 2>&1 && continue
        log "$name: copying $image in"
        docker save "$image" | DOCKER_HOST=$(host_of "$name") docker load -q >/dev/null ||
            die "$name: docker save | docker load of $image failed"
    done
}

start_one() {
    local name=$1 d=$DIR/$1 pid i start=$SECONDS
    if live_pid "$name" >/dev/null && answers "$name"; then
        log "$name already answers on $(host_of "$name")"
        copy_images "$name"
        return 0
    fi
    write_config "$name"
    make_bridge "$name" "$(bridge_of "$name")"
    rm -f "$(sock "$name")"
    # Our unpacked containerd and its shim first on PATH, then the machine's runc.
    PATH=$ROOT/usr/bin:$ROOT/usr/sbin:$PATH nohup "$ROOT/usr/sbin/dockerd" \
        --config-file "$d/daemon.json" \
        --host "$(host_of "$name")" \
        --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/dockerd.pid" \
        --iptables=false --ip6tables=false --bridge="$(bridge_of "$name")" \
        >>"$d/dockerd.log" 2>&1 </dev/null &
    pid=$!
    disown "$pid" 2>/dev/null || true
    for ((i = 0; i < WAIT; i++)); do
        answers "$name" && break
        kill -0 "$pid" 2>/dev/null || { tail -n 30 "$d/dockerd.log" >&2; die "$name: dockerd exited during start-up; see $d/dockerd.log"; }
        sleep 1
    done
    answers "$name" || { tail -n 30 "$d/dockerd.log" >&2; die "$name: dockerd did not answer within $WAIT s; see $d/dockerd.log"; }
    log "$name answers on $(host_of "$name") after $((SECONDS - start)) s ($(DOCKER_HOST=$(host_of "$name") docker info --format '{{.ServerVersion}}, driver {{.Driver}}'))"
    copy_images "$name"
}

stop_one() {
    local name=$1 pid i
    pid=$(live_pid "$name") || { log "$name is not running"; return 0; }
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
    # dockerd stops the containerd it started; make sure none of ours lingers.
    pkill -f "containerd --config $DIR/$name/" 2>/dev/null || true
    pkill -f "$DIR/$name/exec/containerd" 2>/dev/null || true
    local br
    br=$(bridge_of "$name")
    [[ $br == none ]] || ! ip link show "$br" >/dev/null 2>&1 || ip link del "$br" || true
    log "$name stopped"
}

names_or_all() {
    if (($#)); then printf '%s\n' "$@"; else printf '%s\n' "${ALL_ENGINES[@]}"; fi
}

cmd_start() {
    fetch_packages
    local name
    while read -r name; do start_one "$name"; done < <(names_or_all "$@")
    # A dockerd started with --bridge=none deletes the host's docker0 at its start (moby's
    # removeDefaultBridgeInterface), which is the machine engine's bridge: every port that
    # engine publishes fails after it. ensure-docker.sh makes it again (a no-op when there).
    env -u DOCKER_HOST -u RDNA1_DOCKERD_ARGS bash "$CI_DIR/ensure-docker.sh"
}

cmd_stop() {
    local name
    while read -r name; do stop_one "$name"; done < <(names_or_all "$@")
}

cmd_env() {
    printf 'export RDNA1_ENGINE_CLASSIC=%s\n' "$(host_of classic)"
    printf 'export RDNA1_ENGINE_CONTAINERD=%s\n' "$(host_of containerd)"
}

cmd_hosts() {
    local name
    printf 'machine %s\n' "${DOCKER_HOST:-unix:///var/run/docker.sock}"
    for name in "${ALL_ENGINES[@]}"; do
        live_pid "$name" >/dev/null && answers "$name" && printf '%s %s\n' "$name" "$(host_of "$name")"
    done
    return 0
}

cmd_status() {
    local name rc=0
    for name in "${ALL_ENGINES[@]}"; do
        if live_pid "$name" >/dev/null && answers "$name"; then
            printf '%s: running on %s (%s)\n' "$name" "$(host_of "$name")" \
                "$(DOCKER_HOST=$(host_of "$name") docker info --format '{{.ServerVersion}}, driver {{.Driver}}')"
        else
            printf '%s: not running\n' "$name"
            rc=1
        fi
    done
    return "$rc"
}

case ${1:-} in
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
env) cmd_env ;;
hosts) cmd_hosts ;;
status) cmd_status ;;
alive) shift; for name in "$@"; do live_pid "$name" >/dev/null || exit 1; done ;;
*) die "usage: ci/engines.sh start [classic|containerd...] | stop [...] | alive NAME... | status | env | hosts" ;;
esac
