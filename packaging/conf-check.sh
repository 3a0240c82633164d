#!/bin/sh
# SPDX-License-Identifier: MIT
# conf-check.sh PEERDISTD SOURCE_DIR - the sample packaging/peerdistd.conf against the daemon:
# every key daemon/config.c accepts is in the sample (commented, with its default) and the
# sample names no other key; with every key uncommented, PEERDISTD starts on it (paths moved
# to a temporary directory by flags, which beat the file) and stops cleanly.
set -eu
peerdistd=$1
src=$2
sample=$src/packaging/peerdistd.conf
tmp=$(mktemp -d)
pid=
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$tmp"' EXIT
grep -o 'strcmp(name, "[a-z0-9_]*")' "$src/daemon/config.c" | sed 's/.*"\(.*\)")/\1/' | sort -u >"$tmp/known"
sed -n 's/^;\([a-z0-9_]*\) = .*/\1/p' "$sample" | sort >"$tmp/listed"
status=0
if [ -n "$(uniq -d "$tmp/listed")" ]; then
    echo "listed twice in the sample: $(uniq -d "$tmp/listed" | tr '\n' ' ')"
    status=1
fi
missing=$(comm -23 "$tmp/known" "$tmp/listed" | tr '\n' ' ')
extra=$(comm -13 "$tmp/known" "$tmp/listed" | tr '\n' ' ')
[ -z "$missing" ] || { echo "keys of daemon/config.c missing from the sample: $missing"; status=1; }
[ -z "$extra" ] || { echo "keys in the sample that daemon/config.c does not know: $extra"; status=1; }
[ "$status" = 0 ] || exit 1

sed 's/^;\([a-z0-9_]* = \)/\1/' "$sample" >"$tmp/all.conf"
"$peerdistd" --config "$tmp/all.conf" --socket "$tmp/s.sock" --db "$tmp/cache.db" \
    --state-dir "$tmp/state" 2>"$tmp/log" &
pid=$!
for _ in $(seq 300); do
    grep -q 'listening on' "$tmp/log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$tmp/log"; echo "peerdistd refused the sample with every key set"; exit 1; }
    sleep 0.1
done
grep -q 'listening on' "$tmp/log" || { cat "$tmp/log"; echo "peerdistd did not start on the sample"; exit 1; }
kill -TERM "$pid"
wait "$pid" || { cat "$tmp/log"; echo "peerdistd did not stop cleanly"; exit 1; }
pid=
echo "conf-check: $(wc -l <"$tmp/known") keys, each in the sample with a value peerdistd accepts"
