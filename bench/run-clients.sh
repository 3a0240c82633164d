#!/bin/sh
# SPDX-License-Identifier: MIT
# run-clients.sh [clients_bench options] - as root: starts a private peerdistd (temp socket,
# database and state dir, the default connection limits unless CLIENTS_CONF names extra config
# lines), runs build/bench/clients_bench against it (1,000 clients from 10 uids by default),
# then prints the daemon's VmHWM, stops it and cleans up. Works from any directory.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "run-clients.sh: skipped: needs root (each client process takes its own uid)" >&2
    exit 77
fi
cmake --build build -j"$(nproc)" --target clients_bench peerdistd >/dev/null
# The clients' uids (60001.. by default) must reach the socket: a directory all may enter.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/peerdist-clients.XXXXXX")
chmod 755 "$tmp"
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

# The defaults (max_connections 1024, 16 of them kept for admins; 256 per uid) admit 1,000
# clients of 10 uids; CLIENTS_CONF="max_connections = 4096" and the like change them.
printf '%s\n' "${CLIENTS_CONF:-}" >"$tmp/peerdistd.conf"
mkdir "$tmp/state"
sock="$tmp/s.sock"
build/daemon/peerdistd --config "$tmp/peerdistd.conf" --socket "$sock" --db "$tmp/cache.db" \
    --state-dir "$tmp/state" --mode local --log-level warn 2>"$tmp/peerdistd.log" &
daemon_pid=$!
for _ in $(seq 200); do test -S "$sock" && break; sleep 0.05; done
test -S "$sock" || { echo "run-clients.sh: no socket" >&2; cat "$tmp/peerdistd.log" >&2; exit 1; }
echo "ulimit -n: $(ulimit -n) (hard $(ulimit -Hn)); config: ${CLIENTS_CONF:-defaults}"

rc=0
PEERDIST_SOCKET="$sock" build/bench/clients_bench -p "$daemon_pid" "$@" || rc=$?
echo "peerdistd_peak_rss_kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$daemon_pid/status") (VmHWM)"
refusals=$(grep -c 'refusing connection' "$tmp/peerdistd.log" || true)
echo "peerdistd log: $(wc -l <"$tmp/peerdistd.log") lines, $refusals connection refusals"
grep -m 5 -E 'refusing|lowered|error' "$tmp/peerdistd.log" || true
exit "$rc"
