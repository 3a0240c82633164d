#!/bin/sh
# SPDX-License-Identifier: MIT
# check.sh PEERDISTD - verifies the systemd units (peerdistd.service from its .in, with
# ExecStart pointed at PEERDISTD, and peerdistd.socket) and checks the service's exposure
# score (systemd-analyze security; lower is better): it must stay at or below MAX_EXPOSURE.
set -eu
MAX_EXPOSURE=2.0
here=$(cd "$(dirname "$0")" && pwd)
daemon=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|@CMAKE_INSTALL_FULL_SBINDIR@/peerdistd|$daemon|" "$here/peerdistd.service.in" >"$tmp/peerdistd.service"
if grep -q "@[A-Z_]*@" "$tmp/peerdistd.service"; then
    echo "check.sh: a placeholder is left in peerdistd.service:" >&2
    grep -n "@[A-Z_]*@" "$tmp/peerdistd.service" >&2
    exit 1
fi
cp "$here/peerdistd.socket" "$tmp/"
# The man pages are not installed yet here: tests/deb_roundtrip.sh verifies with them.
systemd-analyze verify --man=no "$tmp/peerdistd.socket" "$tmp/peerdistd.service"
line=$(systemd-analyze security --offline=yes "$tmp/peerdistd.service" | tail -n 1)
echo "$line"
score=$(printf '%s\n' "$line" | sed -n 's/.*: *\([0-9][0-9.]*\) .*/\1/p')
if [ -z "$score" ]; then
    echo "check.sh: no exposure score in: $line" >&2
    exit 1
fi
if awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s > m) }'; then
    echo "check.sh: exposure $score is above $MAX_EXPOSURE" >&2
    exit 1
fi
echo "exposure $score <= $MAX_EXPOSURE"
