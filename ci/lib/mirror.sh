# Shared by the ci/ scripts that read Debian packages: where this machine's apt
# configuration says the Debian archive is. Nothing here names a mirror host.
# shellcheck shell=bash

# Prints the first http(s)/file URI of an enabled `deb` source for $SUITE, from
# deb822 files first, then one-line sources. Suites must match the word exactly
# (bookworm, not bookworm-security).
find_mirror() {
    local SUITE=${1:-${SUITE:?find_mirror needs a suite}}
    local f
    local -a deb822=() oneline=()
    shopt -s nullglob
    deb822=(/etc/apt/sources.list.d/*.sources)
    oneline=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list)
    shopt -u nullglob
    for f in "${deb822[@]}"; do
        [[ -r $f ]] || continue
        awk -v suite="$SUITE" '
            function has(list, word,   n, i, a) {
                n = split(list, a, /[ \t]+/)
                for (i = 1; i <= n; i++) if (a[i] == word) return 1
                return 0
            }
            function flush(   n, i, a) {
                if (has(f["types"], "deb") && has(f["suites"], suite) && tolower(f["enabled"]) !~ /^ *no/) {
                    n = split(f["uris"], a, /[ \t]+/)
                    for (i = 1; i <= n; i++)
                        if (a[i] ~ /^(https?|file):/) { print a[i]; done = 1; exit }
                }
                delete f; key = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]/  { if (key != "") f[key] = f[key] " " $0; next }
            {
                i = index($0, ":"); if (i == 0) next
                key = tolower(substr($0, 1, i - 1))
                f[key] = substr($0, i + 1)
            }
            END { if (!done) flush() }
        ' "$f" | head -n1
    done
    for f in "${oneline[@]}"; do
        [[ -r $f ]] || continue
        awk -v suite="$SUITE" '
            { sub(/#.*/, "") }
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite && $i ~ /^(https?|file):/) { print $i; exit }
            }
        ' "$f"
    done
}

