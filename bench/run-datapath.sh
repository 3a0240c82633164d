#!/bin/sh
# run-datapath.sh [datapath_bench options] - starts a private peerdistd on a scratch
# directory under build/ (the real disk, like /var/cache), runs datapath_bench against it,
# prints the daemon's peak RSS, stops it. Default: 1 GiB, 3 repetitions.
set -eu
cd "$(dirname "$0")/.."
cmake --build build -j"$(nproc)" --target datapath_bench peerdistd >/dev/null
dir=$(mktemp -d "$PWD/build/bench-datapath.XXXXXX")
pid=
trap 'test -n "$pid" && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
: >"$dir/empty.conf"
build/daemon/peerdistd --socket "$dir/s.sock" --db "$dir/cache.db" --state-dir "$dir/state" \
    --config "$dir/empty.conf" 2>"$dir/log" &
pid=$!
for _ in $(seq 100); do test -S "$dir/s.sock" && break; sleep 0.05; done
mkdir -p "$dir/scratch"
PEERDIST_SOCKET="$dir/s.sock" build/bench/datapath_bench "$@" "$dir/scratch"
echo "peerdistd_peak_rss_kib=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status") (VmHWM)"
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=
