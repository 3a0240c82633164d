#!/bin/sh
# SPDX-License-Identifier: MIT
# publish-bench.sh - times `peerdistctl publish` of a random file (1 GiB) through a private
# peerdistd (--mode local, temp socket, database and state dir): version 2 (V1 and V2 in one
# pass) beside `openssl dgst -sha256` plus `openssl dgst -sha512` of the same file, and
# version 1 beside `openssl dgst -sha256`, all in the same repetition; medians of REPS.
# "others" is the CPU time the rest of the machine used during each publish (/proc/stat busy
# time minus the daemon's and peerdistctl's): well above 0, another load shared the 2 vCPUs.
# Usage: bench/publish-bench.sh [-r REPS] [-s MiB]
#   env: PEERDISTD, PEERDISTCTL (default: this checkout's build/), TMPDIR. Builds nothing.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PDD=${PEERDISTD:-$ROOT/build/daemon/peerdistd}
PDCTL=${PEERDISTCTL:-$ROOT/build/client/peerdistctl}
REPS=3
SIZE_MIB=1024
SOCKET_WAIT_S=10

while getopts r:s: opt; do
    case $opt in
    r) REPS=$OPTARG ;;
    s) SIZE_MIB=$OPTARG ;;
    *) echo "usage: $0 [-r REPS] [-s MiB]" >&2; exit 2 ;;
    esac
done

for b in "$PDD" "$PDCTL"; do
    [ -x "$b" ] || { echo "publish-bench: no $b (make build first)" >&2; exit 2; }
done
[ -x /usr/bin/time ] || { echo "publish-bench: /usr/bin/time is needed" >&2; exit 2; }
command -v openssl >/dev/null || { echo "publish-bench: openssl is needed" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/peerdist-publish-bench.XXXXXX")
daemon_pid=
cleanup() {
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# An empty config file keeps a system-wide /etc/peerdist/peerdistd.conf out of the run.
: >"$tmp/peerdistd.conf"
mkdir "$tmp/state"
sock="$tmp/s.sock"
"$PDD" --config "$tmp/peerdistd.conf" --socket "$sock" --db "$tmp/cache.db" \
    --state-dir "$tmp/state" --mode local --log-level warn 2>"$tmp/peerdistd.log" &
daemon_pid=$!
waited=0
while [ ! -S "$sock" ]; do
    if ! kill -0 "$daemon_pid" 2>/dev/null; then
        echo "publish-bench: peerdistd exited before listening:" >&2
        cat "$tmp/peerdistd.log" >&2
        exit 1
    fi
    [ "$waited" -lt $((SOCKET_WAIT_S * 10)) ] || { echo "publish-bench: no socket" >&2; exit 1; }
    sleep 0.1
    waited=$((waited + 1))
done
export PEERDIST_SOCKET="$sock"

# Incompressible content; read once so every timed pass hits the page cache alike.
head -c "$((SIZE_MIB * 1024 * 1024))" /dev/urandom >"$tmp/content"
cat "$tmp/content" >/dev/null

hz=$(getconf CLK_TCK)
daemon_ticks() { # utime + stime of peerdistd so far
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$daemon_pid/stat"
}
busy_ticks() { # non-idle CPU time of the whole machine so far (user nice system irq softirq)
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat
}

# Runs a command under /usr/bin/time; prints "elapsed user sys".
timed() {
    /usr/bin/time -o "$tmp/t" -f "%e %U %S" "$@" >/dev/null
    cat "$tmp/t"
}

# One line per repetition: sha256 sha512 v2 v1 (elapsed s), then the daemon's CPU ticks for
# v2 and v1, then peerdistctl's user+sys for v2 and v1, then the machine's busy ticks during
# the v2 and the v1 publish.
: >"$tmp/runs"
i=1
while [ "$i" -le "$REPS" ]; do
    timed openssl dgst -sha256 "$tmp/content" >"$tmp/o"
    read -r s256 _ _ <"$tmp/o"
    timed openssl dgst -sha512 "$tmp/content" >"$tmp/o"
    read -r s512 _ _ <"$tmp/o"
    d0=$(daemon_ticks)
    b0=$(busy_ticks)
    timed "$PDCTL" publish "$tmp/content" --version 2 -o "$tmp/ci2" >"$tmp/o"
    b1=$(busy_ticks)
    read -r v2 u s <"$tmp/o"
    c2=$(echo "$u $s" | awk '{ print $1 + $2 }')
    d1=$(daemon_ticks)
    timed "$PDCTL" publish "$tmp/content" --version 1 -o "$tmp/ci1" >"$tmp/o"
    b2=$(busy_ticks)
    read -r v1 u s <"$tmp/o"
    c1=$(echo "$u $s" | awk '{ print $1 + $2 }')
    d2=$(daemon_ticks)
    echo "$s256 $s512 $v2 $v1 $((d1 - d0)) $((d2 - d1)) $c2 $c1 $((b1 - b0)) $((b2 - b1))" >>"$tmp/runs"
    o2=$(echo "$b0 $b1 $d0 $d1 $c2" | awk -v hz="$hz" '{ printf "%.2f", ($2 - $1 - $4 + $3) / hz - $5 }')
    echo "rep $i: sha256 ${s256} s, sha512 ${s512} s, publish v2 ${v2} s (others ${o2} s), publish v1 ${v1} s"
    i=$((i + 1))
done

hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$daemon_pid/status" 2>/dev/null || echo 0)
echo "publish-bench: $SIZE_MIB MiB, $REPS repetitions, medians (min..max); $(openssl version); load: $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v mib="$SIZE_MIB" -v hz="$hz" -v reps="$REPS" -v hwm="$hwm" '
function sortn(a, n,    i, j, t) {
    for (i = 2; i <= n; i++)
        for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
}
# median, min and max of column values v[1..n] into m[key], m[key "_min"], m[key "_max"]
function stat(key, v, n,    i, c) {
    for (i = 1; i <= n; i++) c[i] = v[i]
    sortn(c, n)
    m[key] = n % 2 ? c[(n + 1) / 2] : (c[n / 2] + c[n / 2 + 1]) / 2
    m[key "_min"] = c[1]
    m[key "_max"] = c[n]
}
{
    n++
    s256[n] = $1; s512[n] = $2; v2[n] = $3; v1[n] = $4
    base2[n] = $1 + $2
    r2[n] = $3 / ($1 + $2); r1[n] = $4 / $1
    d2[n] = $5 / hz; d1[n] = $6 / hz
    c2[n] = $7; c1[n] = $8
    o2[n] = ($9 - $5) / hz - $7; o1[n] = ($10 - $6) / hz - $8
    t2[n] = mib / $3; t1[n] = mib / $4
}
END {
    stat("sha256_s", s256, n); stat("sha512_s", s512, n); stat("baseline_v2_s", base2, n)
    stat("publish_v2_s", v2, n); stat("publish_v1_s", v1, n)
    stat("v2_ratio", r2, n); stat("v1_ratio", r1, n)
    stat("v2_mib_s", t2, n); stat("v1_mib_s", t1, n)
    stat("daemon_cpu_v2_s", d2, n); stat("daemon_cpu_v1_s", d1, n)
    stat("ctl_cpu_v2_s", c2, n); stat("ctl_cpu_v1_s", c1, n)
    stat("others_cpu_v2_s", o2, n); stat("others_cpu_v1_s", o1, n)
    printf "publish v2   %6.2f s (%5.0f MiB/s) | sha256 + sha512 %6.2f s | time ratio %.2f (%.2f..%.2f) | daemon CPU %.2f s, peerdistctl CPU %.2f s, others %.2f s\n",
        m["publish_v2_s"], m["v2_mib_s"], m["baseline_v2_s"], m["v2_ratio"], m["v2_ratio_min"], m["v2_ratio_max"], m["daemon_cpu_v2_s"], m["ctl_cpu_v2_s"], m["others_cpu_v2_s"]
    printf "publish v1   %6.2f s (%5.0f MiB/s) | sha256          %6.2f s | time ratio %.2f (%.2f..%.2f) | daemon CPU %.2f s, peerdistctl CPU %.2f s, others %.2f s\n",
        m["publish_v1_s"], m["v1_mib_s"], m["sha256_s"], m["v1_ratio"], m["v1_ratio_min"], m["v1_ratio_max"], m["daemon_cpu_v1_s"], m["ctl_cpu_v1_s"], m["others_cpu_v1_s"]
    printf "peerdistd peak RSS %d KiB\n", hwm
    line = "SUMMARY publish_bench size_mib=" mib " reps=" reps
    split("v2_ratio v1_ratio publish_v2_s publish_v1_s v2_mib_s v1_mib_s baseline_v2_s sha256_s sha512_s daemon_cpu_v2_s daemon_cpu_v1_s ctl_cpu_v2_s ctl_cpu_v1_s others_cpu_v2_s others_cpu_v1_s", keys, " ")
    for (k = 1; k in keys; k++) {
        key = keys[k]
        line = line sprintf(" %s=%.3f %s_min=%.3f %s_max=%.3f", key, m[key], key, m[key "_min"], key, m[key "_max"])
    }
    print line " peerdistd_peak_rss_kib=" hwm
}' "$tmp/runs"
