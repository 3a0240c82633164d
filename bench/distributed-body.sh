#!/bin/sh
# SPDX-License-Identifier: MIT
# distributed-body.sh - the measurements of bench/run-distributed.sh, run by tests/netns.sh
# inside its LAN (PD_* environment: see tests/netns.sh). Not meant to be run by hand.
set -eu
reps=3 size=1024 size2=256 rate=20M
while getopts r:s:S:l: o; do
    case $o in
    r) reps=$OPTARG ;; s) size=$OPTARG ;; S) size2=$OPTARG ;; l) rate=$OPTARG ;;
    *) echo "usage: run-distributed.sh [-r REPS] [-s MiB] [-S MiB] [-l RATE]" >&2; exit 2 ;;
    esac
done
# -S 0: part 2 is skipped (a 1 MiB file is still made, so the set-up stays the same).
reps2=$reps
[ "$size2" -gt 0 ] || { reps2=0; size2=1; }
w=$PD_NETNS_DIR/bench
mkdir -p "$w/out"
res=$w/results
: >"$res"

ctl() { # ctl HOST ARGS...: peerdistctl on HOST against its daemon
    h=$1; shift
    up=$(echo "$h" | tr a-z A-Z)
    PEERDIST_SOCKET=$PD_NETNS_DIR/$h/sock ip netns exec "$(eval echo \$PD_NS_$up)" \
        "$PD_PEERDISTCTL" "$@"
}
conf() { # conf HOST KEY VALUE: set KEY in HOST's config, reload with SIGHUP
    f=$PD_NETNS_DIR/$1/peerdistd.conf
    sed -i "/^$2 =/d" "$f"
    echo "$2 = $3" >>"$f"
    kill -HUP "$(cat "$PD_NETNS_DIR/$1/pid")"
}
now() { date +%s.%N; }
mibs() { # mibs BYTES START END -> MiB/s
    awk -v b="$1" -v s="$2" -v e="$3" 'BEGIN { printf "%.1f", b / 1048576 / (e - s) }'
}
fetched_from() { # fetched_from ADDR: bytes b fetched from the peer at ADDR (IPv4 and IPv6)
    ctl b peers --json | python3 -c '
import json, sys
a4, a6 = sys.argv[1], sys.argv[2]
t = 0
for p in json.load(sys.stdin):
    h = p["address"].rsplit(":", 1)[0].strip("[]").split("%")[0]
    if h in (a4, a6):
        t += p.get("bytes_fetched", 0)
print(t)' "$1" "$2"
}
restart() { # restart HOST: a fresh peerdistd on HOST (same config, database and cache)
    pid=$(cat "$PD_NETNS_DIR/$1/pid")
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    up=$(echo "$1" | tr a-z A-Z)
    ip netns exec "$(eval echo \$PD_NS_$up)" "$PD_PEERDISTD" \
        --config "$PD_NETNS_DIR/$1/peerdistd.conf" >>"$PD_NETNS_DIR/$1/log" 2>&1 &
    echo $! >"$PD_NETNS_DIR/$1/pid"
    for _ in $(seq 300); do
        ctl "$1" status >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "run-distributed: peerdistd on $1 did not come back" >&2
    exit 1
}
# b fresh: no distrust, no ProbeMatch remembered from the last run
restart_b() { restart b; }
fdsync() { python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fdatasync(fd)' "$1"; }

echo "load before: $(uptime)" | tee -a "$res"
# The figures, not the debug log, are measured: info as a user would run it.
for h in a b c; do conf $h log_level info; done
sleep 0.5

# ---- content -------------------------------------------------------------------------
echo "making ${size} MiB and ${size2} MiB of random data"
head -c "${size}M" /dev/urandom >"$w/big"
head -c "${size2}M" /dev/urandom >"$w/small"
ctl a publish "$w/big" --version 1 -o "$w/big.ci" >/dev/null
ctl a inject "$w/big" --ci "$w/big.ci" --tag 0123456789abcdef0123456789abcdef >/dev/null
ctl a publish "$w/small" --version 1 -o "$w/small.ci" >/dev/null
for h in a c; do
    ctl $h inject "$w/small" --ci "$w/small.ci" --tag 0123456789abcdef0123456789abcdef >/dev/null
done
bigsum=$(sha256sum <"$w/big" | cut -d' ' -f1)
smallsum=$(sha256sum <"$w/small" | cut -d' ' -f1)
bytes=$((size * 1048576))
bytes2=$((size2 * 1048576))

# ---- nginx in a's namespace, serving the same file ------------------------------------
ng=$w/nginx
mkdir -p "$ng/root" "$ng/tmp"
ln "$w/big" "$ng/root/big"
cat >"$ng/nginx.conf" <<NGX
daemon off;
user root;
worker_processes 1;
pid $ng/nginx.pid;
error_log $ng/error.log;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path $ng/tmp;
    proxy_temp_path $ng/tmp;
    fastcgi_temp_path $ng/tmp;
    uwsgi_temp_path $ng/tmp;
    scgi_temp_path $ng/tmp;
    server {
        listen $PD_ADDR_A:8081;
        root $ng/root;
    }
}
NGX
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
ip netns exec "$PD_NS_A" "$nginx_bin" -c "$ng/nginx.conf" -e "$ng/error.log" &
for _ in $(seq 50); do
    ip netns exec "$PD_NS_B" curl -s -o /dev/null -r 0-0 "http://$PD_ADDR_A:8081/big" && break
    sleep 0.1
done

# ---- 3: the idle probe (baseline) ------------------------------------------------------
for r in $(seq "$reps"); do
    PEERDIST_SOCKET=$PD_NETNS_DIR/a/sock "$BENCH_PROBE" -t 5 -l idle | tee -a "$res"
done

# ---- 1: one peer, 1 GiB: curl from nginx vs peerdistctl get ------------------------------
for r in $(seq "$reps"); do
    out=$w/out/curl
    rm -f "$out"
    s=$(now)
    ip netns exec "$PD_NS_B" curl -s -f -o "$out" "http://$PD_ADDR_A:8081/big"
    fdsync "$out"
    e=$(now)
    curl=$(mibs $bytes "$s" "$e")
    echo "curl_mibs $curl" | tee -a "$res"
    rm -f "$out"

    # Each get starts alike: b's cache empty, b's daemon fresh (a peer it distrusted in the last
    # repetition would otherwise stay out for PEER_FETCH_DISTRUST_SECONDS).
    restart_b
    ctl b flush --all >/dev/null
    before=$(fetched_from "$PD_ADDR_A" "$PD_ADDR6_A")
    out=$w/out/get
    rm -f "$out"
    PEERDIST_SOCKET=$PD_NETNS_DIR/a/sock "$BENCH_PROBE" -t 600 -l serving >"$w/probe.out" &
    probe=$!
    s=$(now)
    ok=1
    ctl b get --ci "$w/big.ci" -o "$out" --timeout infinite || ok=0
    [ $ok = 0 ] || fdsync "$out"
    e=$(now)
    kill -TERM $probe
    wait $probe || true
    tee -a "$res" <"$w/probe.out"
    after=$(fetched_from "$PD_ADDR_A" "$PD_ADDR6_A")
    if [ $ok = 0 ]; then
        # A failed get is a finding, not the end of the run: say so, keep the logs' tails.
        echo "get_failed rep=$r from_a=$((after - before))" | tee -a "$res"
        for h in a b; do
            echo "---- host $h's log, last 30 lines ----"
            tail -n 30 "$PD_NETNS_DIR/$h/log"
        done | tee "$w/get-failed-$r.log"
        continue
    fi
    echo "get_mibs $(mibs $bytes "$s" "$e") curl=$curl from_a=$((after - before))" | tee -a "$res"
    if [ "$r" = 1 ] && [ "$(sha256sum <"$out" | cut -d' ' -f1)" != "$bigsum" ]; then
        echo "run-distributed: FAIL: the bytes b got differ from the file" >&2
        exit 1
    fi
    rm -f "$out"
done
kill -TERM "$(cat "$ng/nginx.pid")"

# ---- 2: two rate-limited peers vs one -----------------------------------------------------
conf a serve_rate_limit "$rate"
conf c serve_rate_limit "$rate"
# Restarted as well: a reload keeps the serve token bucket, and a daemon that served without a
# limit carries the bytes it served as debt into the new limit (a served 3 GiB in part 1:
# ~150 s of silence at 20M, every request of b's timing out). Reported to the serve branch.
restart a
restart c
for r in $(seq "$reps2"); do
    for peers in 1 2; do
        if [ $peers = 1 ]; then conf c serve no; else conf c serve yes; fi
        # A fresh b: it remembers ProbeMatches for PEER_FETCH_MATCH_SECONDS (10 s) and distrust
        # for PEER_FETCH_DISTRUST_SECONDS; this run probes afresh and finds the peers serving now.
        sleep 0.5
        restart_b
        ctl b flush --all >/dev/null
        ba=$(fetched_from "$PD_ADDR_A" "$PD_ADDR6_A")
        bc=$(fetched_from "$PD_ADDR_C" "$PD_ADDR6_C")
        out=$w/out/small
        rm -f "$out"
        s=$(now)
        if ! ctl b get --ci "$w/small.ci" -o "$out" --timeout infinite; then
            echo "rate_failed peers=$peers rep=$r" | tee -a "$res"
            tail -n 30 "$PD_NETNS_DIR/b/log"
            continue
        fi
        e=$(now)
        aa=$(fetched_from "$PD_ADDR_A" "$PD_ADDR6_A")
        ac=$(fetched_from "$PD_ADDR_C" "$PD_ADDR6_C")
        echo "rate${peers}_mibs $(mibs $bytes2 "$s" "$e") from_a=$((aa - ba)) from_c=$((ac - bc))" |
            tee -a "$res"
        if [ "$r" = 1 ] && [ "$(sha256sum <"$out" | cut -d' ' -f1)" != "$smallsum" ]; then
            echo "run-distributed: FAIL: the bytes b got differ from the file" >&2
            exit 1
        fi
        rm -f "$out"
    done
done
echo "load after: $(uptime)" | tee -a "$res"

# ---- the summary -------------------------------------------------------------------------
python3 - "$res" "$rate" <<'PY'
import re, statistics, sys
lines = open(sys.argv[1]).read().splitlines()
def vals(prefix, key=None):
    out = []
    for l in lines:
        if l.startswith(prefix):
            if key is None:
                out.append(float(l.split()[1]))
            else:
                m = re.search(key + r"=([0-9.]+)", l)
                out.append(float(m.group(1)))
    return out
def fmt(v, unit=""):
    if not v:
        return "none"
    return "%.1f%s (min %.1f, max %.1f, n=%d)" % (statistics.median(v), unit, min(v), max(v), len(v))
def fmt3(v):
    return "%.3f ms (min %.3f, max %.3f, n=%d)" % (statistics.median(v), min(v), max(v), len(v))
curl, get = vals("curl_mibs"), vals("get_mibs")
r1, r2 = vals("rate1_mibs"), vals("rate2_mibs")
idle, serving = vals("probe idle", "p99_ms"), vals("probe serving", "p99_ms")
print()
print("== SUMMARY (medians over repetitions, MiB/s) ==")
print("1. one peer:  peerdistctl get + fdatasync  %s" % fmt(get))
print("              curl from nginx + fdatasync  %s" % fmt(curl))
ratios = [g / c for g, c in zip(get, vals("get_mibs", "curl"))]
nfail = sum(1 for l in lines if l.startswith("get_failed"))
if nfail:
    print("              FAILED gets (not counted): %d of %d" % (nfail, len(curl)))
if ratios:
    print("              ratio per repetition %s; median %.0f %%  target >= 50 %%: %s" % (
        ", ".join("%.0f%%" % (100 * x) for x in ratios), 100 * statistics.median(ratios),
        "met" if statistics.median(ratios) >= 0.5 else "MISSED"))
print("2. rate %s per peer: one peer  %s" % (sys.argv[2], fmt(r1)))
print("                        two peers %s" % fmt(r2))
ca = vals("rate2_mibs", "from_a"); cc = vals("rate2_mibs", "from_c")
sp = [b / a for a, b in zip(r1, r2)] or [0]
print("              speed-up per repetition %s; median %.2fx  target ~2x; two-peer split a/c MiB: %s" % (
    ", ".join("%.2fx" % x for x in sp), statistics.median(sp),
    ", ".join("%d/%d" % (a / 1048576, c / 1048576) for a, c in zip(ca, cc))))
print("3. GetStatus p99 on a while serving %s" % fmt3(serving))
print("                       idle (baseline) %s" % fmt3(idle))
print("   max while serving: %s ms  target p99 <= 10 ms: %s" % (
    ", ".join("%.1f" % x for x in vals("probe serving", "max_ms")),
    "met" if statistics.median(serving) <= 10 else "MISSED"))
# One machine-readable line last (bench/README.md): medians, with _min and _max.
def load(prefix):  # the 1-minute load average uptime printed
    for l in lines:
        m = re.search(r"load average: ([0-9.]+)", l) if l.startswith(prefix) else None
        if m:
            return m.group(1)
    return "nan"
def kv(name, v, fmt="%.3f"):
    if not v:
        return "%s=nan %s_min=nan %s_max=nan" % (name, name, name)
    return "%s=%s %s_min=%s %s_max=%s" % (name, fmt % statistics.median(v), name, fmt % min(v),
                                         name, fmt % max(v))
print("SUMMARY distributed_bench " + " ".join([
    kv("get_mib_s", get, "%.1f"), kv("curl_mib_s", curl, "%.1f"), kv("get_ratio", ratios),
    kv("two_peer_ratio", [b / a for a, b in zip(r1, r2)]), kv("p99_serving_ms", serving),
    kv("p99_idle_ms", idle), "get_failed=%d" % nfail, "reps=%d" % len(curl),
    "load_before=%s" % load("load before"), "load_after=%s" % load("load after")]))
PY
