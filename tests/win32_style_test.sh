#!/bin/sh
# SPDX-License-Identifier: MIT
# win32_style_test.sh PEERDISTD PROGRAM... - starts peerdistd on a private socket and
# database and runs each Windows-style program against it (seeds 1, 2, ...); fails when
# one of them does.
set -u
daemon=$1
shift
tmp=$(mktemp -d /tmp/pdw32.XXXXXX)
pid=
trap 'kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
"$daemon" --socket "$tmp/s.sock" --db "$tmp/cache.db" --state-dir "$tmp/state" 2>"$tmp/log" &
pid=$!
for _ in $(seq 200); do test -S "$tmp/s.sock" && break; sleep 0.05; done
test -S "$tmp/s.sock" || { echo "peerdistd did not start"; cat "$tmp/log"; exit 1; }
seed=0
for prog in "$@"; do
    seed=$((seed + 1))
    PEERDIST_SOCKET="$tmp/s.sock" "$prog" "$seed" || { echo "FAIL: $prog"; tail -n 20 "$tmp/log"; exit 1; }
done
