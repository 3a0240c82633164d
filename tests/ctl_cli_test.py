#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""ctl_cli_test.py PEERDISTD PEERDISTCTL - peerdistctl as a user meets it.

Against a real peerdistd started here: get leaves OUT untouched on failure and writes it
with --partial, flush reports what it released, --json outputs parse and carry their
documented fields, options after the command, publish refuses a terminal, progress only on a
terminal. Against sockets that misbehave (a listener that never accepts, a process that
accepts and never answers Hello): a clear error within the connect timeout. Against a small
protocol peer written here (frames of proto/peerdist.proto encoded by hand): the
administration commands send exactly the requests of the proto, print what the replies
carry, and turn ERROR_ACCESS_DENIED (5) and ERROR_CALL_NOT_IMPLEMENTED (120) into clear
messages. Argument handling needs no daemon at all: every usage error exits 2 with a
message, every command answers --help with exit 0.
"""
import json
import os
import pty
import select
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

DAEMON, CTL = sys.argv[1], sys.argv[2]
TMP = tempfile.mkdtemp(prefix="pdcli.")
FAILURES = []
# Generous bound for a command against a wedged daemon: the connect timeout is 1 s here; a
# hang (the behaviour under test) would run into it. Not a timing assertion.
HANG_LIMIT = 30


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what, flush=True)
    return cond


def run(args, env=None, stdin=None, timeout=120):
    e = dict(os.environ)
    e.pop("PEERDIST_SOCKET", None)
    if env:
        e.update(env)
    p = subprocess.run([CTL] + args, capture_output=True, env=e, stdin=stdin or subprocess.DEVNULL,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def run_pty(args, which, env=None):
    """Runs with stdout or stderr (which = 1 or 2) on a terminal; returns (rc, what the
    terminal showed, the other stream)."""
    master, slave = pty.openpty()
    e = dict(os.environ)
    e.pop("PEERDIST_SOCKET", None)
    if env:
        e.update(env)
    kw = {"stdout": slave} if which == 1 else {"stderr": slave}
    other = subprocess.PIPE
    if which == 1:
        kw["stderr"] = other
    else:
        kw["stdout"] = other
    p = subprocess.Popen([CTL] + args, env=e, stdin=subprocess.DEVNULL, **kw)
    os.close(slave)
    shown = b""
    while True:
        r, _, _ = select.select([master], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    rest = (p.stderr if which == 1 else p.stdout).read()
    p.wait(timeout=60)
    os.close(master)
    return p.returncode, shown.decode(errors="replace"), rest


def parse_json(out, what):
    try:
        return json.loads(out)
    except ValueError:
        check(False, "%s: not JSON: %r" % (what, out[:300]))
        return None


# ---- a protocol peer: frames of proto/peerdist.proto, encoded by hand ----

def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, value):
    if isinstance(value, int):
        return varint(num << 3) + varint(value)
    if isinstance(value, str):
        value = value.encode()
    return varint(num << 3 | 2) + varint(len(value)) + value


def decode(buf):
    """A message as {field number: [values]} (varints as int, the rest as bytes)."""
    out, i = {}, 0

    def rd():
        nonlocal i
        n = shift = 0
        while True:
            b = buf[i]
            i += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n
    while i < len(buf):
        key = rd()
        num, wt = key >> 3, key & 7
        if wt == 0:
            v = rd()
        elif wt == 2:
            n = rd()
            v = buf[i:i + n]
            i += n
        else:
            raise ValueError("wire type %d" % wt)
        out.setdefault(num, []).append(v)
    return out


REQ_HELLO, REQ_FLUSH, REQ_TAGS, REQ_CACHE_INFO, REQ_CACHE_SET, REQ_ADMIN_FLUSH, REQ_KEY, \
    REQ_PEERS = 2, 6, 21, 22, 23, 24, 25, 26
REP_HELLO, REP_FLUSH, REP_TAGS, REP_CACHE_INFO, REP_KEY, REP_PEERS = 3, 6, 13, 15, 16, 17
CACHE_INFO = {  # CacheInfoReply field number -> value
    1: 1 << 30, 2: 123456789, 3: 46, 4: 2, 5: 3, 6: 28 * 86400, 7: 1000, 8: 2000, 9: 3000,
    10: 400, 11: 500, 12: 600, 13: "20G", 14: "override", 15: "28d", 16: "default",
    17: 1 << 20, 18: 45328, 19: 3000000, 20: 7340032, 21: 65536}
CACHE_FIELDS = {
    "limit_bytes": 1, "used_bytes": 2, "blocks": 3, "segments": 4, "tags": 5, "max_age_s": 6,
    "hits_bytes": 7, "misses_bytes": 8, "added_bytes": 9, "evicted_size_bytes": 10,
    "evicted_age_bytes": 11, "flushed_bytes": 12, "cache_size": 13, "cache_size_source": 14,
    "max_age": 15, "max_age_source": 16, "uid_quota_bytes": 17, "peer_fetched_bytes": 20,
    "peer_served_bytes": 21}
EXPORTED = b"test-passphrase"
FINGERPRINT = "0123456789abcdef0123456789abcdef"


class Peer:
    """mode: 'old' answers 120 to all but Hello, 'denied' 5, 'admin' canned replies."""

    def __init__(self, path, mode):
        self.path, self.mode, self.requests = path, mode, []
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        self.sock.listen(16)
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.conn, args=(c,), daemon=True).start()

    def conn(self, c):
        buf = b""
        while True:
            while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
                d = c.recv(65536)
                if not d:
                    c.close()
                    return
                buf += d
            n = struct.unpack(">I", buf[:4])[0]
            msg, buf = decode(buf[4:4 + n]), buf[4 + n:]
            rid = msg.get(1, [0])[0]
            body = [(k, v[0]) for k, v in msg.items() if k != 1]
            num, sub = body[0] if body else (0, b"")
            status, reply = self.answer(num, decode(sub) if isinstance(sub, bytes) else {})
            out = field(1, rid) + (field(2, status) if status else b"") + reply
            c.sendall(struct.pack(">I", len(out)) + out)

    def answer(self, num, req):
        if num == REQ_HELLO:
            return 0, field(REP_HELLO, field(1, 1) + field(2, "fake peerdistd") + field(3, 2) +
                            field(4, "local") + field(5, 1) + field(6, 1))
        self.requests.append((num, req))
        if self.mode == "old":
            return 120, b""
        if self.mode == "denied":
            return 5, b""
        if num == REQ_CACHE_INFO:
            return 0, field(REP_CACHE_INFO, b"".join(field(k, v) for k, v in CACHE_INFO.items()))
        if num == REQ_CACHE_SET:
            return 0, b""
        if num in (REQ_FLUSH, REQ_ADMIN_FLUSH):
            return 0, field(REP_FLUSH, field(1, 7) + field(2, 7000))
        if num == REQ_TAGS:
            t1 = field(1, bytes(range(16))) + field(2, 46) + field(3, 3000000) + \
                field(4, 1000) + field(5, 1764668832) + field(6, 1) + field(7, 1764600000)
            t2 = field(1, b"\xff" * 16) + field(2, 1) + field(3, 10) + field(4, 0)
            return 0, field(REP_TAGS, field(1, t1) + field(1, t2))
        if num == REQ_PEERS:
            p1 = field(1, "10.77.0.1:80") + field(2, 1764668832) + field(3, 65536) + \
                field(4, 7340032) + field(7, 3) + field(8, 1)
            p2 = field(1, "[fe80::1%eth0]:80") + field(2, 1764668800) + field(5, 1764669000) + \
                field(6, "a block failing its hash") + field(4, 0)
            return 0, field(REP_PEERS, field(1, p1) + field(1, p2))
        if num == REQ_KEY:
            op = req.get(1, [0])[0]
            if op == 1:
                secret = req.get(2, [b""])[0]
                return 0, field(REP_KEY, field(1, FINGERPRINT) + field(3, len(secret)))
            if op == 2:
                return 0, field(REP_KEY, field(1, FINGERPRINT) + field(2, EXPORTED) + field(3, 15))
            return 0, field(REP_KEY, field(1, FINGERPRINT) + field(3, 15))
        return 120, b""

    def close(self):
        self.sock.close()


# ---- argument handling: no daemon needed ----

def test_help_and_usage():
    nowhere = ["--socket", os.path.join(TMP, "nowhere.sock")]
    for cmd in (["status"], ["publish"], ["inject"], ["get"], ["tags"], ["flush"], ["cache"],
                ["cache", "set"], ["peers"], ["key"], ["key", "show"], ["key", "set"], ["key", "export"],
                ["key", "import"], ["hash"], ["ci-dump"]):
        for h in ("--help", "-h"):
            rc, out, err = run(cmd + [h] + nowhere)
            check(rc == 0 and out.startswith(b"Usage: peerdistctl " + cmd[0].encode()),
                  "%s %s: exit %d, %r %r" % (" ".join(cmd), h, rc, out[:60], err))
        rc, out, err = run(["help"] + cmd)
        check(rc == 0 and out.startswith(b"Usage: peerdistctl"),
              "help %s: exit %d %r" % (" ".join(cmd), rc, err))
    for args in (["--help"], ["-h"], ["help"]):
        rc, out, err = run(args)
        check(rc == 0 and b"Commands" in out and b"Exit status" in out, "%s: exit %d" % (args, rc))
    rc, out, err = run(["--version"])
    check(rc == 0 and out.startswith(b"peerdistctl "), "--version: %d %r" % (rc, out))

    bad = [
        (["get", "--ci", "x.ci", "--timeout", "abc"], "--timeout"),
        (["get", "--ci", "x.ci", "--timeout", "-1"], "--timeout"),
        (["get", "--ci", "x.ci", "--timeout", "99999999999"], "--timeout"),
        (["get", "--ci", "x.ci", "--timeout", "forever"], "--timeout"),
        (["peers", "extra"], "unexpected argument 'extra'"),
        (["peers", "--all"], "unknown option '--all'"),
        (["--connect-timeout", "abc", "status"], "--connect-timeout"),
        (["status", "--connect-timeout", "1s"], "--connect-timeout"),
        (["status", "extra"], "unexpected argument 'extra'"),
        (["tags", "extra"], "unexpected argument 'extra'"),
        (["get", "--ci", "x.ci", "extra"], "unexpected argument 'extra'"),
        (["publish", "a", "b"], "unexpected argument 'b'"),
        (["publish"], "FILE is needed"),
        (["publish", "f", "--version", "3"], "--version"),
        (["publish", "f", "--json"], "--json needs -o"),
        (["get", "--ci", "x.ci", "--json"], "--json needs -o"),
        (["get"], "--ci"),
        (["get", "--ci"], "'--ci' needs an argument"),
        (["status", "--frob"], "unknown option '--frob'"),
        (["inject", "f", "--ci", "x.ci"], "--tag"),
        (["inject", "f", "--ci", "x.ci", "--tag", "nonsense"], "--tag 'nonsense'"),
        (["flush"], "one of --tag"),
        (["flush", "--tag", "nonsense"], "--tag 'nonsense'"),
        (["flush", "--all", "--tag", "00112233445566778899aabbccddeeff"], "--all goes alone"),
        (["flush", "--uid", "no-such-user-xyz"], "--uid"),
        (["flush", "--all", "extra"], "unexpected argument"),
        (["cache", "frob"], "unknown cache sub-command 'frob'"),
        (["cache", "set"], "is needed"),
        (["cache", "set", "size"], "size needs a value"),
        (["cache", "set", "size", "10M"], "size '10M'"),
        (["cache", "set", "size", "5x"], "size '5x'"),
        (["cache", "set", "size", "0%"], "size '0%'"),
        (["cache", "set", "size", "101%"], "size '101%'"),
        (["cache", "set", "max-age", "0"], "max-age '0'"),
        (["cache", "set", "max-age", "5y"], "max-age '5y'"),
        (["cache", "set", "colour", "blue"], "unknown setting 'colour'"),
        (["cache", "set", "--reset", "size", "1G"], "--reset goes alone"),
        (["key"], "sub-command is needed"),
        (["key", "frob"], "unknown key sub-command 'frob'"),
        (["key", "set"], "give one of --key"),
        (["key", "set", "--key", "a", "--passphrase-hex", "00"], "give one of --key"),
        (["key", "set", "--passphrase-hex", "zz"], "--passphrase-hex"),
        (["key", "set", "--passphrase-hex", "00" * 1025], "--passphrase-hex"),
        (["key", "set", "--key", ""], "1 to 1024"),
        (["key", "export"], "FILE is needed"),
        (["key", "import", "a", "b"], "unexpected argument 'b'"),
        (["hash", "f", "--version", "1"], "give one of --passphrase-hex and --key"),
        (["hash", "f", "g", "--version", "1", "--key", "k"], "unexpected argument 'g'"),
        (["ci-dump"], "FILE is needed"),
        (["frobnicate"], "unknown command 'frobnicate'"),
        ([], "a command is needed"),
        (["--frob", "status"], "unknown option '--frob'"),
        (["status", "--socket"], "'--socket' needs an argument"),
        (["help", "frobnicate"], "unknown command 'frobnicate'"),
    ]
    for args, msg in bad:
        rc, out, err = run(nowhere + args)
        check(rc == 2 and msg in err, "%s: exit %d (want 2), stderr %r (want %r)" %
              (args, rc, err, msg))


# ---- misbehaving sockets: a clear error within the connect timeout ----

def test_connect_timeout():
    noaccept = os.path.join(TMP, "noaccept.sock")
    lst = socket.socket(socket.AF_UNIX)
    lst.bind(noaccept)
    lst.listen(1)  # never accepted
    silent = os.path.join(TMP, "silent.sock")
    held = []
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(silent)
    srv.listen(16)

    def accept_and_ignore():  # accepts, never answers Hello
        while True:
            try:
                held.append(srv.accept()[0])
            except OSError:
                return
    threading.Thread(target=accept_and_ignore, daemon=True).start()
    out_path = os.path.join(TMP, "timeout.out")
    with open(out_path, "wb") as f:
        f.write(b"before")
    ci = os.path.join(TMP, "t.ci")
    hash_file(ci)
    for sock in (noaccept, silent):
        for args in (["status"], ["tags", "--json"], ["cache"], ["flush", "--all"],
                     ["get", "--ci", ci, "-o", out_path],
                     ["publish", ci, "-o", os.path.join(TMP, "never.ci")]):
            t0 = time.monotonic()
            try:
                rc, out, err = run(args + ["--socket", sock, "--connect-timeout", "1000"],
                                   timeout=HANG_LIMIT)
            except subprocess.TimeoutExpired:
                check(False, "%s against %s hangs" % (args, sock))
                continue
            check(rc == 1 and "did not answer within 1000 ms" in err and "--socket" in err,
                  "%s against %s: exit %d %r" % (args, os.path.basename(sock), rc, err))
            print("  %s on %s: %.1f s" % (args[0], os.path.basename(sock), time.monotonic() - t0))
    check(open(out_path, "rb").read() == b"before", "get against a wedged daemon touched OUT")
    check(not os.path.exists(os.path.join(TMP, "never.ci")), "publish left an output behind")
    # A socket nobody listens on: the errno text and the hint.
    rc, out, err = run(["status", "--socket", os.path.join(TMP, "nowhere.sock")])
    check(rc == 1 and "No such file or directory" in err and "PEERDIST_SOCKET" in err,
          "unreachable message: %r" % err)
    dead = os.path.join(TMP, "dead.sock")
    d = socket.socket(socket.AF_UNIX)
    d.bind(dead)
    d.close()  # a socket file with no listener
    rc, out, err = run(["tags", "--socket", dead])
    check(rc == 1 and "Connection refused" in err and "--socket" in err,
          "refused message: %r" % err)
    lst.close()
    srv.close()
    for c in held:
        c.close()


def hash_file(ci_path, size=200000):
    data = os.path.join(TMP, "hashed.bin")
    with open(data, "wb") as f:
        f.write(os.urandom(size))
    rc, out, err = run(["hash", data, "--version", "1", "--key", "k", "-o", ci_path])
    check(rc == 0, "hash -o: %d %r" % (rc, err))
    return data


def test_hash_stdin():
    """hash from a pipe (short reads, slots filled across reads) gives the file's bytes."""
    data = os.path.join(TMP, "stdin.bin")
    with open(data, "wb") as f:
        f.write(os.urandom(3 * 1024 * 1024 + 12345))
    for version in ("1", "2"):
        args = ["--version", version, "--key", "k"]
        rc, from_file, err = run(["hash", data] + args)
        check(rc == 0 and len(from_file) > 100, "hash V%s: %d %r" % (version, rc, err))
        cat = subprocess.Popen(["cat", data], stdout=subprocess.PIPE)
        rc, from_pipe, err = run(["hash", "-"] + args, stdin=cat.stdout)
        cat.stdout.close()
        cat.wait()
        check(rc == 0 and from_pipe == from_file, "hash V%s from stdin differs" % version)
    rc, empty, err = run(["hash", "-", "--version", "2", "--key", "k"])
    check(rc == 0 and len(empty) == 31, "hash of empty stdin: %d %r" % (rc, empty))


# ---- the real daemon ----

def start_daemon(sock, db):
    log = open(os.path.join(TMP, "daemon.log"), "ab")
    p = subprocess.Popen([DAEMON, "--socket", sock, "--db", db, "--state-dir",
                          os.path.join(TMP, "state")], stderr=log)
    for _ in range(200):
        if run(["status", "--socket", sock])[0] == 0:
            return p
        time.sleep(0.05)
    raise SystemExit("peerdistd did not start: see %s" % os.path.join(TMP, "daemon.log"))


def leftovers(directory):
    return [n for n in os.listdir(directory) if n.startswith(".")]


def test_daemon_down_get_and_json():
    sock = os.path.join(TMP, "down.sock")
    outdir = os.path.join(TMP, "down")
    os.mkdir(outdir)
    out = os.path.join(outdir, "out")
    with open(out, "wb") as f:
        f.write(b"precious")
    ci = os.path.join(TMP, "down.ci")
    hash_file(ci)
    for extra in ([], ["--partial"], ["--json"]):
        rc, so, err = run(["get", "--ci", ci, "-o", out, "--socket", sock] + extra)
        check(rc == 1 and "not reachable" in err, "get, daemon down %s: %d %r" % (extra, rc, err))
        check(open(out, "rb").read() == b"precious", "get, daemon down %s: OUT changed" % extra)
        if extra == ["--json"]:
            j = parse_json(so, "get --json, daemon down")
            check(j is not None and "error" in j, "get --json, daemon down: %r" % so)
    check(leftovers(outdir) == [], "temporary files left: %s" % leftovers(outdir))
    for args in (["tags", "--json"], ["tags", "--all", "--json"], ["cache", "--json"],
                 ["flush", "--tag", "00112233445566778899aabbccddeeff", "--json"],
                 ["inject", ci, "--ci", ci, "--tag", "00112233445566778899aabbccddeeff",
                  "--json"]):
        rc, so, err = run(args + ["--socket", sock])
        j = parse_json(so, "%s daemon down" % args)
        check(rc == 1 and j and "not reachable" in j.get("error", "") and
              j.get("socket") == sock, "%s, daemon down: %d %r" % (args, rc, so))
    rc, so, err = run(["status", "--json"], env={"PEERDIST_SOCKET": sock})
    j = parse_json(so, "status --json daemon down")
    check(rc == 1 and j and j.get("status") == "unavailable" and "error" in j,
          "status --json, daemon down: %d %r" % (rc, so))


def test_real_daemon():
    sock = os.path.join(TMP, "s.sock")
    daemon = start_daemon(sock, os.path.join(TMP, "cache.db"))
    try:
        real_daemon_checks(sock)
    finally:
        daemon.terminate()
        daemon.wait()


def real_daemon_checks(sock):
    S = ["--socket", sock]
    wrong = {"PEERDIST_SOCKET": os.path.join(TMP, "wrong.sock")}
    # Options after the command, and before it; the flag wins over the environment.
    rc, out, err = run(["status", "--json", "--socket", sock], env=wrong)
    j = parse_json(out, "status --json")
    check(rc == 0 and j and j.get("status") == "available", "status --socket after: %d %r" %
          (rc, err))
    rc, out, err = run(["--socket=" + sock, "status"], env=wrong)
    check(rc == 0 and b"mode:" in out, "status with --socket= before: %d %r" % (rc, err))

    size = 3000000
    data = os.path.join(TMP, "file")
    with open(data, "wb") as f:
        f.write(os.urandom(size))
    ci = os.path.join(TMP, "file.ci")
    with open(ci, "wb") as f:
        f.write(b"old content information")
    # publish --json: generated id, sizes; -o replaced only at the end.
    rc, out, err = run(["publish", data, "--version", "2", "-o", ci, "--json"] + S, env=wrong)
    j = parse_json(out, "publish --json")
    check(rc == 0 and j and j.get("id_generated") is True and j.get("id", "").startswith("{") and
          j.get("version") == 2 and j.get("content_bytes") == size and
          j.get("content_information_bytes") == os.path.getsize(ci) and j.get("output") == ci,
          "publish --json: %d %r %r" % (rc, out, err))
    check(err == "", "publish printed on a non-terminal stderr: %r" % err)
    rc, out, err = run(["publish", data, "--id", "my-id", "-o", os.path.join(TMP, "id.ci"),
                        "--json"] + S)
    j = parse_json(out, "publish --id --json")
    check(rc == 0 and j and j.get("id") == "my-id" and j.get("id_generated") is False,
          "publish --id --json: %r" % out)

    # publish to a terminal is refused (and writes nothing there); hash too.
    rc, shown, err = run_pty(["publish", data] + S, 1)
    check(rc == 2 and b"terminal" in err, "publish to a terminal: %d %r" % (rc, err))
    rc, shown, err = run_pty(["hash", data, "--version", "1", "--key", "k"], 1)
    check(rc == 2 and b"terminal" in err, "hash to a terminal: %d %r" % (rc, err))
    rc, out, err = run(["publish", data] + S)
    check(rc == 0 and len(out) == os.path.getsize(os.path.join(TMP, "id.ci")),
          "publish to a pipe: %d %r" % (rc, err))

    # get before anything is cached: OUT untouched, exit 1, every missing range listed.
    outdir = os.path.join(TMP, "outs")
    os.mkdir(outdir)
    dst = os.path.join(outdir, "copy")
    with open(dst, "wb") as f:
        f.write(b"keep me")
    rc, out, err = run(["get", "--ci", ci, "-o", dst] + S)
    check(rc == 1 and "missing: 0-3000000 " in err, "get, nothing cached: %d %r" % (rc, err))
    check(open(dst, "rb").read() == b"keep me", "get, nothing cached: OUT changed")
    rc, out, err = run(["get", "--ci", ci, "-o", dst, "--json"] + S)
    j = parse_json(out, "get --json, nothing cached")
    check(rc == 1 and j and j.get("complete") is False and j.get("written") is False and
          j.get("missing_bytes") == size and j.get("missing") == [{"offset": 0, "length": size}]
          and j.get("bytes") == 0 and j.get("size") == size, "get --json, missing: %r" % out)
    check(open(dst, "rb").read() == b"keep me", "get --json, nothing cached: OUT changed")
    # --partial: written anyway, holes and all, still exit 1.
    rc, out, err = run(["get", "--ci", ci, "-o", dst, "--partial", "--json"] + S)
    j = parse_json(out, "get --partial --json")
    check(rc == 1 and j and j.get("written") is True, "get --partial: %d %r" % (rc, out))
    check(os.path.getsize(dst) == size and open(dst, "rb").read(4096) == bytes(4096),
          "get --partial: OUT is not the content's length of zeros")
    check(leftovers(outdir) == [], "temporary files left: %s" % leftovers(outdir))

    # inject --json, then get succeeds and replaces OUT.
    rc, out, err = run(["status", "--json"] + S)
    before = (parse_json(out, "status --json before inject") or {}).get("add_data", {})
    tag = "{00112233-4455-6677-8899-aabbccddeeff}"
    rc, out, err = run(["inject", data, "--ci", ci, "--tag", tag, "--json"] + S)
    j = parse_json(out, "inject --json")
    check(rc == 0 and j and j.get("bytes") == size and
          j.get("tag") == "33221100554477668899aabbccddeeff" and j.get("offset") == 0,
          "inject --json: %d %r %r" % (rc, out, err))
    check(err == "", "inject printed on a non-terminal stderr: %r" % err)
    # status: the AddData calls that stored the segment, with their stages' time.
    rc, out, err = run(["status", "--json"] + S)
    after = (parse_json(out, "status --json after inject") or {}).get("add_data", {})
    stages = ("queued_us", "verify_write_us", "sync_wait_us", "sync_us", "commit_us")
    check(before and after and after.get("calls", 0) > before.get("calls", 0) and
          0 < after.get("bytes", 0) - before.get("bytes", 0) <= size and
          sum(after.get(k, 0) - before.get(k, 0) for k in stages) > 0,
          "status --json add_data, before and after inject: %r %r" % (before, after))
    rc, out, err = run(["status"] + S)
    check(rc == 0 and b"adddata:" in out and b"mean ms per call: queued" in out,
          "status: no adddata line: %r" % out)
    # Spare data files: a flushed V1 segment's file is kept, and the next inject writes over
    # it (the V2 content above has segments too small to keep).
    def spares():
        rc, out, err = run(["status", "--json"] + S)
        return (parse_json(out, "status --json spare_files") or {}).get("spare_files") or {}
    ci1 = os.path.join(TMP, "file-v1.ci")
    tag1 = "00112233445566778899aabbccddee01"
    rc, out, err = run(["publish", data, "--version", "1", "-o", ci1] + S)
    check(rc == 0, "publish --version 1: %d %r" % (rc, err))
    rc, out, err = run(["inject", data, "--ci", ci1, "--tag", tag1] + S)
    check(rc == 0, "inject V1: %d %r" % (rc, err))
    sp0 = spares()
    check(all(isinstance(sp0.get(k), int) for k in ("files", "bytes", "kept", "taken")),
          "status --json spare_files: %r" % sp0)
    rc, out, err = run(["flush", "--tag", tag1] + S)
    check(rc == 0 and b"freed %d bytes" % size in out, "flush --tag: %d %r %r" % (rc, out, err))
    for _ in range(500):  # the space is reclaimed after the flush replies
        sp1 = spares()
        if sp1.get("files", 0) > sp0.get("files", 0):
            break
        time.sleep(0.01)
    check(sp1.get("files", 0) == sp0.get("files", 0) + 1 and sp1.get("bytes", 0) >= size,
          "status --json spare_files after flush: %r then %r" % (sp0, sp1))
    rc, out, err = run(["inject", data, "--ci", ci1, "--tag", tag1] + S)
    sp2 = spares()
    check(rc == 0 and sp2.get("taken", 0) == sp1.get("taken", 0) + 1 and
          sp2.get("files", 0) == sp1.get("files", 0) - 1,
          "inject after flush did not reuse the spare: %r then %r" % (sp1, sp2))
    rc, out, err = run(["status"] + S)
    check(rc == 0 and b"spare files:" in out and
          (" %d reused" % sp2.get("taken", -1)).encode() in out,
          "status: no spare files line: %r" % out)
    rc, out, err = run(["get", "--ci", ci1, "-o", dst, "--json"] + S)
    j = parse_json(out, "get --json, V1 written over a spare")
    check(rc == 0 and j and j.get("complete") is True and open(dst, "rb").read() ==
          open(data, "rb").read(), "get of the V1 content written over a spare: %r" % out)
    rc, out, err = run(["flush", "--tag", tag1] + S)
    check(rc == 0, "flush --tag, again: %d %r" % (rc, err))
    rc, out, err = run(["get", "--ci", ci, "-o", dst, "--json"] + S)
    j = parse_json(out, "get --json")
    check(rc == 0 and j and j.get("complete") is True and j.get("missing") == [] and
          j.get("bytes") == size and j.get("written") is True, "get --json: %d %r" % (rc, out))
    # A local-mode daemon: every byte from the cache, none from peers (default timeout too).
    check(j and j.get("cache_bytes") == size and j.get("peer_bytes") == 0,
          "get --json, bytes by source: %r" % out)
    for t in ("0", "default", "infinite", "2000"):
        rc, out, err = run(["get", "--ci", ci, "-o", dst, "--json", "--timeout", t] + S)
        j = parse_json(out, "get --json --timeout %s" % t)
        check(rc == 0 and j and j.get("cache_bytes") == size and j.get("peer_bytes") == 0,
              "get --timeout %s: %d %r" % (t, rc, out))
    check(open(dst, "rb").read() == open(data, "rb").read(), "get: OUT differs from the file")
    check(err == "", "get printed on a non-terminal stderr: %r" % err)
    rc, out, err = run(["get", "--ci", ci] + S)
    check(rc == 0 and out == open(data, "rb").read(), "get to stdout: %d %r" % (rc, err))
    # Content information under another key: nothing of it is cached. To stdout --partial
    # gives zeros in place of every missing byte; without it, nothing.
    part_ci = os.path.join(TMP, "part.ci")
    rc, out, err = run(["hash", data, "--version", "1", "--key", "k", "-o", part_ci])
    check(rc == 0, "hash for --partial: %r" % err)
    rc, out, err = run(["get", "--ci", part_ci, "--partial"] + S)
    check(rc == 1 and len(out) == size and out == bytes(size),
          "get --partial to stdout: %d, %d bytes" % (rc, len(out)))
    rc, out, err = run(["get", "--ci", part_ci] + S)
    check(rc == 1 and out == b"", "get to stdout, nothing cached: %d %r" % (rc, out[:20]))
    # On a terminal: a one-line summary at the end.
    rc, shown, _ = run_pty(["get", "--ci", ci, "-o", dst] + S, 2)
    check(rc == 0 and "read " in shown and "/s)" in shown, "get summary on a terminal: %r" % shown)

    # tags --json fields; flush counts; a second flush and an unknown tag release 0.
    rc, out, err = run(["tags", "--json"] + S)
    j = parse_json(out, "tags --json")
    fields = {"uid", "tag", "guid", "blocks", "bytes", "segments", "last_used", "last_used_utc",
              "added_at", "added_at_utc"}
    check(rc == 0 and j and fields <= set(j[0]) and j[0]["bytes"] == size and
          j[0]["guid"] == tag, "tags --json: %r" % out)
    blocks = j[0]["blocks"] if j else -1
    rc, out, err = run(["flush", "--tag", tag, "--json"] + S)
    j = parse_json(out, "flush --json")
    check(rc == 0 and j and j.get("labels_removed") == blocks and blocks > 0 and
          j.get("bytes_freed") == size, "flush --json: %d %r (%d blocks)" % (rc, out, blocks))
    rc, out, err = run(["flush", "--tag", tag] + S)
    check(rc == 0 and out == b"removed 0 labels, freed 0 bytes (0 B)\n",
          "second flush: %d %r" % (rc, out))
    rc, out, err = run(["flush", "--tag", "ffffffffffffffffffffffffffffffff", "--json"] + S)
    j = parse_json(out, "flush unknown tag")
    check(rc == 0 and j == {"labels_removed": 0, "bytes_freed": 0}, "unknown tag: %r" % out)
    rc, out, err = run(["get", "--ci", ci, "-o", dst] + S)
    check(rc == 1 and open(dst, "rb").read() == open(data, "rb").read(),
          "get after flush: exit %d, OUT must keep the last good copy" % rc)

    # hash -o: replaced on success only.
    hout = os.path.join(outdir, "h.ci")
    with open(hout, "wb") as f:
        f.write(b"old")
    rc, out, err = run(["hash", os.path.join(TMP, "missing-file"), "--version", "1", "--key",
                        "k", "-o", hout])
    check(rc == 1 and open(hout, "rb").read() == b"old", "hash failure touched OUT")
    rc, out, err = run(["hash", data, "--version", "1", "--key", "k", "-o", hout])
    check(rc == 0 and os.path.getsize(hout) > 100, "hash -o: %d %r" % (rc, err))
    check(leftovers(outdir) == [], "temporary files left: %s" % leftovers(outdir))


# ---- administration commands against the protocol peer ----

ADMIN_COMMANDS = [["cache"], ["cache", "--json"], ["cache", "set", "size", "1G"],
                  ["cache", "set", "--reset"], ["tags", "--all"], ["flush", "--all"],
                  ["flush", "--uid", "0"], ["key", "show"], ["key", "set", "--key", "x"],
                  ["key", "export", "EXPORT"], ["key", "import", "IMPORT"], ["peers"],
                  ["peers", "--json"]]


def admin_args(args):
    return [os.path.join(TMP, "peer-export") if a == "EXPORT" else
            os.path.join(TMP, "peer-import") if a == "IMPORT" else a for a in args]


def test_refusals():
    with open(os.path.join(TMP, "peer-import"), "wb") as f:
        f.write(b"0123456789abcdef")
    for mode, want in (("old", "does not implement"),
                       ("denied", "needs root or membership of group peerdist")):
        path = os.path.join(TMP, "peer-%s.sock" % mode)
        peer = Peer(path, mode)
        for args in ADMIN_COMMANDS:
            if mode == "old" and args == ["tags", "--all"]:
                continue  # an older daemon ignores the field: nothing to tell apart
            rc, out, err = run(admin_args(args) + ["--socket", path])
            code = "120" if mode == "old" else "5"
            check(rc == 1 and want in err and "(%s)" % code in err,
                  "%s against a %s daemon: %d %r" % (args, mode, rc, err))
            if "--json" in args:
                j = parse_json(out, "%s %s" % (args, mode))
                check(j and j.get("code") == int(code), "%s: JSON error %r" % (args, out))
        check(not os.path.exists(os.path.join(TMP, "peer-export")), "export wrote on refusal")
        peer.close()


def test_admin_requests():
    path = os.path.join(TMP, "peer-admin.sock")
    peer = Peer(path, "admin")
    S = ["--socket", path]

    def last():
        return peer.requests[-1] if peer.requests else (None, {})

    rc, out, err = run(["cache", "--json"] + S)
    j = parse_json(out, "cache --json")
    if j:
        for name, num in CACHE_FIELDS.items():
            check(j.get(name) == CACHE_INFO[num], "cache --json %s: %r" % (name, j.get(name)))
        check(j.get("evicted_bytes") == CACHE_INFO[10] + CACHE_INFO[11], "evicted_bytes")
        check(j.get("stored_bytes") == CACHE_INFO[19] and j.get("database_bytes") == CACHE_INFO[18],
              "stored/database bytes")
    rc, out, err = run(["cache"] + S)
    check(rc == 0 and b"cache_size = 20G, from override" in out and
          b"max_age = 28d, from default" in out, "cache text: %r" % out)
    check(b"from peers:   7340032 bytes" in out and b"to peers:     65536 bytes" in out,
          "cache text: the peer byte counters: %r" % out)

    # peers: PeersRequest, every PeerInfo field in the JSON, a table otherwise.
    rc, out, err = run(["peers", "--json"] + S)
    num, req = last()
    j = parse_json(out, "peers --json")
    check(rc == 0 and num == REQ_PEERS, "peers sends PeersRequest: %d %r" % (rc, num))
    check(j and len(j) == 2 and j[0] == {
        "address": "10.77.0.1:80", "last_seen": 1764668832,
        "last_seen_utc": "2025-12-02T09:47:12Z", "probes": 3, "requests": 1,
        "bytes_served": 65536, "bytes_fetched": 7340032, "distrusted_until": 0,
        "distrusted_until_utc": "-", "distrust_reason": ""}, "peers --json: %r" % out)
    check(j and j[1]["address"] == "[fe80::1%eth0]:80" and j[1]["distrusted_until"] == 1764669000
          and j[1]["distrust_reason"] == "a block failing its hash", "peers --json: %r" % out)
    rc, out, err = run(["peers"] + S)
    check(rc == 0 and out.startswith(b"PEER") and b"10.77.0.1:80" in out and
          b"a block failing its hash" in out, "peers text: %r" % out)

    rc, out, err = run(["cache", "set", "size", "20G", "max-age", "12h"] + S)
    num, req = peer.requests[-2]
    check(rc == 0 and num == REQ_CACHE_SET and req.get(1) == [b"20G"] and req.get(2) == [b"12h"]
          and 3 not in req, "cache set: %d %r %r" % (rc, req, err))
    check(b"from override" in out, "cache set shows what is in force: %r" % out)
    rc, out, err = run(["cache", "set", "--reset"] + S)
    num, req = peer.requests[-2]
    check(rc == 0 and num == REQ_CACHE_SET and req == {3: [1]}, "cache set --reset: %r" % req)
    rc, out, err = run(["cache", "--socket", path, "set", "size", "5%"])
    num, req = peer.requests[-2]
    check(rc == 0 and req.get(1) == [b"5%"], "cache --socket X set: %d %r" % (rc, err))

    rc, out, err = run(["tags", "--all", "--json"] + S)
    num, req = last()
    j = parse_json(out, "tags --all --json")
    check(rc == 0 and num == REQ_TAGS and req.get(1) == [1], "tags --all sends all: %r" % req)
    check(j and len(j) == 2 and j[0]["uid"] == 1000 and j[0]["tag"] == bytes(range(16)).hex() and
          j[0]["last_used"] == 1764668832 and j[0]["last_used_utc"] == "2025-12-02T09:47:12Z" and
          j[0]["segments"] == 1 and j[1]["last_used_utc"] == "-", "tags --all --json: %r" % out)
    rc, out, err = run(["tags", "--all"] + S)
    check(rc == 0 and b"2025-12-02T09:47:12Z" in out and out.startswith(b"UID"),
          "tags --all text: %r" % out)

    rc, out, err = run(["flush", "--all"] + S)
    num, req = last()
    check(rc == 0 and num == REQ_ADMIN_FLUSH and req == {1: [1]} and
          out.startswith(b"removed 7 labels, freed 7000 bytes"), "flush --all: %r %r" % (req, out))
    rc, out, err = run(["flush", "--uid", "1000", "--tag", "00112233445566778899aabbccddeeff",
                        "--json"] + S)
    num, req = last()
    check(rc == 0 and num == REQ_ADMIN_FLUSH and req.get(2) == [1000] and
          req.get(3) == [bytes.fromhex("00112233445566778899aabbccddeeff")] and 1 not in req,
          "flush --uid --tag: %r" % req)
    check(parse_json(out, "flush --uid --json") == {"labels_removed": 7, "bytes_freed": 7000},
          "flush --uid --json: %r" % out)
    rc, out, err = run(["flush", "--uid", "root"] + S)
    num, req = last()
    check(rc == 0 and num == REQ_ADMIN_FLUSH and 2 not in req and 1 not in req,
          "flush --uid root is uid 0: %r" % req)

    # key set --key TEXT stores the UTF-16LE bytes of TEXT (what hash --key hashes).
    rc, out, err = run(["key", "set", "--key", "test-passphrase"] + S)
    num, req = last()
    check(rc == 0 and num == REQ_KEY and req.get(1) == [1] and
          req.get(2) == ["test-passphrase".encode("utf-16-le")], "key set --key: %r" % req)
    check(FINGERPRINT.encode() in out and b"publications made from now on" in out,
          "key set output: %r" % out)
    rc, out, err = run(["key", "set", "--key", "\u00e9\U0001F600"] + S)
    num, req = last()
    check(rc == 0 and req.get(2) == ["\u00e9\U0001F600".encode("utf-16-le")],
          "key set --key non-ASCII: %r" % req)
    rc, out, err = run(["key", "set", "--passphrase-hex", "74657374"] + S)
    num, req = last()
    check(rc == 0 and req.get(2) == [b"test"], "key set --passphrase-hex: %r" % req)
    imp = os.path.join(TMP, "import.key")
    with open(imp, "wb") as f:
        f.write(b"\x00\x01raw\xff")
    rc, out, err = run(["key", "import", imp] + S)
    num, req = last()
    check(rc == 0 and req.get(1) == [1] and req.get(2) == [b"\x00\x01raw\xff"],
          "key import: %r" % req)
    rc, out, err = run(["key", "show", "--json"] + S)
    num, req = last()
    check(rc == 0 and num == REQ_KEY and 1 not in req and
          parse_json(out, "key show --json") == {"fingerprint": FINGERPRINT, "secret_bytes": 15},
          "key show --json: %r" % out)

    exp = os.path.join(TMP, "exported.key")
    rc, out, err = run(["key", "export", exp] + S)
    num, req = last()
    check(rc == 0 and req.get(1) == [2] and open(exp, "rb").read() == EXPORTED and
          os.stat(exp).st_mode & 0o777 == 0o600, "key export: %d %r" % (rc, err))
    with open(exp, "wb") as f:
        f.write(b"other")
    rc, out, err = run(["key", "export", exp] + S)
    check(rc == 1 and "--force" in err and open(exp, "rb").read() == b"other",
          "key export over a file without --force: %d %r" % (rc, err))
    rc, out, err = run(["key", "export", exp, "--force"] + S)
    check(rc == 0 and open(exp, "rb").read() == EXPORTED and
          os.stat(exp).st_mode & 0o777 == 0o600, "key export --force: %d %r" % (rc, err))
    rc, shown, err = run_pty(["key", "export", "-"] + S, 1)
    check(rc == 2 and b"terminal" in err and EXPORTED.decode() not in shown,
          "key export to a terminal: %d %r" % (rc, err))
    peer.close()


def main():
    tests = [test_help_and_usage, test_connect_timeout, test_daemon_down_get_and_json,
             test_real_daemon, test_refusals, test_admin_requests, test_hash_stdin]
    try:
        for t in tests:
            print("==", t.__name__, flush=True)
            t()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    if FAILURES:
        print("%d failure(s)" % len(FAILURES))
        return 1
    print("ctl cli test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
