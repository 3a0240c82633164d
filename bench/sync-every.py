#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""sync-every.py - what fdatasync granularity costs on this disk: 256 MiB written in 1 MiB
write() calls, with an fdatasync after every N MiB (N = 1, 2, 4, 8, 16), beside one fdatasync
at the end (the baseline AddData and inject are measured against), 3 runs each, medians.
Usage: bench/sync-every.py [DIR]  (DIR: on the disk of the cache; default /var/tmp)"""
import os
import sys
import time

MIB = 1 << 20
TOTAL_MIB = 256


def run(path, every, buf):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        t0 = time.monotonic()
        for i in range(TOTAL_MIB):
            os.write(fd, buf)
            if (i + 1) % every == 0:
                os.fdatasync(fd)
        os.fdatasync(fd)
        return TOTAL_MIB / (time.monotonic() - t0)
    finally:
        os.close(fd)
        os.unlink(path)


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "/var/tmp"
    path = os.path.join(d, "sync-every.%d" % os.getpid())
    buf = os.urandom(MIB)
    med = {}
    for every in (1, 2, 4, 8, 16, TOTAL_MIB):
        runs = sorted(run(path, every, buf) for _ in range(3))
        med[every] = runs[1]
        print("fdatasync every %3d MiB: %4.0f MiB/s (runs %s)" %
              (every, runs[1], " ".join("%.0f" % r for r in runs)))
    base = med[TOTAL_MIB]
    print("SUMMARY sync_every baseline_mib_s=%.0f %s" % (base, " ".join(
        "every%d_ratio=%.2f" % (e, med[e] / base) for e in (1, 2, 4, 8, 16))))


if __name__ == "__main__":
    main()
