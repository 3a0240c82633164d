#!/bin/sh
# SPDX-License-Identifier: MIT
# fuzz/run.sh - builds the libFuzzer harnesses with CMake (CC=clang, -DPEERDIST_FUZZ=ON, in
# build-fuzz/) and runs each for its share of the time, from its checked-in seed corpus
# (fuzz/corpus/NAME/) with its dictionary (fuzz/NAME.dict):
#   fuzz_contentinfo  the content-information parsers (common/ci-*.c)
#   fuzz_pccrr        the MS-PCCRR message decoders and block cipher (common/pccrr.c)
#   fuzz_pccrd        the MS-PCCRD Probe/ProbeMatches XML parsers (common/pccrd.c)
#   fuzz_daemon       the real peerdistd (pddaemon: daemon/*.c but main.c) driven with request
#                     sequences over socketpairs
# Usage: fuzz/run.sh [SECONDS [DAEMON_SECONDS]]
#   one argument (default 60): a sixth of it to each parser harness (contentinfo, pccrr,
#   pccrd), the rest to fuzz_daemon;
#   two: SECONDS to each parser harness and DAEMON_SECONDS to fuzz_daemon (0 skips them).
# Environment: FUZZ_BUILD (build directory), FUZZ_WORK (corpora and crash files), FUZZ_CC
# (clang), JOBS (compiler processes, default nproc).
# Exits non-zero if the build fails or either harness finds a crash, leak or hang.
set -eu

TOTAL=${1:-60}
if [ $# -ge 2 ]; then
    CI_SECONDS=$1
    DAEMON_SECONDS=$2
else
    CI_SECONDS=$((TOTAL / 6))
    DAEMON_SECONDS=$((TOTAL - 3 * CI_SECONDS))
fi
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
BUILD=${FUZZ_BUILD:-$ROOT/build-fuzz}
WORK=${FUZZ_WORK:-${TMPDIR:-/tmp}/peerdist-fuzz}
CC=${FUZZ_CC:-clang}

command -v "$CC" >/dev/null || {
    echo "fuzz/run.sh: $CC not found (apt-get install -y clang libclang-rt-14-dev)" >&2
    exit 2
}

targets=
[ "$CI_SECONDS" -gt 0 ] && targets="$targets fuzz_contentinfo fuzz_pccrr fuzz_pccrd"
[ "$DAEMON_SECONDS" -gt 0 ] && targets="$targets fuzz_daemon"
[ -n "$targets" ] || exit 0

# The same CMake rules as every build (generated protobuf and schema sources included); the
# compiler of an existing build directory stays what it was configured with.
CC=$CC cmake -S "$ROOT" -B "$BUILD" -DPEERDIST_FUZZ=ON >/dev/null
# shellcheck disable=SC2086
cmake --build "$BUILD" -j"${JOBS:-$(nproc)}" --target $targets

# A scratch working corpus per harness, seeded from the checked-in one, which libFuzzer then
# never writes to.
run() {
    name=$1
    seconds=$2
    shift 2
    mkdir -p "$WORK/$name/corpus" "$WORK/$name/artifacts"
    cp "$HERE/corpus/$name"/* "$WORK/$name/corpus/"
    echo "fuzz/run.sh: $name for ${seconds}s; corpus and crashes in $WORK/$name"
    "$BUILD/fuzz/$name" -max_total_time="$seconds" -dict="$HERE/$name.dict" \
        -print_final_stats=1 -artifact_prefix="$WORK/$name/artifacts/" "$@" "$WORK/$name/corpus"
}

status=0
if [ "$CI_SECONDS" -gt 0 ]; then
    run fuzz_contentinfo "$CI_SECONDS" -max_len=65536 -timeout=10 -rss_limit_mb=2048 || status=1
    # room for the 65,644-byte BLK vector seed
    run fuzz_pccrr "$CI_SECONDS" -max_len=70000 -timeout=10 -rss_limit_mb=2048 || status=1
    run fuzz_pccrd "$CI_SECONDS" -max_len=16384 -timeout=10 -rss_limit_mb=2048 || status=1
fi
if [ "$DAEMON_SECONDS" -gt 0 ]; then
    run fuzz_daemon "$DAEMON_SECONDS" -max_len=4096 -len_control=20 -timeout=20 \
        -rss_limit_mb=3072 || status=1
fi
exit $status
