#!/bin/sh
# SPDX-License-Identifier: MIT
# reliability-report.sh - runs the long reliability tests and writes docs/RELIABILITY.md from
# what they print: the kill -9 loop (tests/test_killloop.c), the hostile local clients
# (tests/test_hostile.c), the full disk (tests/test_diskfull.c) and both fuzzers (fuzz/run.sh).
# Every figure in the report comes from this run; the report says when, where and how.
# Usage: tests/reliability-report.sh [BUILD_DIR]   (make reliability; needs root for the
# hostile clients' other uids and the full-disk image)
#   KILL_CYCLES (default 100)  kill -9 cycles
#   FUZZ_SECONDS (default 120) fuzzing time, shared by both harnesses
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "${1:-$ROOT/build}" && pwd)
KILL_CYCLES=${KILL_CYCLES:-100}
FUZZ_SECONDS=${FUZZ_SECONDS:-120}
OUT=$ROOT/docs/RELIABILITY.md
LOG=$(mktemp -d /tmp/pdreliability.XXXXXX)
trap 'rm -rf "$LOG"' EXIT

status=0
run() { # name, command...: its output in $LOG/name, its exit status remembered
    name=$1
    shift
    echo "reliability: $name ..." >&2
    if "$@" >"$LOG/$name" 2>&1; then
        echo pass >"$LOG/$name.rc"
    else
        echo "FAIL (exit $?)" >"$LOG/$name.rc"
        status=1
    fi
}

start=$(date -u '+%Y-%m-%d %H:%M UTC')
load=$(cut -d' ' -f1-3 /proc/loadavg)
cd "$BUILD"
run killloop env PEERDIST_KILL_CYCLES="$KILL_CYCLES" tests/test_killloop
run hostile tests/test_hostile
run diskfull tests/test_diskfull
cd "$ROOT"
run fuzz env FUZZ_BUILD="${FUZZ_BUILD:-$ROOT/build-fuzz}" sh fuzz/run.sh "$FUZZ_SECONDS"

# Lines a test printed for the report, as a Markdown list.
lines() { # file, pattern
    grep -E "$2" "$LOG/$1" | sed -e 's/^test_hostile: //' -e 's/^/- /' || echo "- (nothing printed)"
}

{
    echo "# Reliability report"
    echo
    commit=$(git -C "$ROOT" rev-parse --short HEAD)
    git -C "$ROOT" diff --quiet HEAD -- daemon client common proto || commit="$commit with local changes"
    echo "Written by \`tests/reliability-report.sh\` (\`make reliability\`) on $start from commit"
    echo "\`$commit\`, on $(nproc) CPUs with $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) of memory, Linux $(uname -r);"
    echo "load average $load when it started. Every figure below is from that one run; to"
    echo "reproduce it: \`KILL_CYCLES=$KILL_CYCLES FUZZ_SECONDS=$FUZZ_SECONDS make reliability\`."
    echo "Latencies are another client's \`PeerDistGetStatus\` round trips while the attack runs,"
    echo "measured by the test, reported, never asserted."
    echo
    echo "| part | result |"
    echo "| --- | --- |"
    for t in killloop hostile diskfull fuzz; do
        echo "| $t | $(cat "$LOG/$t.rc") |"
    done
    echo
    echo "## kill -9 during publish, AddData and flush"
    echo
    echo "\`tests/test_killloop.c\`, $KILL_CYCLES cycles: after every restart each acknowledged block"
    echo "reads back, each readable byte is right, each block row's bytes hash right, flushed tags"
    echo "stay flushed, publishing again gives the same content information."
    echo
    lines killloop '^kill loop: [0-9]+ kill'
    echo
    echo "## Hostile local clients"
    echo
    echo "\`tests/test_hostile.c\`: raw frames as other uids (bad frames, unknown handles, frames"
    echo "built to cost memory, clients that never read, connections that never say Hello, one"
    echo "uid taking every slot, descriptors running out, the memory budget, partial frames)."
    echo
    lines hostile '^test_hostile: '
    echo
    echo "## Full disk"
    echo
    echo "\`tests/test_diskfull.c\`:"
    echo
    lines diskfull '^full disk: '
    echo
    echo "## Fuzzing"
    echo
    echo "\`fuzz/run.sh $FUZZ_SECONDS\` (libFuzzer with ASan and UBSan; a crash, leak or hang fails it);"
    echo "\`fuzz_contentinfo\` (the content-information parsers) first, then \`fuzz_daemon\` (request"
    echo "sequences against the real daemon):"
    echo
    lines fuzz '^(Done [0-9]+ runs|==[0-9]+==ERROR|SUMMARY)'
    echo
    echo "## What was lost"
    echo
    if [ $status -eq 0 ]; then
        echo "Nothing: every part above passed its checks (no acknowledged byte missing, no wrong"
        echo "byte served, no crash, no sanitizer report)."
    else
        echo "A part failed (see the table); its output is the place to start."
    fi
} >"$OUT"
echo "reliability: wrote $OUT" >&2
exit $status
