#!/bin/sh
# SPDX-License-Identifier: MIT
# run-datapath.sh [datapath_bench options] - starts a private peerdistd on a scratch
# directory under build/ (the real disk, like /var/cache), runs datapath_bench against it
# (restarting the daemon once per repetition, for the first read after a start), prints the
# daemon's peak RSS, stops it, and ends with datapath_bench's SUMMARY line (the RSS added).
# Default: 1 GiB, 3 repetitions. PEERDISTD=path runs another
# peerdistd binary (an older build, for a baseline) under the same benchmark; BENCH_CONF is
# the daemon's configuration file's text (for example 'spare_pool = 0').
set -eu
cd "$(dirname "$0")/.."
cmake --build build -j"$(nproc)" --target datapath_bench peerdistd peerdistctl >/dev/null
daemon=$(realpath "${PEERDISTD:-build/daemon/peerdistd}")
dir=$(mktemp -d "$PWD/build/bench-datapath.XXXXXX")
trap 'test -f "$dir/pid" && kill "$(cat "$dir/pid")" 2>/dev/null; rm -rf "$dir"' EXIT
printf '[peerdistd]\n%s\n' "${BENCH_CONF:-}" >"$dir/daemon.conf"
# start: a daemon on the scratch cache, its pid in $dir/pid, once its socket answers.
cat >"$dir/start" <<EOS
#!/bin/sh
rm -f "$dir/s.sock"
"$daemon" --socket "$dir/s.sock" --db "$dir/cache.db" \
    --state-dir "$dir/state" --config "$dir/daemon.conf" 2>>"$dir/log" &
echo \$! >"$dir/pid"
for _ in \$(seq 200); do test -S "$dir/s.sock" && exit 0; sleep 0.05; done
exit 1
EOS
# stop: SIGTERM, then wait until it is gone (or a zombie nobody reaps).
cat >"$dir/stop" <<EOS
#!/bin/sh
pid=\$(cat "$dir/pid")
kill "\$pid"
while kill -0 "\$pid" 2>/dev/null && ! grep -q ' Z ' "/proc/\$pid/stat" 2>/dev/null; do
    sleep 0.02
done
EOS
# restart: stop, then start again on the same cache (datapath_bench -R).
printf 'sh "%s/stop" && exec sh "%s/start"\n' "$dir" "$dir" >"$dir/restart"

sh "$dir/start"
mkdir -p "$dir/scratch"
uptime >&2
PEERDIST_SOCKET="$dir/s.sock" build/bench/datapath_bench -R "sh $dir/restart" -p "$dir/pid" \
    -g "$(realpath build/client/peerdistctl)" "$@" "$dir/scratch" >"$dir/out"
grep -v '^SUMMARY ' "$dir/out" || true
rss=$(awk '/VmHWM/ {print $2}' "/proc/$(cat "$dir/pid")/status")
echo "peerdistd_peak_rss_kib=$rss (VmHWM, since the last restart)"
# The benchmark's SUMMARY line last, with the daemon's peak RSS.
echo "$(grep '^SUMMARY ' "$dir/out") peerdistd_peak_rss_kib=$rss"
sh "$dir/stop"
rm -f "$dir/pid"
