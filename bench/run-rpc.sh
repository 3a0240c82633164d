#!/bin/sh
# SPDX-License-Identifier: MIT
# run-rpc.sh - build rpc_bench, run it against a private peerdistd (temp socket,
# database and state dir) beside a private redis-server (the redis-benchmark -P baseline),
# then print the daemon's peak RSS and clean up; the last line is rpc_bench's SUMMARY with
# the RSS added, after rtt_placement's PLACEMENT lines (the round trip by CPU placement).
# Arguments are passed to rpc_bench (e.g. -r 3 -n 5000). Works from any cwd.
set -eu

# Seconds to wait for the daemon's socket: first start migrates a new database.
SOCKET_WAIT_S=10
BUILD_JOBS=2

cd "$(dirname "$0")/.."

tmp=$(mktemp -d "${TMPDIR:-/tmp}/peerdist-rpc.XXXXXX")
daemon_pid=
redis_pid=
cleanup() {
    if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null; then
        kill -TERM "$redis_pid" 2>/dev/null || true
        wait "$redis_pid" 2>/dev/null || true
    fi
    if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
        kill -TERM "$daemon_pid" 2>/dev/null || true
        wait "$daemon_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

build() {
    cmake --build build -j"$BUILD_JOBS" --target rpc_bench rtt_placement peerdistd >"$tmp/build.log" 2>&1
}
if [ ! -f build/CMakeCache.txt ]; then
    cmake -S . -B build >"$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log" >&2; exit 1; }
fi
# bench/CMakeLists.txt adds rpc_bench only if its source existed at configure
# time, so a build tree older than it needs one reconfigure.
if ! build; then
    cmake -S . -B build >"$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log" >&2; exit 1; }
    build || { cat "$tmp/build.log" >&2; exit 1; }
fi

# An empty config file keeps a system-wide /etc/peerdist/peerdistd.conf out of the run.
: >"$tmp/peerdistd.conf"
mkdir "$tmp/state"
sock="$tmp/s.sock"
build/daemon/peerdistd --config "$tmp/peerdistd.conf" --socket "$sock" --db "$tmp/cache.db" \
    --state-dir "$tmp/state" --mode local --log-level warn 2>"$tmp/peerdistd.log" &
daemon_pid=$!

waited=0
while [ ! -S "$sock" ]; do
    if ! kill -0 "$daemon_pid" 2>/dev/null; then
        echo "run-rpc.sh: peerdistd exited before listening:" >&2
        cat "$tmp/peerdistd.log" >&2
        exit 1
    fi
    if [ "$waited" -ge $((SOCKET_WAIT_S * 10)) ]; then
        echo "run-rpc.sh: no socket at $sock after ${SOCKET_WAIT_S}s" >&2
        exit 1
    fi
    sleep 0.1
    waited=$((waited + 1))
done

# The baseline for flush throughput: redis PING at the same pipeline depths, same run.
redis_args=
if command -v redis-server >/dev/null 2>&1 && command -v redis-benchmark >/dev/null 2>&1; then
    redis-server --port 0 --unixsocket "$tmp/redis.sock" --save '' --appendonly no \
        >"$tmp/redis.log" 2>&1 &
    redis_pid=$!
    waited=0
    while [ ! -S "$tmp/redis.sock" ] && [ "$waited" -lt $((SOCKET_WAIT_S * 10)) ]; do
        sleep 0.1
        waited=$((waited + 1))
    done
    if [ -S "$tmp/redis.sock" ]; then
        redis_args="-R $tmp/redis.sock"
    else
        echo "run-rpc.sh: redis-server did not listen; no redis baseline:" >&2
        cat "$tmp/redis.log" >&2
    fi
else
    echo "run-rpc.sh: redis-server or redis-benchmark not installed (Debian: redis-server," \
        "redis-tools): no redis baseline, redis figures skipped" >&2
fi

rc=0
# shellcheck disable=SC2086 # redis_args is empty or two words
PEERDIST_SOCKET="$sock" build/bench/rpc_bench $redis_args "$@" >"$tmp/out" || rc=$?
grep -v '^SUMMARY ' "$tmp/out" || true

# The round trip by CPU placement (free, both ends on one CPU, one each): how much of the
# synchronous calls' ratio is where the scheduler puts the daemon (bench/README.md).
if [ "$(nproc)" -ge 2 ]; then
    PEERDIST_SOCKET="$sock" build/bench/rtt_placement -p "$daemon_pid" -r 3 || rc=$?
fi

# VmHWM is the peak resident set since start; read it before the daemon exits.
hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$daemon_pid/status" 2>/dev/null || true)
echo "peerdistd_peak_rss_kib=${hwm:-unknown} (VmHWM)"
summary=$(grep '^SUMMARY ' "$tmp/out" || true)

kill -TERM "$daemon_pid"
if ! wait "$daemon_pid"; then
    echo "run-rpc.sh: peerdistd did not exit cleanly on SIGTERM; its log:" >&2
    cat "$tmp/peerdistd.log" >&2
    [ "$rc" -ne 0 ] || rc=1
fi
daemon_pid=
if [ -n "$summary" ]; then
    echo "$summary peerdistd_peak_rss_kib=${hwm:-unknown}"
fi
exit "$rc"
