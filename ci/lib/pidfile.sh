# Shared by ci/engines.sh and ci/registry.sh, which each keep a daemon of their own in a
# pid file: whether the pid in that file is still that daemon.
# shellcheck shell=bash

# Prints the pid in PIDFILE, only while that process runs and its command line contains
# WANT (a pid can be reused by another process once ours has ended); else returns 1.
# Usage: pid_from_file PIDFILE WANT
pid_from_file() {
    local pidfile=$1 want=$2 pid cmdline
    [[ -f $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$want"* ]] || return 1
    printf '%s\n' "$pid"
}
