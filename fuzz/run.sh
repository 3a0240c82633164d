#!/bin/sh
# fuzz/run.sh - builds fuzz_contentinfo with clang -fsanitize=fuzzer,address,undefined straight
# from the common/ sources, seeds a corpus from tests/vectors/*content_info.hex and runs it for
# SECONDS (first argument, default 60). Exits non-zero if the fuzzer finds a crash.
set -eu

SECONDS_TO_RUN=${1:-60}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
WORK=${FUZZ_WORK:-${TMPDIR:-/tmp}/peerdist-fuzz}
CC=${FUZZ_CC:-clang}

command -v "$CC" >/dev/null || {
    echo "fuzz/run.sh: $CC not found (apt-get install -y clang libclang-rt-14-dev)" >&2
    exit 2
}
mkdir -p "$WORK/corpus" "$WORK/artifacts"

"$CC" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter \
    -I"$ROOT/common" -I"$ROOT/client/include" \
    "$HERE/fuzz_contentinfo.c" "$ROOT"/common/ci-*.c -lcrypto \
    -o "$WORK/fuzz_contentinfo"

# Seeds: every content-information vector, hex to binary (perl is in every Debian base).
for hex in "$ROOT"/tests/vectors/*content_info.hex; do
    perl -e 'local $/; $_ = <STDIN>; s/\s//g; print pack("H*", $_)' \
        <"$hex" >"$WORK/corpus/$(basename "$hex" .hex).bin"
done

echo "fuzz/run.sh: fuzzing for ${SECONDS_TO_RUN}s; corpus and crashes in $WORK"
exec "$WORK/fuzz_contentinfo" -max_total_time="$SECONDS_TO_RUN" -max_len=65536 -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$WORK/artifacts/" \
    "$WORK/corpus"
