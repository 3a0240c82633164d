#!/bin/sh
# SPDX-License-Identifier: MIT
# run-evict.sh [evict_e2e options] - starts a private peerdistd on a scratch directory under
# build/ (the real disk), runs evict_e2e against it (fill, then CacheSet 64M and time the
# eviction while a probe connection times small calls), stops it. Run as root (CacheSet is
# for admins). PEERDISTD=path runs another peerdistd binary.
set -eu
cd "$(dirname "$0")/.."
cmake --build build -j"$(nproc)" --target evict_e2e peerdistd >/dev/null
daemon=$(realpath "${PEERDISTD:-build/daemon/peerdistd}")
dir=$(mktemp -d "$PWD/build/bench-evict.XXXXXX")
trap 'test -f "$dir/pid" && kill "$(cat "$dir/pid")" 2>/dev/null; rm -rf "$dir"' EXIT
printf '[peerdistd]\ncache_size = 100%%\n' >"$dir/peerdistd.conf"
"$daemon" --socket "$dir/s.sock" --db "$dir/cache.db" --state-dir "$dir/state" \
    --config "$dir/peerdistd.conf" 2>>"$dir/log" &
echo $! >"$dir/pid"
for _ in $(seq 200); do test -S "$dir/s.sock" && break; sleep 0.05; done
PEERDIST_SOCKET="$dir/s.sock" build/bench/evict_e2e "$@"
grep 'eviction:' "$dir/log" | sed 's/^.*eviction:/  eviction pass:/'
