#!/usr/bin/env bash
# Frees disk on a GitHub-hosted runner before a ROCm image build, and fails early, with the
# numbers, when it still cannot have NEED_GB free where Docker keeps its data. Far better than
# an hour of downloading followed by "no space left on device".
#
# Usage: ci/nightly-free-disk.sh NEED_GB
#
# What rocm52 needs (the default in nightly.yml asks 30 GB): the PyTorch 1.13.1+rocm5.2
# wheel is about 1.6 GB to download and about 8 GB installed (it bundles the ROCm 5.2
# userspace: MIOpen, rocBLAS/Tensile, ...), so the image is about 9 GB; the build holds
# the download and the layer at once, the push writes compressed layers (~2 GB), and syft's
# SBOM saves the image to a tar on the same disk (~9 GB): about 20 GB at peak, plus headroom.
# What it gets: a hosted ubuntu-24.04 runner starts with roughly 20 GB free on / of 72 GB;
# the toolchains removed below (Android SDK, .NET, Haskell, CodeQL, Swift, PowerShell, JVMs,
# cached Docker images) add roughly 25 GB. Those are typical published figures, not measured
# from here (no hosted runner can be reached from the development machines): the table this
# script writes into the job summary each night is the measurement.
#
# Only removes things on a runner (GITHUB_ACTIONS=true and RUNNER_ENVIRONMENT=github-hosted),
# never on a self-hosted one or a developer's machine; elsewhere it only reports.
set -euo pipefail

need_gb=${1:?usage: $0 NEED_GB}
[[ $need_gb =~ ^[0-9]+$ ]] || { echo "nightly-free-disk: NEED_GB must be a whole number" >&2; exit 2; }

docker_root=$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || echo /var/lib/docker)
probe=$docker_root
[[ -e $probe ]] || probe=/
free_gb() { df -P -B1G "$probe" | awk 'NR == 2 { print $4 }'; }

summary() {
    if [[ -n ${GITHUB_STEP_SUMMARY:-} ]]; then tee -a "$GITHUB_STEP_SUMMARY"; else cat; fi
}

before=$(free_gb)
rows=()
if [[ ${GITHUB_ACTIONS:-} == true && ${RUNNER_ENVIRONMENT:-} == github-hosted ]]; then
    sudo_=()
    [[ $(id -u) -eq 0 ]] || sudo_=(sudo)
    for path in /usr/local/lib/android /usr/share/dotnet /opt/ghc /usr/local/.ghcup \
        /opt/hostedtoolcache/CodeQL /usr/share/swift /usr/local/share/powershell \
        /usr/local/share/chromium /usr/local/share/boost /usr/lib/jvm /opt/microsoft /opt/google; do
        [[ -e $path ]] || continue
        was=$(free_gb)
        "${sudo_[@]}" rm -rf "$path"
        rows+=("| \`$path\` | $(($(free_gb) - was)) |")
    done
    was=$(free_gb)
    docker image prune -af >/dev/null 2>&1 || true
    docker builder prune -af >/dev/null 2>&1 || true
    rows+=("| cached Docker images and build cache | $(($(free_gb) - was)) |")
else
    echo "nightly-free-disk: not a GitHub-hosted runner: nothing removed, only measured" >&2
fi
after=$(free_gb)

{
    printf '### Disk for the build (%s)\n\n' "$docker_root"
    printf 'Needs %s GB free; had %s GB, now %s GB.\n\n' "$need_gb" "$before" "$after"
    if ((${#rows[@]})); then
        printf '| removed | GB freed |\n|---|---|\n'
        printf '%s\n' "${rows[@]}"
        printf '\n'
    fi
} | summary

if ((after < need_gb)); then
    echo "nightly-free-disk: error: only $after GB free under $docker_root after clean-up, the build needs $need_gb GB" >&2
    exit 1
fi
