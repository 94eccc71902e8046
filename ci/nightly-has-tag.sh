#!/usr/bin/env bash
# Is REPO:TAG in the registry? Asks the registry's HTTP API (HEAD /v2/<name>/manifests/<tag>)
# rather than `docker manifest inspect`, because the CLI reports "no such manifest" for a
# registry it could not reach at all (seen with docker 28 on a plain-HTTP loopback registry
# without --insecure), and a nightly that mistakes "unreachable" for "absent" rebuilds for
# hours. Here 200 is present, 404 is absent, and anything else is an error, except where a
# registry is known to answer "denied" for a package that does not exist:
#
#   GHCR (ghcr.io)  401 (also from its token endpoint) and 403 mean "private or missing
#                   package": anonymously GHCR refuses a token for a package that is not
#                   public or not there (openai/tunnel-client#75, strausmann/mcp-dockhand#3),
#                   and with credentials it answers DENIED rather than 404
#                   (renovatebot/renovate#11446). The first nightly meets exactly this, so
#                   it counts as absent; the push then says whether access was the problem.
#   any other       401 and 403 are errors: wrong credentials are not "absent".
#
# An outage (no answer, 5xx, 429, anything else) is an error on every registry.
# RDNA1_REGISTRY_KIND=ghcr|generic overrides the choice made from the host (the tests use it
# to speak GHCR's answers from a loopback server).
#
# Usage: ci/nightly-has-tag.sh HOST[:PORT]/NAME:TAG
#   exit 0  present; prints the manifest digest (sha256:...) on stdout
#   exit 1  absent
#   exit 3  the registry did not answer as a registry (unreachable, auth refused, 5xx)
#   exit 2  bad usage
#
# Auth: anonymous first; on 401 with a Bearer challenge (GHCR and most hosted registries) a
# token is fetched from the challenge's realm, with RDNA1_REGISTRY_USER and
# RDNA1_REGISTRY_PASSWORD when set (GHCR: the actor and the workflow token); on 401 with a
# Basic challenge (a plain htpasswd registry) the same credentials are sent directly. The
# password reaches curl on stdin, never on its command line.
# Loopback registries (127.0.0.0/8, localhost, [::1]) are spoken to over plain HTTP, as the
# engine does; everything else over HTTPS.
set -euo pipefail

die() { printf 'nightly-has-tag: error: %s\n' "$*" >&2; exit 3; }

[[ $# -eq 1 ]] || { echo "usage: $0 HOST[:PORT]/NAME:TAG" >&2; exit 2; }
ref=$1
host=${ref%%/*}
rest=${ref#*/}
[[ $host != "$ref" && $rest == *:* && $host == *[.:]* ]] ||
    { echo "nightly-has-tag: '$ref' is not HOST[:PORT]/NAME:TAG" >&2; exit 2; }
name=${rest%:*}
tag=${rest##*:}

case $host in
127.* | localhost | localhost:* | '[::1]' | '[::1]:'*) scheme=http ;;
*) scheme=https ;;
esac
url=$scheme://$host/v2/$name/manifests/$tag

kind=${RDNA1_REGISTRY_KIND:-}
if [[ -z $kind ]]; then
    case $host in ghcr.io) kind=ghcr ;; *) kind=generic ;; esac
fi
[[ $kind == ghcr || $kind == generic ]] || { echo "nightly-has-tag: RDNA1_REGISTRY_KIND='$kind' is not ghcr or generic" >&2; exit 2; }

# A refusal (HTTP 401/403) on a registry that says "denied" for a missing package: absent.
denied_means_absent() { # status, what was refused
    [[ $kind == ghcr ]] || return 0
    echo "nightly-has-tag: $host answered $1 for $2 (GHCR: a private or missing package): treated as absent" >&2
    exit 1
}

accept=(
    -H 'Accept: application/vnd.oci.image.index.v1+json'
    -H 'Accept: application/vnd.oci.image.manifest.v1+json'
    -H 'Accept: application/vnd.docker.distribution.manifest.list.v2+json'
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json'
)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# curl config on stdin: credentials never appear in the process list.
creds_config() {
    if [[ -n ${RDNA1_REGISTRY_USER:-} && -n ${RDNA1_REGISTRY_PASSWORD:-} ]]; then
        printf 'user = "%s:%s"\n' "$RDNA1_REGISTRY_USER" "$RDNA1_REGISTRY_PASSWORD"
    fi
}

# HEAD the manifest; headers to $work/headers, HTTP status on stdout (000: no answer).
head_manifest() {
    curl -sS -o /dev/null -D "$work/headers" -w '%{http_code}' -m 30 -I "${accept[@]}" "$@" "$url" 2>"$work/curl.err" || true
}

status=$(head_manifest)
if [[ $status == 401 ]]; then
    challenge=$(tr -d '\r' <"$work/headers" | awk 'tolower($1) == "www-authenticate:" { $1 = ""; sub(/^ /, ""); print; exit }')
    case $challenge in
    [Bb]earer*)
        param() { sed -n "s/.*$1=\"\\([^\"]*\\)\".*/\\1/p" <<<"$challenge"; }
        realm=$(param realm)
        service=$(param service)
        scope=$(param scope)
        [[ -n $realm ]] || die "$host asked for a bearer token without a realm: $challenge"
        [[ -n $scope ]] || scope="repository:$name:pull"
        token_status=$(creds_config | curl -sS -o "$work/token.json" -w '%{http_code}' -m 30 -K - -G \
            --data-urlencode "service=$service" --data-urlencode "scope=$scope" "$realm" 2>"$work/curl.err") || true
        case $token_status in
        200) ;;
        401 | 403) denied_means_absent "$token_status" "a token to pull $name"
            die "$realm refused a token to pull $name (HTTP $token_status); check RDNA1_REGISTRY_USER/RDNA1_REGISTRY_PASSWORD" ;;
        000) die "token request to $realm got no answer: $(<"$work/curl.err")" ;;
        *) die "token request to $realm answered HTTP $token_status" ;;
        esac
        token_json=$(<"$work/token.json")
        token=$(jq -r '.token // .access_token // empty' <<<"$token_json")
        [[ -n $token ]] || die "no token in the answer from $realm"
        status=$(printf 'header = "Authorization: Bearer %s"\n' "$token" | head_manifest -K -)
        ;;
    [Bb]asic*)
        [[ -n ${RDNA1_REGISTRY_USER:-} ]] || die "$host wants credentials: set RDNA1_REGISTRY_USER and RDNA1_REGISTRY_PASSWORD"
        status=$(creds_config | head_manifest -K -)
        ;;
    *) die "$host answered 401 with an unknown challenge: ${challenge:-none}" ;;
    esac
fi

case $status in
200)
    digest=$(tr -d '\r' <"$work/headers" | awk 'tolower($1) == "docker-content-digest:" { print $2; exit }')
    printf '%s\n' "${digest:-unknown}"
    exit 0
    ;;
404) exit 1 ;;
000) die "$host did not answer ($url): $(<"$work/curl.err")" ;;
401)
    denied_means_absent 401 "$name"
    die "$host refused the credentials for $name (HTTP 401); check RDNA1_REGISTRY_USER/RDNA1_REGISTRY_PASSWORD"
    ;;
403)
    denied_means_absent 403 "$name"
    die "$host denied access to $name (HTTP 403): the credentials may not read it; check RDNA1_REGISTRY_USER/RDNA1_REGISTRY_PASSWORD"
    ;;
*) die "$host answered HTTP $status for $url" ;;
esac
