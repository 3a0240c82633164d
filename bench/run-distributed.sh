#!/bin/sh
# SPDX-License-Identifier: MIT
# run-distributed.sh [-r REPS] [-s MiB] [-S MiB] [-l RATE] - distributed mode on the LAN of
# network namespaces tests/netns.sh builds (hosts a, b, c run peerdistd, mode distributed),
# each figure beside a baseline from the same run:
#   1. b fetches one file (-s, 1024 MiB) that a holds: `peerdistctl get --ci F -o OUT` then
#      fdatasync, beside curl downloading the same file from nginx in a's namespace to b's,
#      written to the same disk, then fdatasync. Target: >= 50 % of curl.
#   2. serve_rate_limit RATE (-l, 20M) on a and c: b's fetch rate of a -S MiB file (256) with
#      one serving peer (c has serve = no) vs both. Target: about 2x, both contributing.
#   3. during each fetch of 1., a local client on a times PeerDistGetStatus every millisecond
#      (build/bench/status_probe) beside the same probe on the idle daemon. Target p99 <= 10 ms.
# Every measurement runs REPS (-r, 3) times; medians with min and max are printed at the end.
# Root only (network namespaces): skipped with a message otherwise. Installs nginx and curl
# with apt-get when they are missing. PD_NETNS_KEEP=1 keeps the daemons' logs. -S 0 skips 2.
# PEERDISTD and PEERDISTCTL (env) run other builds (an older commit's, for a before/after
# comparison in one sitting); build/ still provides status_probe and the client library.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then
    echo "run-distributed: SKIPPED: not root (network namespaces need root)"
    exit 0
fi
[ -f build/CMakeCache.txt ] || cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target peerdistd peerdistctl status_probe >/dev/null
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ] || ! command -v curl >/dev/null 2>&1; then
    echo "run-distributed: installing nginx and curl (the baseline)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx curl >/dev/null
    # The package's own server is not ours to run: only the one in host a's namespace.
    if command -v systemctl >/dev/null 2>&1; then systemctl stop nginx 2>/dev/null || true; fi
fi
export BENCH_PROBE="$PWD/build/bench/status_probe"
export BENCH_LIB="$PWD/build/client"
exec sh tests/netns.sh "${PEERDISTD:-$PWD/build/daemon/peerdistd}" \
    "${PEERDISTCTL:-$PWD/build/client/peerdistctl}" \
    sh bench/distributed-body.sh "$@"
