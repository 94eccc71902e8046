#!/usr/bin/env bash
# Two real Docker registries on loopback for the push/pull tests, from Debian's
# docker-registry package (distribution 2.8), run by hand rather than as the
# system service so that each test run owns its config, storage and lifetime:
#
#   127.0.0.1:5000  no auth                           RDNA1_TEST_REGISTRY
#   127.0.0.1:5001  htpasswd (bcrypt), user rdna1     RDNA1_TEST_REGISTRY_AUTH
#                   password generated at start, in a mode-600 file
#                                                     RDNA1_TEST_REGISTRY_USER
#                                                     RDNA1_TEST_REGISTRY_PASSWORD_FILE
#
# Usage: ci/registry.sh start | stop | env | status | check
#   start   install what is missing, start both (fresh storage), wait for /v2/,
#           then `check` when the tiny test image exists; a no-op if both run
#   stop    kill both by pid file
#   env     print `export` lines for the variables above (eval "$(ci/registry.sh env)")
#   check   push the tiny image to :5000 and pull it back; `docker login` to :5001
#           and push there; so a broken engine/registry pairing fails here, loudly
#
# Loopback registries are insecure-allowed by the engine by default (127.0.0.0/8),
# so no daemon.json change is needed. State lives in $RDNA1_REGISTRY_DIR
# (default /tmp/rdna1-registry).
set -euo pipefail

DIR=${RDNA1_REGISTRY_DIR:-/tmp/rdna1-registry}
HOST=127.0.0.1
OPEN_PORT=5000
AUTH_PORT=5001
USER_NAME=rdna1
PASSWORD_FILE=$DIR/auth/password
TINY_IMAGE=${RDNA1_TEST_TINY:-rdna1-test-tiny:latest}

log() { printf 'registry: %s\n' "$*" >&2; }
die() { printf 'registry: error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=ci/lib/pidfile.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/pidfile.sh"

# HTTP status of GET /v2/ on a port, or 000 when nothing answers.
v2_status() {
    curl -s -o /dev/null -m 5 -w '%{http_code}' "http://$HOST:$1/v2/" 2>/dev/null || true
}

# The pid in a pid file, only if that process is still our registry (a pid can be reused).
live_pid() { pid_from_file "$DIR/$1.pid" "docker-registry serve $DIR/$1/config.yml"; }

installed_now=0
install_missing() {
    local missing=()
    command -v docker-registry >/dev/null || missing+=(docker-registry)
    command -v htpasswd >/dev/null || missing+=(apache2-utils)
    command -v curl >/dev/null || missing+=(curl)
    ((${#missing[@]})) || return 0
    [[ $(id -u) -eq 0 ]] || die "need root to install ${missing[*]}"
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    installed_now=1
}

write_config() {
    local name=$1 port=$2 auth=$3
    mkdir -p "$DIR/$name/data"
    {
        cat <<EOF
version: 0.1
log:
  level: info
  fields:
    service: rdna1-test-registry-$name
storage:
  filesystem:
    rootdirectory: $DIR/$name/data
  delete:
    enabled: true
http:
  addr: $HOST:$port
  headers:
    X-Content-Type-Options: [nosniff]
EOF
        if [[ $auth == yes ]]; then
            cat <<EOF
auth:
  htpasswd:
    realm: rdna1-test
    path: $DIR/$name/htpasswd
EOF
        fi
    } >"$DIR/$name/config.yml"
}

start_one() {
    local name=$1 port=$2 want=$3 pid status i
    if pid=$(live_pid "$name"); then
        log "$name registry already running (pid $pid) on $HOST:$port"
        return 0
    fi
    status=$(v2_status "$port")
    if [[ $status != 000 ]]; then
        if ((installed_now)) && command -v service >/dev/null; then
            # The package we just installed may have started its system service on :5000.
            log "port $port answers right after installing docker-registry: stopping its system service"
            service docker-registry stop >/dev/null 2>&1 || true
            sleep 1
            status=$(v2_status "$port")
        fi
        [[ $status == 000 ]] ||
            die "something else already answers on $HOST:$port (HTTP $status); stop it (the docker-registry system service?) or free the port"
    fi
    nohup docker-registry serve "$DIR/$name/config.yml" >>"$DIR/$name.log" 2>&1 </dev/null &
    pid=$!
    printf '%s\n' "$pid" >"$DIR/$name.pid"
    for ((i = 0; i < 100; i++)); do
        status=$(v2_status "$port")
        if [[ $status == "$want" ]]; then
            log "$name registry up on $HOST:$port (pid $pid, /v2/ -> $status)"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$DIR/$name.log" >&2; die "$name registry exited; see $DIR/$name.log"; }
        sleep 0.2
    done
    tail -n 20 "$DIR/$name.log" >&2
    die "$name registry on $HOST:$port did not answer /v2/ with $want within 20 s (last: $status)"
}

cmd_start() {
    install_missing
    mkdir -p "$DIR"
    chmod 700 "$DIR"
    if live_pid open >/dev/null && live_pid auth >/dev/null; then
        log "both registries already running"
        return 0
    fi
    # Fresh storage for every start so that no test sees another run's pushes.
    live_pid open >/dev/null || rm -rf "$DIR/open"
    live_pid auth >/dev/null || rm -rf "$DIR/auth"
    write_config open "$OPEN_PORT" no
    write_config auth "$AUTH_PORT" yes
    if ! live_pid auth >/dev/null; then
        (
            umask 077
            # 24 URL-safe characters, no trailing newline (nothing to trim for readers).
            head -c 18 /dev/urandom | base64 | tr -d '\n' | tr '+/' '-_' >"$PASSWORD_FILE"
        )
        chmod 600 "$PASSWORD_FILE"
        # -i reads the password from stdin, keeping it out of the process list.
        htpasswd -B -i -c "$DIR/auth/htpasswd" "$USER_NAME" <"$PASSWORD_FILE" 2>/dev/null ||
            die "htpasswd failed to write $DIR/auth/htpasswd"
    fi
    start_one open "$OPEN_PORT" 200
    start_one auth "$AUTH_PORT" 401
    if docker image inspect "$TINY_IMAGE" >/dev/null 2>&1; then
        cmd_check
    else
        log "$TINY_IMAGE not in the engine (ci/test-base.sh builds it): push/pull check skipped"
    fi
}

cmd_stop() {
    local name pid i
    for name in open auth; do
        if pid=$(live_pid "$name"); then
            kill "$pid"
            for ((i = 0; i < 50; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
            log "$name registry stopped (pid $pid)"
        fi
        rm -f "$DIR/$name.pid"
    done
}

cmd_env() {
    if ! live_pid open >/dev/null || ! live_pid auth >/dev/null; then
        log "warning: the registries are not running; run ci/registry.sh start"
    fi
    printf 'export RDNA1_TEST_REGISTRY=%s\n' "$HOST:$OPEN_PORT"
    printf 'export RDNA1_TEST_REGISTRY_AUTH=%s\n' "$HOST:$AUTH_PORT"
    printf 'export RDNA1_TEST_REGISTRY_USER=%s\n' "$USER_NAME"
    printf 'export RDNA1_TEST_REGISTRY_PASSWORD_FILE=%q\n' "$PASSWORD_FILE"
}

cmd_status() {
    local name port pid rc=0
    for name in open auth; do
        port=$OPEN_PORT
        [[ $name == auth ]] && port=$AUTH_PORT
        if pid=$(live_pid "$name"); then
            echo "$name: running, pid $pid, $HOST:$port, /v2/ -> $(v2_status "$port")"
        else
            echo "$name: not running"
            rc=1
        fi
    done
    return "$rc"
}

cmd_check() {
    local start=$SECONDS tag want got ref
    docker image inspect "$TINY_IMAGE" >/dev/null 2>&1 || die "$TINY_IMAGE missing; run ci/test-base.sh"
    tag=check-$$-$RANDOM
    want=$(docker image inspect -f '{{.Id}}' "$TINY_IMAGE")

    ref=$HOST:$OPEN_PORT/rdna1-ci-check/tiny:$tag
    docker tag "$TINY_IMAGE" "$ref"
    docker push -q "$ref" >/dev/null || { docker rmi "$ref" >/dev/null 2>&1 || true; die "docker push $ref failed"; }
    docker rmi "$ref" >/dev/null
    docker pull -q "$ref" >/dev/null || die "docker pull $ref failed"
    got=$(docker image inspect -f '{{.Id}}' "$ref")
    docker rmi "$ref" >/dev/null
    [[ $got == "$want" ]] || die "pulled $ref is $got, expected $want"

    # A throwaway client config, so the check never touches the user's ~/.docker.
    local cfg
    cfg=$(mktemp -d "$DIR/docker-config.XXXXXX")
    ref=$HOST:$AUTH_PORT/rdna1-ci-check/tiny:$tag
    if ! DOCKER_CONFIG=$cfg docker login -u "$USER_NAME" --password-stdin "$HOST:$AUTH_PORT" \
        <"$PASSWORD_FILE" >/dev/null 2>"$cfg/login.err"; then
        cat "$cfg/login.err" >&2
        rm -rf "$cfg"
        die "docker login $HOST:$AUTH_PORT failed"
    fi
    docker tag "$TINY_IMAGE" "$ref"
    if ! DOCKER_CONFIG=$cfg docker push -q "$ref" >/dev/null; then
        docker rmi "$ref" >/dev/null 2>&1 || true
        rm -rf "$cfg"
        die "docker push $ref (logged in) failed"
    fi
    docker rmi "$ref" >/dev/null
    DOCKER_CONFIG=$cfg docker logout "$HOST:$AUTH_PORT" >/dev/null 2>&1 || true
    rm -rf "$cfg"
    # Without credentials the auth registry must refuse.
    cfg=$(mktemp -d "$DIR/docker-config.XXXXXX")
    if DOCKER_CONFIG=$cfg docker pull -q "$ref" >/dev/null 2>&1; then
        docker rmi "$ref" >/dev/null 2>&1 || true
        rm -rf "$cfg"
        die "anonymous pull from $HOST:$AUTH_PORT succeeded; auth is not enforced"
    fi
    rm -rf "$cfg"
    log "engine push/pull via $HOST:$OPEN_PORT and login+push via $HOST:$AUTH_PORT ok ($((SECONDS - start)) s)"
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
env) cmd_env ;;
status) cmd_status ;;
check) cmd_check ;;
*)
    echo "usage: $0 start|stop|env|status|check" >&2
    exit 2
    ;;
esac
