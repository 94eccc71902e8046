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

engine_answers && exit 0

[[ $(id -u) -eq 0 ]] || die "the Docker engine does not answer and only root can install or start it"

if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
    log "installing Debian's docker.io"
    apt-get update -qq
    # policy-rc.d or no init system: the package's own service may not start, so
    # dockerd is started by hand below either way.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
    engine_answers && { log "engine answers after install"; exit 0; }
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
