#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""ctl_cli_inject_test.py PEERDISTD PEERDISTCTL - `peerdistctl inject` with many requests in flight.

Against a real peerdistd started here: a multi-MiB inject (more requests than the window
holds, a partial last block) whose cached bytes read back equal the file; a file shorter than
its content information and a file with one corrupted byte both exit 1 with a message naming
the offset (and an error object with --json), nothing of the corrupted chunk is served, and the
good file injected afterwards under the same tag reads back whole; progress on a terminal.
A daemon killed in the middle of an inject: exit 1 with the lost connection named, no hang.
"""
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import tempfile
import time

DAEMON, CTL = sys.argv[1], sys.argv[2]
TMP = tempfile.mkdtemp(prefix="pdinject.")
FAILURES = []
MiB = 1024 * 1024
# More than inject's 32 MiB window, and not a whole number of blocks (64 KiB).
SIZE = 45 * MiB + 12345
TAG = "00112233445566778899aabbccddeeff"
# Generous bound for inject against a killed daemon; a hang is the failure. Not a timing
# assertion.
HANG_LIMIT = 60


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what, flush=True)
    return cond


def run(args, timeout=300):
    e = dict(os.environ)
    e.pop("PEERDIST_SOCKET", None)
    p = subprocess.run([CTL] + args, capture_output=True, env=e, stdin=subprocess.DEVNULL,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def run_pty(args):
    """Runs with standard error on a terminal; returns (rc, what the terminal showed)."""
    master, slave = pty.openpty()
    e = dict(os.environ)
    e.pop("PEERDIST_SOCKET", None)
    p = subprocess.Popen([CTL] + args, env=e, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    shown = b""
    while True:
        r, _, _ = select.select([master], [], [], 120)
        if not r:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    p.wait(timeout=120)
    os.close(master)
    return p.returncode, shown.decode(errors="replace")


def start_daemon(sock, name="cache"):
    log = open(os.path.join(TMP, "daemon.log"), "ab")
    p = subprocess.Popen([DAEMON, "--socket", sock, "--db", os.path.join(TMP, name + ".db"),
                          "--state-dir", os.path.join(TMP, name + "-state")], stderr=log)
    for _ in range(200):
        if run(["status", "--socket", sock])[0] == 0:
            return p
        time.sleep(0.05)
    raise SystemExit("peerdistd did not start: see %s" % os.path.join(TMP, "daemon.log"))


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def read_back(ci, S):
    """The cached bytes FILE.ci describes (local cache only), or None when any is missing."""
    out = os.path.join(TMP, "readback")
    rc, _, err = run(["get", "--ci", ci, "--tag", TAG, "--timeout", "0", "-o", out] + S)
    if rc != 0:
        return None
    with open(out, "rb") as f:
        data = f.read()
    os.unlink(out)
    return data


def checks(S):
    content = os.urandom(SIZE)
    good = os.path.join(TMP, "good")
    write(good, content)
    ci = os.path.join(TMP, "good.ci")
    rc, _, err = run(["hash", good, "--version", "1", "--key", "k", "-o", ci])
    check(rc == 0, "hash: %d %r" % (rc, err))

    # A file shorter than its content information: exit 1, the offset where it ends.
    short = os.path.join(TMP, "short")
    write(short, content[:10 * MiB])
    rc, out, err = run(["inject", short, "--ci", ci, "--tag", TAG] + S)
    check(rc == 1 and "file shorter than its content information at %d" % (10 * MiB) in err,
          "inject of a short file: %d %r" % (rc, err))
    check(out == b"", "inject of a short file wrote to stdout: %r" % out[:200])

    # One corrupted byte at 20 MiB + 100: the request carrying it fails its hash check.
    bad = bytearray(content)
    bad[20 * MiB + 100] ^= 0xFF
    badf = os.path.join(TMP, "bad")
    write(badf, bytes(bad))
    rc, out, err = run(["inject", badf, "--ci", ci, "--tag", TAG] + S)
    check(rc == 1 and "PeerDistClientAddData at %d" % (20 * MiB) in err and
          "ERROR_INVALID_DATA (13)" in err and "do not match their hash" in err,
          "inject of a corrupted file: %d %r" % (rc, err))
    rc, out, err = run(["inject", badf, "--ci", ci, "--tag", TAG, "--json"] + S)
    try:
        j = json.loads(out)
    except ValueError:
        j = None
    check(rc == 1 and j and "ERROR_INVALID_DATA" in j.get("error", ""),
          "inject --json of a corrupted file: %d %r" % (rc, out))
    # The corrupted block is not cached: a read of everything is refused, not served wrong.
    check(read_back(ci, S) is None, "a read after the corrupted inject succeeded")

    # The good file: every byte, with many requests in flight; the cache serves the file.
    rc, out, err = run(["inject", good, "--ci", ci, "--tag", TAG, "--json"] + S)
    try:
        j = json.loads(out)
    except ValueError:
        j = None
    check(rc == 0 and j == {"file": good, "tag": TAG, "offset": 0, "bytes": SIZE},
          "inject --json: %d %r %r" % (rc, out, err))
    check(err == "", "inject printed on a non-terminal stderr: %r" % err)
    check(read_back(ci, S) == content, "the cached bytes differ from the file")
    # Again, over what is cached already: still exit 0, the same bytes.
    rc, out, err = run(["inject", good, "--ci", ci, "--tag", TAG] + S)
    check(rc == 0 and out == b"", "inject again: %d %r" % (rc, err))
    check(read_back(ci, S) == content, "the cached bytes differ from the file after a re-inject")

    # On a terminal: the one-line summary at the end (the progress line before it, if slow).
    rc, shown = run_pty(["inject", good, "--ci", ci, "--tag", TAG] + S)
    check(rc == 0 and ("injected %s under %s" % (good, TAG)) in shown and "/s)" in shown,
          "inject summary on a terminal: %d %r" % (rc, shown[-300:]))
    rc, shown = run_pty(["inject", badf, "--ci", ci, "--tag", TAG] + S)
    check(rc == 1 and "ERROR_INVALID_DATA" in shown and "injected" not in shown,
          "failed inject on a terminal: %d %r" % (rc, shown[-300:]))

    # Ranges, under keys of their own (nothing of them cached yet): whole blocks, and ranges
    # that start and end inside a block, whose edge blocks inject completes from the file.
    for n, (version, start, length) in enumerate([(1, 7 * MiB, 9 * MiB),
                                                  (1, 7 * MiB + 100, 9 * MiB + 1),
                                                  (2, 3 * MiB + 5, 40 * MiB)]):
        rci = os.path.join(TMP, "range%d.ci" % n)
        rc, _, err = run(["hash", good, "--version", str(version), "--key", "r%d" % n,
                          "--range", "%d:%d" % (start, length), "-o", rci])
        check(rc == 0, "hash --range: %d %r" % (rc, err))
        rc, out, err = run(["inject", good, "--ci", rci, "--tag", TAG, "--json"] + S)
        try:
            j = json.loads(out)
        except ValueError:
            j = None
        check(rc == 0 and j and j.get("offset") == start and j.get("bytes") == length,
              "inject of range %d: %d %r %r" % (n, rc, out, err))
        rng = read_back(rci, S)
        check(rng is not None and rng == content[start:start + length],
              "the cached range %d (V%d, %d:%d) differs from the file's" %
              (n, version, start, length))


def daemon_read_bytes(pid):
    with open("/proc/%d/io" % pid) as f:
        for line in f:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    return 0


def killed_daemon_check():
    """The daemon killed once inject's bytes flow: every request in flight fails, inject
    reports the first failure and exits 1 (the drain must not wait for replies forever)."""
    sock = os.path.join(TMP, "k.sock")
    daemon = start_daemon(sock, "k")
    big = os.path.join(TMP, "big")
    write(big, os.urandom(96 * MiB))
    ci = os.path.join(TMP, "big.ci")
    rc, _, err = run(["hash", big, "--version", "1", "--key", "k", "-o", ci])
    check(rc == 0, "hash of the big file: %d %r" % (rc, err))
    e = dict(os.environ)
    e.pop("PEERDIST_SOCKET", None)
    p = subprocess.Popen([CTL, "inject", big, "--ci", ci, "--tag", TAG, "--socket", sock],
                         env=e, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    start = daemon_read_bytes(daemon.pid)
    while p.poll() is None and daemon_read_bytes(daemon.pid) - start < 8 * MiB:
        time.sleep(0.005)
    daemon.kill()
    daemon.wait()
    try:
        out, err = p.communicate(timeout=HANG_LIMIT)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        check(False, "inject hung after the daemon was killed")
        return
    err = err.decode(errors="replace")
    if p.returncode == 0:
        print("note: inject finished before the daemon was killed; nothing to check")
        return
    check(p.returncode == 1 and "PeerDistClientAddData" in err and
          "lost the connection to peerdistd" in err,
          "inject, daemon killed: %d %r" % (p.returncode, err))


def main():
    sock = os.path.join(TMP, "s.sock")
    daemon = start_daemon(sock)
    try:
        checks(["--socket", sock])
    finally:
        daemon.terminate()
        daemon.wait()
    try:
        killed_daemon_check()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    if FAILURES:
        print("%d failure(s)" % len(FAILURES))
        return 1
    print("ctl cli inject test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
