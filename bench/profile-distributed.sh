#!/bin/sh
# SPDX-License-Identifier: MIT
# profile-distributed.sh [MiB] - where a peer fetch spends its time: on the LAN of
# tests/netns.sh, a publishes and injects MiB (1024) of random data, then `perf record -g`
# follows a's and b's peerdistd while b runs `peerdistctl get`; prints both daemons' top
# symbols (perf report --no-children) and `perf stat`-like CPU time per process. Root only.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "profile-distributed: SKIPPED: not root (network namespaces need root)"
    exit 0
fi
command -v perf >/dev/null 2>&1 || { echo "profile-distributed: SKIPPED: no perf"; exit 0; }
cmake --build build -j"$(nproc)" --target peerdistd peerdistctl >/dev/null
size=${1:-1024}
exec sh tests/netns.sh "$PWD/build/daemon/peerdistd" "$PWD/build/client/peerdistctl" sh -c '
set -eu
size=$1
w=$PD_NETNS_DIR/prof; mkdir -p "$w"
ctl() { h=$1; shift; up=$(echo "$h" | tr a-z A-Z)
    PEERDIST_SOCKET=$PD_NETNS_DIR/$h/sock ip netns exec "$(eval echo \$PD_NS_$up)" "$PD_PEERDISTCTL" "$@"; }
for h in a b c; do echo "log_level = info" >>"$PD_NETNS_DIR/$h/peerdistd.conf"; kill -HUP "$(cat "$PD_NETNS_DIR/$h/pid")"; done
head -c "${size}M" /dev/urandom >"$w/f"
ctl a publish "$w/f" --version 1 -o "$w/f.ci" >/dev/null
ctl a inject "$w/f" --ci "$w/f.ci" --tag 0123456789abcdef0123456789abcdef >/dev/null
pa=$(cat "$PD_NETNS_DIR/a/pid"); pb=$(cat "$PD_NETNS_DIR/b/pid")
ta=$(awk "{print \$14+\$15}" /proc/$pa/stat); tb=$(awk "{print \$14+\$15}" /proc/$pb/stat)
perf record -q -g -F 499 -p "$pa,$pb" -o "$w/perf.data" 2>/dev/null &
perf=$!
sleep 1
s=$(date +%s.%N)
ctl b get --ci "$w/f.ci" -o "$w/out" --timeout infinite
e=$(date +%s.%N)
kill -INT $perf; wait $perf || true
ta2=$(awk "{print \$14+\$15}" /proc/$pa/stat); tb2=$(awk "{print \$14+\$15}" /proc/$pb/stat)
hz=$(getconf CLK_TCK)
awk -v s="$s" -v e="$e" -v m="$size" -v a=$((ta2 - ta)) -v b=$((tb2 - tb)) -v hz="$hz" "BEGIN {
    printf \"get: %.1f MiB/s; CPU seconds: a peerdistd %.2f, b peerdistd %.2f, over %.2f s\n\",
        m / (e - s), a / hz, b / hz, e - s }"
for p in $pa $pb; do
    [ $p = $pa ] && h=a || h=b
    echo "---- peerdistd on $h (pid $p): samples by thread, by library, top symbols ----"
    for sort in comm,tid dso sym; do
        perf report -i "$w/perf.data" --pid "$p" --no-children --stdio -g none --sort $sort \
            --percent-limit 3 2>/dev/null | grep -v "^#" | grep -v "^$" | head -12
    done
done
' sh "$size"
