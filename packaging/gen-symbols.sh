#!/bin/sh
# SPDX-License-Identifier: MIT
# gen-symbols.sh LIBPEERDIST_SO [VERSION] - prints debian/libpeerdist1.symbols for the built
# library: every symbol the version script client/libpeerdist.sym exports (PeerDist*,
# pdw32_*, peerdist_port_* in node PEERDIST_1.0), each with VERSION, the first upstream
# version that has it (default 0.1.0). Used to write packaging/debian/libpeerdist1.symbols
# and, by the packaging_symbols test, to check that file still lists exactly those symbols;
# a symbol added later gets the version that added it, by hand, in the file.
# gen-symbols.sh --check SYMBOLS_FILE LIBPEERDIST_SO - fails, showing the difference, when
# SYMBOLS_FILE does not list exactly the symbols the library exports (versions aside).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
if [ "$1" = --check ]; then
    names() { sed -n 's/^ \([^ ]*\) .*/\1/p' | sort; }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    sh "$0" "$3" | names >"$tmp/built"
    names <"$2" >"$tmp/listed"
    if ! diff -u "$tmp/listed" "$tmp/built"; then
        echo "$2 is not what the library exports (- listed only, + exported only): edit it," >&2
        echo "giving a new symbol the version that adds it (packaging/gen-symbols.sh LIB VERSION)" >&2
        exit 1
    fi
    echo "$2: the $(wc -l <"$tmp/built") exported symbols, no more"
    exit 0
fi
lib=$1
version=${2:-0.1.0}
sym="$here/../client/libpeerdist.sym"
node=$(sed -n 's/^\([A-Z_0-9.]*\) *{.*/\1/p' "$sym" | head -n 1)
globs=$(sed -n '/global:/,/local:/p' "$sym" | sed -n 's/^ *\([A-Za-z_0-9*]*\);.*/\1/p')
echo "libpeerdist.so.1 libpeerdist1 #MINVER#"
echo "* Build-Depends-Package: libpeerdist-dev"
echo " $node@$node $version"
nm -D --defined-only "$lib" | awk '{print $3}' | sed 's/@@*.*//' | sort -u | while read -r name; do
    for g in $globs; do
        # shellcheck disable=SC2254
        case $name in $g) echo " $name@$node $version"; break ;; esac
    done
done
