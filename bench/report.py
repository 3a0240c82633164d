#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# report.py - `make bench`: runs every benchmark, keeps each one's output in
# bench/results/<name>.log, parses their SUMMARY / DEPTH / CURVE lines and writes
# bench/results/REPORT.md with .dat files and gnuplot PNGs. Python 3 standard library only.
"""Usage: bench/report.py [--quick] [--only a,b] [--no-run] [--build DIR] [--out DIR]

--no-run rebuilds the report from the logs already in the results directory.
Environment: BENCH_QUICK=1 and BENCH_ONLY=a,b do the same as --quick and --only.
"""

import argparse
import datetime
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---- what runs: name -> (command, quick command, needs root, timeout s) ----
# Commands run from the checkout's root; {build} is the build directory.
BENCHES = [
    ("rpc_bench", ["bench/run-rpc.sh"], ["bench/run-rpc.sh", "-r", "2", "-n", "2000"], False, 600),
    ("datapath_bench", ["bench/run-datapath.sh", "-r", "3"],
     ["bench/run-datapath.sh", "-r", "2", "-s", "128"], False, 900),
    ("flush_bench", ["{build}/bench/flush_bench", "-r", "3", "{build}"],
     ["{build}/bench/flush_bench", "-r", "1", "-m", "256", "{build}"], False, 600),
    ("hash_bench", ["bench/hash-bench.sh", "{build}/client/peerdistctl"],
     ["env", "RUNS=2", "SIZE_MIB=128", "bench/hash-bench.sh", "{build}/client/peerdistctl"],
     False, 600),
    ("publish_bench", ["bench/publish-bench.sh"],
     ["bench/publish-bench.sh", "-r", "2", "-s", "128"], False, 600),
    ("inject_bench", ["bench/inject-bench.sh"], ["bench/inject-bench.sh", "128", "2"], False, 600),
    ("evict_bench", ["{build}/bench/evict_bench", "-r", "3", "{build}"],
     ["{build}/bench/evict_bench", "-r", "1", "{build}"], False, 300),
    ("evict_e2e", ["bench/run-evict.sh"], ["bench/run-evict.sh", "-s", "256"], True, 600),
    ("clients_bench", ["bench/run-clients.sh"],
     ["bench/run-clients.sh", "-n", "200", "-t", "6", "-i", "3", "-s", "16"], True, 600),
    ("distributed", ["bench/run-distributed.sh", "-r", "3"],
     ["bench/run-distributed.sh", "-r", "1", "-s", "64", "-S", "64"], True, 1200),
]

# ---- what is reported: one row per figure ----
# bench: the BENCHES name whose log holds it; key: the figure (SUMMARY key, else any
# key=value of that log); base: its same-run baseline key; ratio: a key holding the ratio
# (else value / base is computed); target: (what, op, threshold) with what "ratio" or
# "value". Keys a benchmark does not print show as "not measured".
FIGURES = [
    dict(figure="synchronous PeerDistGetStatus", bench="rpc_bench", key="getstatus_rtt_us",
         unit="µs", base="baseline_uds_rtt_us", base_label="raw Unix-socket 64 B round trip",
         ratio="getstatus_ratio", target=("ratio", "<=", 1.5)),
    dict(figure="GetStatus, both ends pinned to one CPU (rtt_placement)", bench="rpc_bench",
         key="same_getstatus_us", unit="µs", base="same_raw_us",
         base_label="raw round trip, both ends on that CPU"),
    dict(figure="GetStatus, client and daemon pinned to different CPUs", bench="rpc_bench",
         key="cross_getstatus_us", unit="µs", base="cross_raw_us",
         base_label="raw round trip, one end on each CPU"),
    dict(figure="libevent echo loop, unpinned (an event loop's floor)", bench="rpc_bench",
         key="free_echo_us", unit="µs", base="free_raw_us",
         base_label="raw round trip, unpinned"),
    dict(figure="one small flush waited for (event)", bench="rpc_bench", key="flush_event_us",
         unit="µs", base="baseline_uds_rtt_us", base_label="raw Unix-socket 64 B round trip",
         ratio="flush_event_ratio", target=("ratio", "<=", 1.5)),
    dict(figure="one small flush waited for (port)", bench="rpc_bench", key="flush_port_us",
         unit="µs", base="baseline_uds_rtt_us", base_label="raw Unix-socket 64 B round trip",
         ratio="flush_port_ratio", target=("ratio", "<=", 1.5)),
    dict(figure="flushes, 64 in flight", bench="rpc_bench", key="flush_per_s", unit="/s",
         base="redis_ping_per_s", base_label="redis-benchmark -P 64 ping, same socket kind",
         ratio="flush_vs_redis", target=("ratio", ">=", 0.35)),
    dict(figure="GetStatus p99 during that flush", bench="datapath_bench",
         key=("getstatus_p99_ms_during_flush", "getstatus_p99_ms"), unit="ms", target=("value", "<=", 10)),
    dict(figure="flush of the tag labelling datapath_bench's file (1 GiB), end to end", bench="datapath_bench", key="flush_s",
         unit="s", target=("value", "<=", 1.0)),
    dict(figure="flush transaction, 1 GiB of labels", bench="flush_bench", key="flush_tag_ms",
         unit="ms", base="baseline_delete_ms", base_label="plain DELETE of the rows",
         ratio="ratio"),
    dict(figure="flush cost against tag size: exponent k of ms ~ rows^k", bench="flush_bench",
         key="curve_exponent", unit="", base="baseline_curve_exponent",
         base_label="the plain DELETE's k", target=("value", "<=", 1.1), or_base=0.05,
         no_ratio=True,
         note="least squares on log-log over 64 MiB … 10 GiB of labels; k <= 1 is linear or "
              "better; met at k <= 1.1, or when k is within 0.05 of the plain DELETE's k "
              "measured at the same moments (a loaded machine bends both curves alike)"),
    dict(figure="peerdistctl hash V1", bench="hash_bench", key="v1_mib_s", unit="MiB/s",
         base="sha256_mib_s", base_label="openssl dgst -sha256", target=("ratio", ">=", 1.0)),
    dict(figure="peerdistctl hash V2", bench="hash_bench", key="v2_mib_s", unit="MiB/s",
         base="sha512_mib_s", base_label="openssl dgst -sha512", target=("ratio", ">=", 1.0)),
    dict(figure="peerdistctl publish, V1 + V2 in one pass (time)", bench="publish_bench",
         key="publish_v2_s", unit="s", base="baseline_v2_s",
         base_label="openssl -sha256 then -sha512", ratio="v2_ratio", target=("ratio", "<=", 1.0)),
    dict(figure="PublishStream (API, V1)", bench="datapath_bench", key="publish_mib_s",
         unit="MiB/s", base="openssl_sha256_mib_s", base_label="openssl dgst -sha256",
         ratio="publish_ratio", target=("ratio", ">=", 0.8)),
    dict(figure="peerdistctl inject", bench="inject_bench", key="inject_mib_s", unit="MiB/s",
         base="baseline_mib_s", base_label="slower of openssl -sha256 and dd fdatasync",
         ratio="ratio", target=("ratio", ">=", 0.8)),
    dict(figure="PeerDistClientAddData", bench="datapath_bench", key="adddata_mib_s",
         unit="MiB/s", base="adddata_baseline_mib_s",
         base_label="slower of openssl -sha256 and write + fdatasync", ratio="adddata_ratio",
         target=("ratio", ">=", 0.8)),
    dict(figure="StreamRead", bench="datapath_bench", key="streamread_mib_s", unit="MiB/s",
         base=("uds_transfer_mib_s", "uds_mib_s"), base_label="raw Unix-socket transfer",
         ratio="streamread_ratio", target=("ratio", ">=", 0.8)),
    dict(figure="BlockRead", bench="datapath_bench", key="blockread_mib_s", unit="MiB/s",
         base=("uds_transfer_mib_s", "uds_mib_s"), base_label="raw Unix-socket transfer",
         ratio="blockread_ratio", target=("ratio", ">=", 0.8)),
    dict(figure="peerdistctl get (local cache)", bench="datapath_bench", key="get_mib_s",
         unit="MiB/s", base=("uds_transfer_mib_s", "uds_mib_s"), base_label="raw Unix-socket transfer",
         ratio="get_ratio", target=("ratio", ">=", 0.8)),
    dict(figure="1,000 clients of 10 uids (quick: 200): small-call p99", bench="clients_bench",
         key="small_p99_ms", unit="ms", base="idle_p99_ms",
         base_label="one client, idle daemon", ratio="p99_ratio", target=("value", "<=", 10)),
    dict(figure="1,000 clients of 10 uids (quick: 200): daemon peak RSS", bench="clients_bench",
         key="daemon_vmhwm_kib", unit="KiB", base="daemon_vmrss_before_kib",
         base_label="daemon RSS before the clients", target=("value", "<=", 65536)),
    dict(figure="eviction of 1 GiB: probe p99", bench="evict_e2e", key="probe_p99_ms",
         unit="ms", base="idle_p99_ms", base_label="same probe, idle daemon",
         target=("value", "<=", 10)),
    dict(figure="eviction passes (database)", bench="evict_bench", key="evict_ms", unit="ms",
         base="baseline_delete_ms", base_label="plain DELETE of the rows", ratio="ratio"),
    dict(figure="distributed: 1 GiB from one peer", bench="distributed", key="get_mib_s",
         unit="MiB/s", base="curl_mib_s", base_label="curl from nginx + fdatasync",
         ratio="get_ratio", target=("ratio", ">=", 0.5)),
    dict(figure="distributed: b's fetch rate, two rate-limited peers", bench="distributed",
         key="two_peer_ratio", unit="× one peer", target=("value", ">=", 1.8)),
    dict(figure="distributed: GetStatus p99 while serving", bench="distributed",
         key=("p99_serving_ms", "status_p99_ms"), unit="ms",
         base=("p99_idle_ms", "status_idle_p99_ms"), base_label="same probe, idle daemon",
         target=("value", "<=", 10)),
]

# Figures of benchmarks that print no SUMMARY key for them (yet): bench -> [(regex, keys)],
# the regex's groups in order. A SUMMARY key of the same name wins.
LEGACY = {
    "hash_bench": [
        (r"^V1 +([\d.]+) s +([\d.]+) MiB/s \| sha256 \(dgst\) +([\d.]+) s +([\d.]+) MiB/s",
         ["v1_s", "v1_mib_s", "sha256_s", "sha256_mib_s"]),
        (r"^V2 +([\d.]+) s +([\d.]+) MiB/s \| sha512 \(dgst\) +([\d.]+) s +([\d.]+) MiB/s",
         ["v2_s", "v2_mib_s", "sha512_s", "sha512_mib_s"]),
    ],
    "datapath_bench": [
        (r"^adddata_mib_s=\S+ .*\)_mib_s=([\d.]+)", ["adddata_baseline_mib_s"]),
    ],
    "distributed": [
        (r"peerdistctl get \+ fdatasync +([\d.]+) \(min ([\d.]+), max ([\d.]+)",
         ["get_mib_s", "get_mib_s_min", "get_mib_s_max"]),
        (r"curl from nginx \+ fdatasync +([\d.]+) \(min", ["curl_mib_s"]),
        (r"GetStatus p99 on a while serving ([\d.]+) ms \(min ([\d.]+), max ([\d.]+)",
         ["status_p99_ms", "status_p99_ms_min", "status_p99_ms_max"]),
        (r"idle \(baseline\) ([\d.]+) ms", ["status_idle_p99_ms"]),
        (r"median ([\d.]+)x +target ~2x", ["two_peer_ratio"]),
    ],
}

NUM = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
KV = re.compile(r"([A-Za-z_][\w.]*)=(\S+)")
DATA = re.compile(r"^([A-Z][A-Z_]+) (\S+)((?: +[A-Za-z_][\w.]*=\S+)+)\s*$")


def number(v):
    v = v.rstrip(",;")
    return float(v) if NUM.match(v) else v


def parse(text, legacy=()):
    """SUMMARY keys (merged over every SUMMARY line), data series and loose key=value pairs."""
    summary, series, loose = {}, {}, {}
    for line in text.splitlines():
        line = line.strip()
        for rx, keys in legacy:
            m = re.search(rx, line)
            if m:
                for k, v in zip(keys, m.groups()):
                    loose[k] = float(v)
        if line.startswith("SUMMARY "):
            parts = line.split()
            for k, v in KV.findall(" ".join(parts[2:])):
                summary[k] = number(v)
            continue
        m = DATA.match(line) if not line.startswith("PLACEMENT ") else None
        if m:
            row = {k: number(v) for k, v in KV.findall(m.group(3))}
            series.setdefault((m.group(1), m.group(2)), []).append(row)
            continue
        for k, v in KV.findall(line):
            val = number(v)
            if isinstance(val, float):
                loose.setdefault(k, val)
    return summary, series, loose


class Result:
    def __init__(self, name):
        self.name, self.status, self.seconds = name, "not run", 0.0
        self.summary, self.series, self.loose = {}, {}, {}

    def find(self, keys):
        """(name, value) of the first of keys (a name or a tuple of names) printed."""
        for key in (keys,) if isinstance(keys, str) else keys or ():
            v = self.summary.get(key)
            if not isinstance(v, float):
                v = self.loose.get(key)
            if isinstance(v, float):
                return key, v
        return None, None

    def get(self, keys):
        return self.find(keys)[1]


def run_benches(args, out):
    done = {}
    only = set(filter(None, args.only.split(","))) if args.only else None
    unknown = (only or set()) - {b[0] for b in BENCHES}
    if unknown:
        sys.stderr.write("report.py: no benchmark named %s (names: %s)\n" % (
            ", ".join(sorted(unknown)), ", ".join(b[0] for b in BENCHES)))
    for name, full, quick, root, timeout in BENCHES:
        r = Result(name)
        done[name] = r
        log = os.path.join(out, name + ".log")
        if only is not None and name not in only:
            r.status = "not selected"
            if os.path.exists(log):
                load_log(r, log, "earlier log")
            continue
        cmd = [c.replace("{build}", args.build) for c in (quick if args.quick else full)]
        script = next(c for c in cmd[1:] if "=" not in c) if cmd[0] == "env" else cmd[0]
        if not os.path.exists(os.path.join(ROOT, script)):
            r.status = "not present (%s)" % script
            continue
        if root and os.geteuid() != 0:
            r.status = "skipped: needs root"
            continue
        print("== %s: %s" % (name, " ".join(cmd)), flush=True)
        t0 = time.monotonic()
        with open(log, "w") as f:
            f.write("# %s  %s\n# load before: %s\n" % (" ".join(cmd), now(), load()))
            f.flush()
            try:
                p = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                   timeout=timeout)
                r.status = "ok" if p.returncode == 0 else "exit %d" % p.returncode
                if p.returncode == 77:
                    r.status = "skipped (exit 77)"
            except subprocess.TimeoutExpired:
                r.status = "timed out after %d s" % timeout
            r.seconds = time.monotonic() - t0
            f.write("# load after: %s\n# seconds: %.0f\n" % (load(), r.seconds))
        load_log(r, log, r.status)
        print("   %s in %.0f s" % (r.status, r.seconds), flush=True)
    return done


def load_log(r, log, status):
    with open(log, errors="replace") as f:
        text = f.read()
    r.summary, r.series, r.loose = parse(text, LEGACY.get(r.name, ()))
    r.status = status
    m = re.search(r"^# seconds: (\d+)$", text, re.M)
    if m and not r.seconds:
        r.seconds = float(m.group(1))


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def load():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def fmt(v, unit=""):
    if v is None:
        return "not measured"
    if v == int(v) and abs(v) < 1e15:
        s = "{:,d}".format(int(v))
    elif abs(v) >= 1000:
        s = "{:,.0f}".format(v)
    elif abs(v) >= 100:
        s = "%.0f" % v
    elif abs(v) >= 10:
        s = "%.1f" % v
    else:
        s = "%.3g" % v
    return s + (" " + unit if unit else "")


def figure_row(f, res):
    r = res.get(f["bench"])
    if r is None:
        return None
    k, v = r.find(f["key"])
    lo, hi = (r.get(k + "_min"), r.get(k + "_max")) if k else (None, None)
    b = r.get(f.get("base"))
    rk, ratio = r.find(f.get("ratio"))
    rlo, rhi = (r.get(rk + "_min"), r.get(rk + "_max")) if rk else (None, None)
    if ratio is None and v is not None and b and not f.get("no_ratio"):
        ratio = v / b
    spread = " (%s–%s)" % (fmt(lo), fmt(hi)) if lo is not None and hi is not None else ""
    value = fmt(v, f["unit"]) + (spread if v is not None else "")
    base = ("%s: %s" % (f["base_label"], fmt(b, f["unit"]))) if f.get("base") else "—"
    verdict, tgt = "—", "—"
    if "target" in f:
        what, op, th = f["target"]
        tgt = "%s %s %s" % ("ratio" if what == "ratio" else "value", op, fmt(th))
        if f.get("or_base") is not None:
            tgt += " or <= baseline + %s" % fmt(f["or_base"])
        x = ratio if what == "ratio" else v
        if x is not None:
            ok = x <= th if op == "<=" else x >= th
            if not ok and f.get("or_base") is not None and v is not None and b is not None:
                ok = v <= b + f["or_base"]
            verdict = "**met**" if ok else "**missed**"
        else:
            verdict = "not measured"
    ratio_s = ("%.2f" % ratio) if ratio is not None else "—"
    if ratio is not None and rlo is not None and rhi is not None:
        ratio_s += " (%.2f–%.2f)" % (rlo, rhi)
    if v is None:
        value = "not measured (%s: %s)" % (f["bench"], r.status)
    return "| %s | %s | %s | %s | %s | %s |" % (f["figure"], value, base, ratio_s, tgt, verdict)


# ---- plots ----

def write_dat(path, header, rows):
    with open(path, "w") as f:
        f.write("# " + " ".join(header) + "\n")
        for row in rows:
            f.write(" ".join("%g" % x if isinstance(x, float) else str(x) for x in row) + "\n")
    return len(rows)


def plots(res, out):
    """Writes the .dat files the bench/*.gp scripts read; returns (png, title) of each made."""
    made = []
    gp = shutil.which("gnuplot")

    def draw(script, png, title):
        if not gp:
            return
        p = subprocess.run([gp, os.path.join(ROOT, "bench", script)], cwd=out,
                           capture_output=True, text=True)
        if p.returncode == 0 and os.path.exists(os.path.join(out, png)):
            made.append((png, title))
        else:
            sys.stderr.write("gnuplot %s: %s\n" % (script, p.stderr.strip()))

    fb = res.get("flush_bench")
    curve = fb.series.get(("CURVE", "flush"), []) if fb else []
    rows = [(c["bytes"] / 2**20, c["rows"], c["ms"], c.get("ms_min", c["ms"]),
             c.get("ms_max", c["ms"]), c.get("baseline_ms", float("nan")))
            for c in curve if isinstance(c.get("bytes"), float) and isinstance(c.get("ms"), float)]
    if rows:
        # a straight line through the largest point: linear cost, for the eye
        ref = rows[-1][2] / rows[-1][0]
        rows = [r + (ref * r[0],) for r in rows]
        write_dat(os.path.join(out, "flush_curve.dat"),
                  ["mib", "rows", "ms", "ms_min", "ms_max", "baseline_ms", "linear_ms"], rows)
        dp = res.get("datapath_bench")
        real = dp.get("flush_s") if dp else None
        size = (dp.get("size_mib") or 1024.0) if dp else 1024.0
        write_dat(os.path.join(out, "flush_real.dat"), ["mib", "ms"],
                  [(size, real * 1e3)] if real is not None else [("NaN", "NaN")])
        draw("flush-curve.gp", "flush_curve.png", "flush time against tag size")

    rpc = res.get("rpc_bench")
    depth = rpc.series.get(("DEPTH", "flush"), []) if rpc else []
    raw = rpc.get("baseline_uds_rtt_us") if rpc else None
    rows = [(d["depth"], d.get("peerdist_per_s", float("nan")),
             d.get("redis_per_s", float("nan")),
             d.get("raw_per_s", 1e6 / raw if raw else float("nan")))
            for d in depth if isinstance(d.get("depth"), float)]
    if rows:
        write_dat(os.path.join(out, "depth_flush.dat"),
                  ["depth", "peerdist_per_s", "redis_per_s", "raw_per_s"], rows)
        draw("depth-flush.gp", "depth_flush.png", "flushes/s against depth")

    dp = res.get("datapath_bench")
    depth = dp.series.get(("DEPTH", "adddata"), []) if dp else []
    rows = [(d["inflight_mib"], d.get("mib_s", float("nan")),
             d.get("baseline_mib_s", float("nan")))
            for d in depth if isinstance(d.get("inflight_mib"), float)]
    if rows:
        write_dat(os.path.join(out, "depth_adddata.dat"),
                  ["inflight_mib", "mib_s", "baseline_mib_s"], rows)
        draw("depth-adddata.gp", "depth_adddata.png", "AddData MiB/s against bytes in flight")

    rows = []
    for f in FIGURES:
        r = res.get(f["bench"])
        if f["unit"] != "MiB/s" or not r:
            continue
        v, b = r.get(f["key"]), r.get(f.get("base"))
        if v is not None and b is not None:
            rows.append(('"%s"' % f["figure"].replace('"', "'"), v, b))
    if rows:
        write_dat(os.path.join(out, "throughput.dat"), ["figure", "mib_s", "baseline_mib_s"],
                  rows)
        draw("throughput.gp", "throughput.png", "read, hash and write throughput beside baselines")
    return made


def flush_curve_text(res):
    fb = res.get("flush_bench")
    if not fb or not fb.series.get(("CURVE", "flush")):
        return ["Flush cost against tag size: not measured (flush_bench: %s)." %
                (fb.status if fb else "not run")]
    lines = ["| tag size | rows | flush ms (min–max) | baseline DELETE ms | µs per row |",
             "| --- | --- | --- | --- | --- |"]
    for c in fb.series[("CURVE", "flush")]:
        try:
            lines.append("| %s MiB | %d | %s (%s–%s) | %s | %.2f |" % (
                fmt(c["bytes"] / 2**20), c["rows"], fmt(c["ms"]), fmt(c.get("ms_min")),
                fmt(c.get("ms_max")), fmt(c.get("baseline_ms")), c["ms"] * 1e3 / c["rows"]))
        except (KeyError, TypeError):
            continue
    s, l_ = fb.get("small_us_per_row"), fb.get("large_us_per_row")
    k, kb = fb.get("curve_exponent"), fb.get("baseline_curve_exponent")
    if s is not None and l_ is not None and k is not None:
        lines.append("")
        lines.append(
            "Fit from 64 MiB on: flush time grows as rows^%.2f (the plain DELETE beside it: "
            "rows^%.2f); one more row costs %.2f µs between 64 and 256 MiB and %.2f µs between "
            "the two largest sizes: **%s**." % (
                k, kb if kb is not None else float("nan"), s, l_,
                "linear or better" if k <= 1.1 else
                "steeper than linear, but no steeper than the plain DELETE"
                if kb is not None and k <= kb + 0.05 else "worse than linear"))
    return lines


def adddata_stages_text(res):
    """AddData by depth: the daemon's stages, the caller's latency, the disk-alone baseline."""
    dp = res.get("datapath_bench")
    depth = {d.get("inflight_mib"): d for d in (dp.series.get(("DEPTH", "adddata"), []) if dp else [])}
    stages = dp.series.get(("STAGES", "adddata"), []) if dp else []
    durable = dp.series.get(("DURABLE", "writes"), []) if dp else []
    if not stages and not durable:
        return ["Not measured (datapath_bench: %s, or run without peerdistctl)." %
                (dp.status if dp else "not run")]
    lines = []
    if stages:
        lines += ["Mean milliseconds per 1 MiB call at each depth, as the daemon timed its "
                  "stages (`peerdistctl status`), beside the latency the caller saw (bytes in "
                  "flight over throughput), each the median of the repetitions; *outside* is "
                  "caller less daemon: the socket both ways, reading the request before it is "
                  "decoded, the reply's way out, the library and the caller. *Spares* is how "
                  "many of the depth's data files were spare files renamed into place "
                  "(docs/cache.md, Spare data files), written over rather than allocated.", "",
                  "| MiB in flight | ratio | queued | verify + write | sync wait | sync | commit | "
                  "daemon | caller | outside | spares |", "| --- | --- | --- | --- | --- | --- | "
                  "--- | --- | --- | --- | --- |"]
    keys = ["queued_ms", "verify_write_ms", "sync_wait_ms", "sync_ms", "commit_ms", "daemon_ms",
            "caller_ms"]
    for s in stages:
        try:
            v = [s[k] for k in keys]
            lines.append("| %s | %s | %s | %s | %s |" % (
                fmt(s["inflight_mib"]), fmt(depth.get(s["inflight_mib"], {}).get("ratio")),
                " | ".join("%.2f" % x for x in v), "%.2f" % (v[-1] - v[-2]),
                fmt(s.get("spare_files"))))
        except (KeyError, TypeError):
            continue
    if durable:
        lines += [""] if lines else []
        lines += ["The disk alone under writes shaped like AddData's (the sweep's bytes as "
                  "1 MiB pwrite + fdatasync jobs, so many at once), beside the sweep's raw "
                  "write + one fdatasync:", "",
                  "| MiB in flight | MiB/s | ratio (min–max) |", "| --- | --- | --- |"]
        for d in durable:
            lines.append("| %s | %s | %s (%s–%s) |" % (
                fmt(d.get("inflight_mib")), fmt(d.get("mib_s")), fmt(d.get("ratio")),
                fmt(d.get("ratio_min")), fmt(d.get("ratio_max"))))
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    default=os.environ.get("BENCH_QUICK", "") not in ("", "0"))
    ap.add_argument("--only", default=os.environ.get("BENCH_ONLY", ""))
    ap.add_argument("--no-run", action="store_true")
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    started, t0, load0 = now(), time.monotonic(), load()
    if args.no_run:
        res = {}
        for b in BENCHES:
            r = Result(b[0])
            log = os.path.join(out, b[0] + ".log")
            if os.path.exists(log):
                load_log(r, log, "earlier log")
            res[b[0]] = r
    else:
        res = run_benches(args, out)
    total = time.monotonic() - t0
    made = plots(res, out)

    rev = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                         capture_output=True, text=True).stdout.strip() or "?"
    md = ["# peerdist benchmark report", "",
          "Generated by `make bench%s` (bench/report.py) at %s on commit `%s`, %d CPUs; "
          "load average before %s, after %s; %.0f s in all." % (
              " BENCH_QUICK=1" if args.quick else "", started, rev, os.cpu_count() or 0,
              load0, load(), total), "",
          "Each figure is the median of the benchmark's repetitions (min–max when the "
          "benchmark prints them), beside its baseline from the same run; the ratio is "
          "figure / baseline. A key a benchmark did not print reads *not measured*.", "",
          "| figure | measured | baseline, same run | ratio | target | |",
          "| --- | --- | --- | --- | --- | --- |"]
    for f in FIGURES:
        row = figure_row(f, res)
        if row:
            md.append(row)
    notes = [f for f in FIGURES if f.get("note")]
    if notes:
        md.append("")
        md += ["* %s: %s." % (f["figure"], f["note"]) for f in notes]
    md += ["", "## Flush cost against tag size", ""] + flush_curve_text(res)
    md += ["", "## AddData by depth: where a call's time goes", ""] + adddata_stages_text(res)
    md += ["", "## Plots", ""]
    md += ["![%s](%s)" % (t, p) for p, t in made] or ["No plot: no data (or no gnuplot)."]
    md += ["", "## Runs", "", "| benchmark | status | seconds | log |", "| --- | --- | --- | --- |"]
    for r in res.values():
        md.append("| %s | %s | %s | %s |" % (
            r.name, r.status, "%.0f" % r.seconds if r.seconds else "—",
            "[%s.log](%s.log)" % (r.name, r.name)
            if os.path.exists(os.path.join(out, r.name + ".log")) else "—"))
    md += ["", "## Every SUMMARY key", ""]
    for r in res.values():
        if r.summary:
            md.append("* **%s**: %s" % (r.name, " ".join(
                "%s=%s" % (k, fmt(v) if isinstance(v, float) else v)
                for k, v in r.summary.items())))
    with open(os.path.join(out, "REPORT.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("wrote %s (%.0f s)" % (os.path.join(out, "REPORT.md"), total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
