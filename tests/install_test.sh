#!/bin/sh
# SPDX-License-Identifier: MIT
# install_test.sh BUILD_DIR SOURCE_DIR - installs into a temporary prefix, builds
# examples/flush.c and tests/test_win32_style.c (written as for Windows) with pkg-config
# against it, and runs them against a peerdistd started with --socket.
set -eu
build=$1
src=$2
tmp=$(mktemp -d /tmp/pdinstall.XXXXXX)
pid=
trap 'kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
for f in include/peerdist.h include/peerdist-win32.h bin/peerdistctl sbin/peerdistd \
    lib/systemd/system/peerdistd.service share/doc/peerdist/README.md share/doc/peerdist/docs/peerdist.3.md; do
    test -e "$tmp/prefix/$f" || { echo "missing $f"; exit 1; }
done
pc=$(dirname "$(find "$tmp/prefix" -name peerdist.pc | head -n 1)")
lib=$(dirname "$(find "$tmp/prefix" -name 'libpeerdist.so.1' | head -n 1)")
test -n "$pc" && test -n "$lib"
export PKG_CONFIG_PATH="$pc"
# shellcheck disable=SC2046
cc -Wall -Werror -o "$tmp/flush" "$src/examples/flush.c" $(pkg-config --cflags --libs peerdist)
"$tmp/prefix/sbin/peerdistd" --socket "$tmp/s.sock" --db "$tmp/cache.db" --state-dir "$tmp/state" 2>"$tmp/log" &
pid=$!
for _ in $(seq 100); do test -S "$tmp/s.sock" && break; sleep 0.05; done
PEERDIST_SOCKET="$tmp/s.sock" LD_LIBRARY_PATH="$lib" "$tmp/flush"
# The Windows-style program of the suite, built from the installed header alone for Windows 8
# and for Windows 7 (-D_WIN32_WINNT=0x0601).
seed=10
for target in -D_WIN32_WINNT=0x0602 -D_WIN32_WINNT=0x0601; do
    seed=$((seed + 1))
    # shellcheck disable=SC2046
    cc -Wall -Wextra -Werror "$target" -o "$tmp/win32_style" "$src/tests/test_win32_style.c" \
        $(pkg-config --cflags --libs peerdist)
    PEERDIST_SOCKET="$tmp/s.sock" LD_LIBRARY_PATH="$lib" "$tmp/win32_style" "$seed"
done
PEERDIST_SOCKET="$tmp/s.sock" LD_LIBRARY_PATH="$lib" "$tmp/prefix/bin/peerdistctl" status
echo "install test passed"
