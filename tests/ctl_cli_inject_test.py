#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""ctl_cli_inject_test.py PEERDISTD PEERDISTCTL - `peerdistctl inject` with many requests in flight.

Against a real peerdistd started here: a multi-MiB inject (more requests than the window
holds, a partial last block) whose cached bytes read back equal the file; a file shorter than
its content information and a file with one corrupted byte both exit 1 with a message naming
the offset (and an error object with --json), nothing of the corrupted chunk is served, and the
good file injected afterwards under the same tag reads back whole.
"""
import json
import os
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


def start_daemon(sock):
    log = open(os.path.join(TMP, "daemon.log"), "ab")
    p = subprocess.Popen([DAEMON, "--socket", sock, "--db", os.path.join(TMP, "cache.db"),
                          "--state-dir", os.path.join(TMP, "state")], stderr=log)
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

    # A range: content information for 9 MiB of the file from 7 MiB on (whole blocks).
    rci = os.path.join(TMP, "range.ci")
    start, length = 7 * MiB, 9 * MiB
    rc, _, err = run(["hash", good, "--version", "1", "--key", "k2", "--range",
                      "%d:%d" % (start, length), "-o", rci])
    check(rc == 0, "hash --range: %d %r" % (rc, err))
    rc, out, err = run(["inject", good, "--ci", rci, "--tag", TAG, "--json"] + S)
    try:
        j = json.loads(out)
    except ValueError:
        j = None
    check(rc == 0 and j and j.get("offset") == start and j.get("bytes") == length,
          "inject of a range: %d %r %r" % (rc, out, err))
    rng = read_back(rci, S)
    check(rng is not None and rng == content[start:start + length],
          "the cached range differs from the file's")


def main():
    sock = os.path.join(TMP, "s.sock")
    daemon = start_daemon(sock)
    try:
        checks(["--socket", sock])
    finally:
        daemon.terminate()
        daemon.wait()
        shutil.rmtree(TMP, ignore_errors=True)
    if FAILURES:
        print("%d failure(s)" % len(FAILURES))
        return 1
    print("ctl cli inject test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
