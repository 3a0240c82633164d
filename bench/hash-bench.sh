#!/bin/sh
# SPDX-License-Identifier: MIT
# hash-bench.sh - times `peerdistctl hash` (V1 and V2 content information of a 1 GiB file)
# beside `openssl dgst -sha256` / `-sha512` over the same file in the same run, and reports
# medians, throughput, the ratio to the baseline and peerdistctl's peak RSS. Builds nothing.
# Usage: bench/hash-bench.sh [PEERDISTCTL]   env: RUNS (3), SIZE_MIB (1024), TMPDIR
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PDCTL=${1:-$ROOT/build/client/peerdistctl}
RUNS=${RUNS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
PASSPHRASE_HEX=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f

[ -x "$PDCTL" ] || { echo "hash-bench: no peerdistctl at $PDCTL (build first, or pass its path)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "hash-bench: /usr/bin/time is needed (apt-get install time)" >&2; exit 2; }
command -v openssl >/dev/null || { echo "hash-bench: openssl is needed" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/peerdist-hash-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# Incompressible content; read once so every timed pass hits the page cache alike.
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$tmp/content"
cat "$tmp/content" >/dev/null

# Runs a command under /usr/bin/time; appends "seconds peak_rss_kib" to the file $1.
timed() {
    out=$1
    shift
    /usr/bin/time -o "$tmp/t" -f "%e %M" "$@" >/dev/null
    cat "$tmp/t" >>"$out"
}

median() { # column $2 of file $1
    sort -n -k"$2","$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'
}

max_col() {
    awk -v c="$2" 'BEGIN { m = 0 } $c > m { m = $c } END { print m }' "$1"
}

i=1
while [ "$i" -le "$RUNS" ]; do
    # Baseline and peerdist back to back in each run: the same moment of a shared machine.
    timed "$tmp/sha256" openssl dgst -sha256 "$tmp/content"
    timed "$tmp/v1" "$PDCTL" hash "$tmp/content" --version 1 --passphrase-hex "$PASSPHRASE_HEX" -o "$tmp/ci1"
    timed "$tmp/sha512" openssl dgst -sha512 "$tmp/content"
    timed "$tmp/v2" "$PDCTL" hash "$tmp/content" --version 2 --passphrase-hex "$PASSPHRASE_HEX" -o "$tmp/ci2"
    i=$((i + 1))
done

report() { # name, peerdist file, baseline name, baseline file
    pd=$(median "$2" 1)
    base=$(median "$4" 1)
    rss=$(max_col "$2" 2)
    awk -v n="$1" -v pd="$pd" -v b="$base" -v bn="$3" -v mib="$SIZE_MIB" -v rss="$rss" 'BEGIN {
        printf "%-8s %7.2f s %7.0f MiB/s | %-14s %7.2f s %7.0f MiB/s | time ratio %.2f | peak RSS %d KiB\n",
            n, pd, mib / pd, bn, b, mib / b, pd / b, rss }'
}

echo "hash-bench: $SIZE_MIB MiB, $RUNS runs, medians; $(openssl version)"
report "V1" "$tmp/v1" "sha256 (dgst)" "$tmp/sha256"
report "V2" "$tmp/v2" "sha512 (dgst)" "$tmp/sha512"
runs() { # every run's seconds, in order
    awk '{ printf "%s%s", sep, $1; sep = " " } END { print "" }' "$1"
}
echo "runs (s): V1 $(runs "$tmp/v1") | sha256 $(runs "$tmp/sha256") | V2 $(runs "$tmp/v2") | sha512 $(runs "$tmp/sha512")"
echo "content information: V1 $(wc -c <"$tmp/ci1") bytes, V2 $(wc -c <"$tmp/ci2") bytes"
