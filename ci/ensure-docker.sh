#!/usr/bin/env bash
# Makes sure a Docker engine answers `docker info`. Quiet and quick when one does
# (the usual case: these machines start the engine before a session). Otherwise it
# installs Debian's docker.io if dockerd is missing and starts dockerd in the
# background, logging to $RDNA1_DOCKERD_LOG, then waits up to
# $RDNA1_DOCKERD_WAIT seconds for it to answer.
#
# RDNA1_DOCKERD_ARGS adds arguments to dockerd (word-split), e.g. to start a
# second engine on its own socket: -H unix:///tmp/x.sock --data-root /tmp/x ...
set -euo pipefail

LOG=${RDNA1_DOCKERD_LOG:-/tmp/rdna1-dockerd.log}
WAIT=${RDNA1_DOCKERD_WAIT:-60}

log() { printf 'ensure-docker: %s\n' "$*" >&2; }
die() { printf 'ensure-docker: error: %s\n' "$*" >&2; exit 1; }

engine_answers() { command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; }

# The default bridge network names a Linux bridge (docker0) that dockerd made at its start.
# Another dockerd started with --bridge=none (ci/engines.sh's classic 28.5 engine) deletes docker0
# at its own start (moby's removeDefaultBridgeInterface); after that every published port of
# this engine fails ("could not find bridge docker0"), and `rdna1-images run` of an app
# cannot publish its port. ci/engines.sh start calls this script again for that reason. Made again as dockerd makes it: the name, the subnet's first address, the MTU.
# Only for the default engine (RDNA1_DOCKERD_ARGS engines have their own network set-up).
repair_default_bridge() {
    [[ -z ${RDNA1_DOCKERD_ARGS:-} ]] || return 0
    local name subnet gateway mtu
    name=$(timeout 20 docker network inspect bridge \
        --format '{{index .Options "com.docker.network.bridge.name"}}' 2>/dev/null) || return 0
    [[ $name =~ ^[a-zA-Z0-9_.-]{1,15}$ ]] || return 0
    ip link show "$name" >/dev/null 2>&1 && return 0
    if [[ $(id -u) -ne 0 ]] || ! command -v ip >/dev/null; then
        log "the engine's bridge $name is missing, so no port can be published; only root with iproute2 can make it again"
        return 0
    fi
    subnet=$(timeout 20 docker network inspect bridge --format '{{range .IPAM.Config}}{{.Subnet}} {{end}}')
    gateway=$(timeout 20 docker network inspect bridge --format '{{range .IPAM.Config}}{{.Gateway}} {{end}}')
    mtu=$(timeout 20 docker network inspect bridge --format '{{index .Options "com.docker.network.driver.mtu"}}')
    read -r subnet _ <<<"$subnet"
    read -r gateway _ <<<"${gateway:-}"
    if [[ ! $subnet =~ ^([0-9]+\.[0-9]+\.[0-9]+)\.0/([0-9]+)$ ]]; then
        log "the engine's bridge $name is missing and its subnet '$subnet' is not one this script can set up; published ports will fail"
        return 0
    fi
    local prefix=${BASH_REMATCH[1]} bits=${BASH_REMATCH[2]}
    gateway=${gateway:-$prefix.1}
    ip link add "$name" type bridge
    ip addr add "$gateway/$bits" dev "$name"
    [[ $mtu =~ ^[0-9]+$ ]] && ip link set "$name" mtu "$mtu"
    ip link set "$name" up
    log "made the engine's missing bridge $name again ($gateway/$bits, mtu ${mtu:-default})"
}

engine_answers && { repair_default_bridge; exit 0; }

[[ $(id -u) -eq 0 ]] || die "the Docker engine does not answer and only root can install or start it"

if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
    log "installing Debian's docker.io"
    apt-get update -qq
    # policy-rc.d or no init system: the package's own service may not start, so
    # dockerd is started by hand below either way.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
    engine_answers && { log "engine answers after install"; repair_default_bridge; exit 0; }
fi

# A dockerd may already be running but still starting up (or wedged): do not
# start a second one on the same socket, only wait for it.
# Only the default daemon counts: ci/engines.sh runs other dockerds on their own
# sockets, and a pgrep by name would take one of those for this one.
default_dockerd_alive() {
    local pid
    [[ -r /var/run/docker.pid ]] || return 1
    pid=$(</var/run/docker.pid)
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
        [[ $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) == *dockerd* ]]
}
if [[ -z ${RDNA1_DOCKERD_ARGS:-} ]] && default_dockerd_alive; then
    log "dockerd is running but does not answer yet; waiting"
else
    log "starting dockerd (log: $LOG)"
    # shellcheck disable=SC2086 # RDNA1_DOCKERD_ARGS is a word-split list on purpose
    nohup dockerd ${RDNA1_DOCKERD_ARGS:-} >>"$LOG" 2>&1 </dev/null &
    pid=$!
    disown "$pid" 2>/dev/null || true
fi

for ((i = 0; i < WAIT; i++)); do
    if engine_answers; then
        log "engine answers after ${i} s"
        repair_default_bridge
        exit 0
    fi
    if [[ -n ${pid:-} ]] && ! kill -0 "$pid" 2>/dev/null; then
        tail -n 20 "$LOG" >&2 || true
        die "dockerd exited during start-up; see $LOG"
    fi
    sleep 1
done
tail -n 20 "$LOG" >&2 || true
die "the Docker engine did not answer within ${WAIT} s; see $LOG"
