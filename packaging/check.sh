#!/bin/sh
# check.sh PEERDISTD - verifies the systemd unit against an installed daemon path and prints
# its exposure score (systemd-analyze security; lower is better, anchors aim for <= 2).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
daemon=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed "s|/usr/sbin/peerdistd|$daemon|" "$here/peerdistd.service" >"$tmp/peerdistd.service"
systemd-analyze verify "$tmp/peerdistd.service"
systemd-analyze security --offline=yes "$tmp/peerdistd.service" | tail -n 1
