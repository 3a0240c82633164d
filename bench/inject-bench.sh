#!/bin/sh
# SPDX-License-Identifier: MIT
# inject-bench.sh [SIZE_MIB [REPS]] - `peerdistctl inject` of a random file beside its
# baselines on the same file in the same run: `openssl dgst -sha256` and `dd ... conv=fdatasync`
# (the target: inject >= 80 % of the slower of the two). A private peerdistd (--mode local) on a
# scratch directory under build/ (the real disk); the tag is flushed before each inject, which
# starts once the daemon has reclaimed the flushed space (as the baselines run on a quiet disk).
# PEERDISTD=path / PEERDISTCTL=path run other binaries. BEFORE=path (an older peerdistctl) also
# times its inject in each repetition, right after the baseline, for a before/after on the same
# machine state: keys before_* in the SUMMARY line. BENCH_CONF is the daemon's configuration
# file's text (for example 'spare_pool = 0': each inject into new files, as on a fresh cache).
set -eu
cd "$(dirname "$0")/.."
size_mib=${1:-256}
reps=${2:-3}
cmake --build build -j"$(nproc)" --target peerdistctl peerdistd >/dev/null
daemon=$(realpath "${PEERDISTD:-build/daemon/peerdistd}")
ctl=$(realpath "${PEERDISTCTL:-build/client/peerdistctl}")
dir=$(mktemp -d "$PWD/build/bench-inject.XXXXXX")
trap 'test -f "$dir/pid" && kill "$(cat "$dir/pid")" 2>/dev/null; rm -rf "$dir"' EXIT
printf '[peerdistd]\n%s\n' "${BENCH_CONF:-}" >"$dir/daemon.conf"
"$daemon" --mode local --socket "$dir/s.sock" --db "$dir/cache.db" --state-dir "$dir/state" \
    --config "$dir/daemon.conf" 2>>"$dir/log" &
echo $! >"$dir/pid"
for _ in $(seq 200); do test -S "$dir/s.sock" && break; sleep 0.05; done
export PEERDIST_SOCKET="$dir/s.sock"
tag=00112233445566778899aabbccddeeff

head -c "$((size_mib * 1048576))" /dev/urandom >"$dir/file"
"$ctl" hash "$dir/file" --version 1 --key inject-bench -o "$dir/file.ci"

now() { date +%s.%N; }
# settle: waits (at most 60 s, then says so) until the daemon has reclaimed the space of the
# flush before, as the baselines run on a disk nobody else writes (datapath_bench.c, settle).
settle() {
    end=$(($(date +%s) + 60))
    while [ "$(date +%s)" -lt "$end" ]; do
        "$ctl" status --json | grep -q '"reclaim_pending_slots": 0,' && return 0
        sleep 0.01
    done
    echo "inject-bench: reclaim still pending after 60 s; timing anyway" >&2
}
# elapsed START: seconds since START
elapsed() { echo "$(now) $1" | awk '{printf "%.4f", $1 - $2}'; }

: >"$dir/times"
for r in $(seq "$reps"); do
    t0=$(now)
    openssl dgst -sha256 "$dir/file" >/dev/null
    sha=$(elapsed "$t0")
    t0=$(now)
    dd if="$dir/file" of="$dir/dd.out" bs=1M conv=fdatasync 2>/dev/null
    dd=$(elapsed "$t0")
    rm -f "$dir/dd.out"
    before=0
    if [ -n "${BEFORE:-}" ]; then
        "$ctl" flush --tag "$tag" >/dev/null
        settle
        t0=$(now)
        "$BEFORE" inject "$dir/file" --ci "$dir/file.ci" --tag "$tag"
        before=$(elapsed "$t0")
    fi
    "$ctl" flush --tag "$tag" >/dev/null
    settle
    t0=$(now)
    "$ctl" inject "$dir/file" --ci "$dir/file.ci" --tag "$tag"
    inj=$(elapsed "$t0")
    echo "$sha $dd $inj $before" >>"$dir/times"
    echo "rep $r: openssl_sha256 ${sha}s dd_fdatasync ${dd}s inject ${inj}s${BEFORE:+ before ${before}s}" >&2
done
# The bytes cached are the file's (not timed).
"$ctl" get --ci "$dir/file.ci" --tag "$tag" --timeout 0 | cmp -s - "$dir/file" ||
    { echo "inject-bench: the cached bytes differ from the file" >&2; exit 1; }
"$ctl" flush --tag "$tag" >/dev/null

# Per repetition: MiB/s of each, the slower baseline, inject's ratio to it; then for each
# column the median, min and max over the repetitions.
awk -v mib="$size_mib" -v reps="$reps" -v before="${BEFORE:+1}" -v load="$(cut -d' ' -f1 /proc/loadavg)" '
function stat(name, col,   i, j, t, n, med) {
    n = 0
    for (i = 1; i <= NR; i++) v[++n] = val[i, col]
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    med = n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    fmt = col == 5 || col == 7 ? "%.2f" : "%.0f"
    out = out sprintf(" %s=" fmt " %s_min=" fmt " %s_max=" fmt, name, med, name, v[1], name, v[n])
    return med
}
{
    val[NR, 1] = mib / $1; val[NR, 2] = mib / $2; val[NR, 3] = mib / $3
    slow = $1 > $2 ? $1 : $2
    val[NR, 4] = mib / slow; val[NR, 5] = slow / $3
    if (before) { val[NR, 6] = mib / $4; val[NR, 7] = slow / $4 }
}
END {
    stat("openssl_sha256_mib_s", 1); stat("dd_fdatasync_mib_s", 2); stat("inject_mib_s", 3)
    stat("baseline_mib_s", 4); r = stat("ratio", 5)
    if (before) { stat("before_mib_s", 6); stat("before_ratio", 7) }
    printf "inject %d MiB, %d reps: ratio %.2f of the slower baseline (target >= 0.80 %s)\n",
        mib, reps, r, (r >= 0.8 ? "MET" : "MISSED")
    printf "SUMMARY inject_bench size_mib=%d reps=%d%s target=0.80 load1=%s\n", mib, reps, out, load
}' "$dir/times"
kill "$(cat "$dir/pid")"
rm -f "$dir/pid"
