#!/bin/sh
# SPDX-License-Identifier: MIT
# man-check.sh PAGE... - fails when groff warns about a manual page (roff built by pandoc
# from docs/*.md) or when its NAME line is not what whatis(1) and apropos(1) read.
set -eu
status=0
for page in "$@"; do
    out=$(groff -man -ww -z "$page" 2>&1) || true
    if [ -n "$out" ]; then
        echo "$page: groff warns:"
        printf '%s\n' "$out"
        status=1
    fi
    if command -v lexgrog >/dev/null 2>&1 && ! lexgrog "$page" >/dev/null 2>&1; then
        echo "$page: no NAME section lexgrog can parse ('name - description')"
        status=1
    fi
done
[ "$status" = 0 ] && echo "man-check: $# pages, no warnings"
exit "$status"
