#!/bin/sh
# SPDX-License-Identifier: MIT
# hash-bench.sh - times `peerdistctl hash` (V1 and V2 content information of a 1 GiB file)
# beside `openssl dgst -sha256` / `-sha512` over the same file in the same run, and reports
# medians, throughput, the ratio to the baseline and peerdistctl's peak RSS, and a final
# `SUMMARY hash_bench ...` line (medians, min, max, baselines, ratios). Builds nothing.
# Usage: bench/hash-bench.sh [PEERDISTCTL [OLD_PEERDISTCTL]]   env: RUNS (3), SIZE_MIB (1024),
# TMPDIR. With OLD_PEERDISTCTL (another build, say of main), it is timed in the same runs too
# and the SUMMARY line adds v1_old_ratio, v2_old_ratio (old / openssl) and v1_new_old,
# v2_new_old (new / old time).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PDCTL=${1:-$ROOT/build/client/peerdistctl}
OLD=${2:-}
RUNS=${RUNS:-3}
SIZE_MIB=${SIZE_MIB:-1024}
PASSPHRASE_HEX=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f

[ -x "$PDCTL" ] || { echo "hash-bench: no peerdistctl at $PDCTL (build first, or pass its path)" >&2; exit 2; }
[ -z "$OLD" ] || [ -x "$OLD" ] || { echo "hash-bench: no peerdistctl at $OLD" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "hash-bench: /usr/bin/time is needed (apt-get install time)" >&2; exit 2; }
command -v openssl >/dev/null || { echo "hash-bench: openssl is needed" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/peerdist-hash-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# Incompressible content; read once so every timed pass hits the page cache alike.
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$tmp/content"
cat "$tmp/content" >/dev/null

# Runs a command under /usr/bin/time; appends "seconds peak_rss_kib user sys" to the file $1.
timed() {
    out=$1
    shift
    /usr/bin/time -o "$tmp/t" -f "%e %M %U %S" "$@" >/dev/null
    cat "$tmp/t" >>"$out"
}

median() { # column $2 of file $1
    sort -n -k"$2","$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'
}

cpu() { # every run's user+sys seconds, in order
    awk '{ printf "%s%.2f", sep, $3 + $4; sep = " " } END { print "" }' "$1"
}

max_col() {
    awk -v c="$2" 'BEGIN { m = 0 } $c > m { m = $c } END { print m }' "$1"
}


: >"$tmp/runs"
i=1
while [ "$i" -le "$RUNS" ]; do
    # Baseline and peerdist back to back in each run: the same moment of a shared machine.
    timed "$tmp/sha256" openssl dgst -sha256 "$tmp/content"
    timed "$tmp/v1" "$PDCTL" hash "$tmp/content" --version 1 --passphrase-hex "$PASSPHRASE_HEX" -o "$tmp/ci1"
    [ -z "$OLD" ] || timed "$tmp/v1old" "$OLD" hash "$tmp/content" --version 1 --passphrase-hex "$PASSPHRASE_HEX" -o "$tmp/ci1old"
    timed "$tmp/sha512" openssl dgst -sha512 "$tmp/content"
    timed "$tmp/v2" "$PDCTL" hash "$tmp/content" --version 2 --passphrase-hex "$PASSPHRASE_HEX" -o "$tmp/ci2"
    [ -z "$OLD" ] || timed "$tmp/v2old" "$OLD" hash "$tmp/content" --version 2 --passphrase-hex "$PASSPHRASE_HEX" -o "$tmp/ci2old"
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

echo "hash-bench: $SIZE_MIB MiB, $RUNS runs, medians; $(openssl version); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commands: $PDCTL hash FILE --version 1|2 --passphrase-hex HEX -o OUT; openssl dgst -sha256|-sha512 FILE"
report "V1" "$tmp/v1" "sha256 (dgst)" "$tmp/sha256"
report "V2" "$tmp/v2" "sha512 (dgst)" "$tmp/sha512"
if [ -n "$OLD" ]; then
    echo "old: $OLD"
    report "V1 old" "$tmp/v1old" "sha256 (dgst)" "$tmp/sha256"
    report "V2 old" "$tmp/v2old" "sha512 (dgst)" "$tmp/sha512"
    cmp -s "$tmp/ci1" "$tmp/ci1old" && cmp -s "$tmp/ci2" "$tmp/ci2old" ||
        { echo "hash-bench: old and new content information differ" >&2; exit 1; }
    echo "content information: old and new identical"
fi
runs() { # every run's seconds, in order
    awk '{ printf "%s%s", sep, $1; sep = " " } END { print "" }' "$1"
}
echo "runs (s): V1 $(runs "$tmp/v1") | sha256 $(runs "$tmp/sha256") | V2 $(runs "$tmp/v2") | sha512 $(runs "$tmp/sha512")"
echo "user+sys (s): V1 $(cpu "$tmp/v1") | sha256 $(cpu "$tmp/sha256") | V2 $(cpu "$tmp/v2") | sha512 $(cpu "$tmp/sha512")"
[ -z "$OLD" ] || echo "old runs (s): V1 $(runs "$tmp/v1old") | V2 $(runs "$tmp/v2old"); user+sys (s): V1 $(cpu "$tmp/v1old") | V2 $(cpu "$tmp/v2old")"
echo "content information: V1 $(wc -c <"$tmp/ci1") bytes, V2 $(wc -c <"$tmp/ci2") bytes"
# One machine-readable line: medians with min and max; each ratio is the median of the
# per-run ratios (peerdist / the baseline timed just before it).
[ -n "$OLD" ] || { : >"$tmp/v1old"; : >"$tmp/v2old"; }
paste "$tmp/v1" "$tmp/sha256" "$tmp/v2" "$tmp/sha512" "$tmp/v1old" "$tmp/v2old" |
    awk -v mib="$SIZE_MIB" -v runs="$RUNS" -v old="${OLD:+1}" -v cpus="$(nproc)" '
function sortn(a, n,    i, j, t) {
    for (i = 2; i <= n; i++)
        for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
}
function stat(key, v, n,    i, c) {
    for (i = 1; i <= n; i++) c[i] = v[i]
    sortn(c, n)
    line = line sprintf(" %s=%.3f %s_min=%.3f %s_max=%.3f", key,
        n % 2 ? c[(n + 1) / 2] : (c[n / 2] + c[n / 2 + 1]) / 2, key, c[1], key, c[n])
}
{
    n++
    # columns per file: elapsed, peak RSS, user, sys
    v1[n] = $1; s256[n] = $5; v2[n] = $9; s512[n] = $13
    r1[n] = $1 / $5; r2[n] = $9 / $13
    t1[n] = mib / $1; t2[n] = mib / $9; b1[n] = mib / $5; b2[n] = mib / $13
    rss1[n] = $2; rss2[n] = $10
    c1[n] = $3 + $4; c256[n] = $7 + $8; c2[n] = $11 + $12; c512[n] = $15 + $16
    if (old) { o1[n] = $17 / $5; o2[n] = $21 / $13; no1[n] = $1 / $17; no2[n] = $9 / $21 }
}
END {
    line = "SUMMARY hash_bench size_mib=" mib " runs=" runs
    stat("v1_ratio", r1, n); stat("v2_ratio", r2, n)
    stat("v1_mib_s", t1, n); stat("v2_mib_s", t2, n)
    stat("sha256_mib_s", b1, n); stat("sha512_mib_s", b2, n)
    stat("v1_s", v1, n); stat("sha256_s", s256, n); stat("v2_s", v2, n); stat("sha512_s", s512, n)
    stat("v1_rss_kib", rss1, n); stat("v2_rss_kib", rss2, n)
    stat("v1_cpu_s", c1, n); stat("sha256_cpu_s", c256, n)
    stat("v2_cpu_s", c2, n); stat("sha512_cpu_s", c512, n)
    if (old) {
        stat("v1_old_ratio", o1, n); stat("v2_old_ratio", o2, n)
        stat("v1_new_old", no1, n); stat("v2_new_old", no2, n)
    }
    line = line sprintf(" cpus=%d", cpus)
    print line
}'
