#!/usr/bin/env bash
# Builds the local images the engine tests run on, because no image can be
# pulled on these machines (ARCHITECTURE.md section 6):
#
#   rdna1-test-base:bookworm  Debian bookworm (debootstrap, minbase) with python3,
#                             python3-torch (PyTorch 1.13.1, CPU) and python3-numpy;
#                             the CPU smoke test runs in it.      env: RDNA1_TEST_BASE
#   rdna1-test-base:trixie    the same from trixie: PyTorch 2.6.0, Python 3.13
#                                                         env: RDNA1_TEST_BASE_TRIXIE
#   rdna1-test-base:sid       the same from sid: PyTorch 2.14.1, Python 3.14
#                                                         env: RDNA1_TEST_BASE_SID
#     The three span the torch eras of the stacks (1.13, 2.4, 2.12): the conformance
#     suite's cpu level runs on each (src/smoke/program_tests.rs, `eras`).
#   rdna1-test-tiny:latest    a busybox-static rootfs of a few MB, for push/pull
#                             tests that want a small image.      env: RDNA1_TEST_TINY
#
# Each image is skipped when the engine already has it; RDNA1_TEST_REBUILD=1 rebuilds.
# The Debian mirror comes from this machine's apt configuration (RDNA1_TEST_MIRROR
# overrides it); no mirror host is written into the repository.
set -euo pipefail

BASE_IMAGE=${RDNA1_TEST_BASE:-rdna1-test-base:bookworm}
TRIXIE_IMAGE=${RDNA1_TEST_BASE_TRIXIE:-rdna1-test-base:trixie}
SID_IMAGE=${RDNA1_TEST_BASE_SID:-rdna1-test-base:sid}
TINY_IMAGE=${RDNA1_TEST_TINY:-rdna1-test-tiny:latest}
# RDNA1_TEST_BASES=bookworm limits the bases built (a space-separated list of suites).
BASES=${RDNA1_TEST_BASES:-bookworm trixie sid}
SUITE=bookworm
BASE_PACKAGES=(python3 python3-torch python3-numpy)
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# Some machines here point apt at a dated snapshot whose Release files have expired;
# the host's apt is told to accept that, so the chroot's apt must be too.
APT_OPTS=(-o Acquire::Check-Valid-Until=false -o Acquire::Check-Date=false -o Acquire::Retries=3)

log() { printf 'test-base: %s\n' "$*" >&2; }
die() { printf 'test-base: error: %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null || die "docker CLI not found; run ci/ensure-docker.sh first"
docker info >/dev/null 2>&1 || die "the Docker engine does not answer; run ci/ensure-docker.sh first"

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

apt_updated=0
apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    if ((!apt_updated)); then apt-get update -qq; apt_updated=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# shellcheck source=ci/lib/mirror.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/mirror.sh"

# Whole-image content goes through tar so that ownership, modes and links survive;
# /dev, /proc, /sys, /run are left empty (the engine mounts its own at run time).
import_rootfs() {
    local root=$1 image=$2 cmd=$3
    tar -C "$root" --numeric-owner --one-file-system \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' --exclude='./run/*' \
        -c . |
        docker import \
            --change "CMD $cmd" \
            --change "ENV PATH=$IMAGE_PATH" \
            --change "ENV LANG=C.UTF-8" \
            - "$image" >/dev/null
}

WORK=$(mktemp -d /tmp/rdna1-test-base.XXXXXX)
cleanup() {
    local m
    # Unmount whatever is still mounted under the work folder before deleting it,
    # so that rm never walks into the host's /proc.
    while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done < <(awk -v w="$WORK/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r)
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT

# build_base SUITE IMAGE
build_base() {
    local SUITE=$1 BASE_IMAGE=$2
    local mirror root start=$SECONDS
    # A machine's apt names its own suite only: the same archive serves the others, so
    # take the mirror of the first suite apt knows (checked: trixie and sid resolve there).
    mirror=${RDNA1_TEST_MIRROR:-$(find_mirror "$SUITE" | head -n1)}
    [[ -n $mirror ]] || mirror=$(find_mirror bookworm | head -n1)
    [[ -n $mirror ]] || die "no Debian mirror for '$SUITE' found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list; add a '$SUITE' source to apt, or set RDNA1_TEST_MIRROR"
    log "building $BASE_IMAGE from the apt-configured mirror for $SUITE"
    apt_install debootstrap debian-archive-keyring wget ca-certificates

    root=$WORK/base-$SUITE
    log "debootstrap --variant=minbase $SUITE (log: $WORK/debootstrap.log)"
    if ! debootstrap --variant=minbase "$SUITE" "$root" "$mirror" >"$WORK/debootstrap.log" 2>&1; then
        tail -n 30 "$WORK/debootstrap.log" >&2
        [[ -f $root/debootstrap/debootstrap.log ]] && tail -n 30 "$root/debootstrap/debootstrap.log" >&2
        die "debootstrap failed"
    fi
    log "debootstrap done in $((SECONDS - start)) s"

    # python3-torch pulls a deep dependency tree with alternatives and virtual
    # packages; the chroot's apt resolves those, debootstrap's --include does not
    # reliably.
    printf 'deb %s %s main\n' "$mirror" "$SUITE" >"$root/etc/apt/sources.list"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    mount -t proc proc "$root/proc"
    log "apt-get install ${BASE_PACKAGES[*]} in the chroot (log: $WORK/apt.log)"
    if ! {
        chroot "$root" apt-get "${APT_OPTS[@]}" update &&
            DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get "${APT_OPTS[@]}" install -y \
                --no-install-recommends "${BASE_PACKAGES[@]}"
    } >"$WORK/apt.log" 2>&1; then
        tail -n 30 "$WORK/apt.log" >&2
        die "installing ${BASE_PACKAGES[*]} in the chroot failed"
    fi
    chroot "$root" apt-get clean
    umount "$root/proc"
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/debconf/*-old \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
        "$root"/var/log/apt/* "$root"/var/log/dpkg.log "$root"/tmp/* "$root/usr/sbin/policy-rc.d"
    : >"$root/etc/resolv.conf"
    log "packages installed in $((SECONDS - start)) s; importing"

    import_rootfs "$root" "$BASE_IMAGE" '["/bin/bash"]'
    rm -rf --one-file-system "$root"
    log "$BASE_IMAGE built in $((SECONDS - start)) s ($(image_size "$BASE_IMAGE"))"
}

build_tiny() {
    local TINY_IMAGE=$1
    local root deb applet start=$SECONDS
    log "building $TINY_IMAGE from Debian's busybox-static"
    if ((!apt_updated)); then apt-get update -qq; apt_updated=1; fi
    mkdir -p "$WORK/debs"
    # apt-get download writes to the current folder, which its _apt sandbox user
    # may not be able to write: download as root.
    (cd "$WORK/debs" && apt-get download -qq -o APT::Sandbox::User=root busybox-static) ||
        die "apt-get download busybox-static failed"
    deb=$(find "$WORK/debs" -name 'busybox-static_*.deb' | head -n1)
    [[ -n $deb ]] || die "busybox-static .deb not found after download"

    root=$WORK/tiny
    mkdir -p "$root"
    dpkg-deb -x "$deb" "$root"
    [[ -x $root/bin/busybox ]] || die "busybox-static has no /bin/busybox"
    rm -rf "$root/usr/share/doc" "$root/usr/share/man"
    # busybox --list-full prints each applet's path (bin/sh, usr/bin/env, ...);
    # busybox-static is a static binary, so the host can run it to ask.
    while read -r applet; do
        [[ -n $applet && $applet != bin/busybox ]] || continue
        mkdir -p "$root/$(dirname "$applet")"
        [[ -e $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
    done < <("$root/bin/busybox" --list-full)
    [[ -L $root/bin/sh ]] || ln -s /bin/busybox "$root/bin/sh"
    mkdir -p "$root"/{etc,tmp,root,dev,proc,sys}
    chmod 1777 "$root/tmp"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

    import_rootfs "$root" "$TINY_IMAGE" '["/bin/sh"]'
    log "$TINY_IMAGE built in $((SECONDS - start)) s ($(image_size "$TINY_IMAGE"))"
}

image_size() {
    docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.1f MB", $1 / 1000000}'
}

total=$SECONDS
pairs=()
for suite in $BASES; do
    case $suite in
    bookworm) pairs+=("base bookworm:$BASE_IMAGE") ;;
    trixie) pairs+=("base trixie:$TRIXIE_IMAGE") ;;
    sid) pairs+=("base sid:$SID_IMAGE") ;;
    *) die "RDNA1_TEST_BASES: unknown suite '$suite' (bookworm, trixie, sid)" ;;
    esac
done
pairs+=("tiny:$TINY_IMAGE")
for pair in "${pairs[@]}"; do
    kind=${pair%%:*} image=${pair#*:}
    if [[ ${RDNA1_TEST_REBUILD:-0} != 1 ]] && image_exists "$image"; then
        log "$image present ($(image_size "$image")), skipping"
        continue
    fi
    [[ $(id -u) -eq 0 ]] || die "$image is missing and building it needs root (debootstrap, chroot, apt-get)"
    # shellcheck disable=SC2086 # "base SUITE" splits into the function and its suite
    build_$kind "$image"
done
log "done in $((SECONDS - total)) s"
