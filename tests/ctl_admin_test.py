#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""ctl_admin_test.py PEERDISTD PEERDISTCTL - the administration commands end to end.

Against a real peerdistd started here: `cache` counts what inject, get and flush did; `cache
set` overrides win over the defaults and `--reset` drops them; `tags --all` shows another
uid's tags; `flush --uid UID --tag T` and `flush --all` report what they released and leave
nothing listed; `key set --key TEXT` makes publications byte-identical to `hash --key TEXT`;
`key export` gives the UTF-16LE bytes of TEXT and `key import` takes them back; `key show`
prints the fingerprint. An unprivileged uid (through setpriv) is refused every admin verb with
the message naming root and group peerdist, and its own `tags`/`flush` still work. Needs
root (setpriv to another uid); skipped with a message otherwise.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

DAEMON, CTL = sys.argv[1], sys.argv[2]
NOBODY = 65534
FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what, flush=True)
    return cond


def run(args, uid=None, sock=None):
    cmd = [CTL] + args + (["--socket", sock] if sock else [])
    if uid is not None:
        cmd = ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups"] + cmd
    p = subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=120)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def js(args, **kw):
    rc, out, err = run(args + ["--json"], **kw)
    check(rc == 0, "%s: exit %d %r" % (args, rc, err))
    try:
        return json.loads(out)
    except ValueError:
        check(False, "%s: not JSON: %r" % (args, out))
        return {}


def main():
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        print("ctl admin test skipped: needs root and setpriv (runs commands as uid %d)" % NOBODY)
        return 0
    tmp = tempfile.mkdtemp(prefix="pdadm.")
    os.chmod(tmp, 0o755)  # the unprivileged uid reaches the socket and its own files here
    sock = os.path.join(tmp, "s.sock")
    log = open(os.path.join(tmp, "daemon.log"), "wb")
    d = subprocess.Popen([DAEMON, "--socket", sock, "--db", os.path.join(tmp, "cache.db"),
                          "--state-dir", os.path.join(tmp, "state")], stderr=log)
    try:
        for _ in range(200):
            if run(["status"], sock=sock)[0] == 0:
                break
            time.sleep(0.05)
        checks(tmp, sock)
    finally:
        d.terminate()
        d.wait()
        if FAILURES:
            sys.stdout.write(open(os.path.join(tmp, "daemon.log")).read()[-4000:])
        shutil.rmtree(tmp, ignore_errors=True)
    if FAILURES:
        print("%d failure(s)" % len(FAILURES))
        return 1
    print("ctl admin test passed")
    return 0


def checks(tmp, sock):
    S = dict(sock=sock)
    data = os.path.join(tmp, "data.bin")
    with open(data, "wb") as f:
        f.write(os.urandom(300000))
    os.chmod(data, 0o644)

    # The server key: set from text, publish, compare with hash of the same text.
    rc, _, err = run(["key", "set", "--key", "branch-office"], **S)
    check(rc == 0, "key set --key: %d %r" % (rc, err))
    ci_pub = os.path.join(tmp, "pub.ci")
    ci_hash = os.path.join(tmp, "hash.ci")
    rc, _, err = run(["publish", data, "-o", ci_pub], **S)
    check(rc == 0, "publish: %d %r" % (rc, err))
    rc, _, err = run(["hash", data, "--version", "1", "--key", "branch-office", "-o", ci_hash])
    check(rc == 0, "hash: %d %r" % (rc, err))
    check(open(ci_pub, "rb").read() == open(ci_hash, "rb").read(),
          "publication after key set differs from hash --key of the same text")
    secret = "branch-office".encode("utf-16-le")
    exported = os.path.join(tmp, "secret.out")
    rc, _, err = run(["key", "export", exported], **S)
    check(rc == 0 and open(exported, "rb").read() == secret,
          "key export: %d %r, not the UTF-16LE bytes of the text" % (rc, err))
    check(os.stat(exported).st_mode & 0o777 == 0o600, "key export: mode not 0600")
    show = js(["key", "show"], **S)
    fp = hashlib.sha256(secret).hexdigest()[:32]
    check(fp in json.dumps(show), "key show: fingerprint %s not in %r" % (fp, show))
    check(secret.hex() not in json.dumps(show), "key show printed the secret")
    imported = os.path.join(tmp, "secret.in")
    with open(imported, "wb") as f:
        f.write(b"\x01\x02\x03\x04" * 8)
    rc, _, err = run(["key", "import", imported], **S)
    check(rc == 0, "key import: %d %r" % (rc, err))
    rc, _, err = run(["key", "export", exported, "--force"], **S)
    check(rc == 0 and open(exported, "rb").read() == b"\x01\x02\x03\x04" * 8,
          "key import then export: %d %r" % (rc, err))

    # Counters: inject adds, get hits, flush flushes.
    before = js(["cache"], **S)
    for k in ("limit_bytes", "used_bytes", "blocks", "segments", "tags", "max_age_s",
              "hits_bytes", "misses_bytes", "added_bytes", "evicted_bytes",
              "evicted_size_bytes", "evicted_age_bytes", "flushed_bytes"):
        check(isinstance(before.get(k), int), "cache --json: %s missing in %r" % (k, before))
    tag_root = "00112233445566778899aabbccddeeff"
    rc, _, err = run(["inject", data, "--ci", ci_pub, "--tag", tag_root], **S)
    check(rc == 0, "inject as root: %d %r" % (rc, err))
    tag_user = "ffeeddccbbaa99887766554433221100"
    rc, _, err = run(["inject", data, "--ci", ci_pub, "--tag", tag_user], uid=NOBODY, **S)
    check(rc == 0, "inject as uid %d: %d %r" % (NOBODY, rc, err))
    out = os.path.join(tmp, "got.bin")
    rc, _, err = run(["get", "--ci", ci_pub, "-o", out], **S)
    check(rc == 0 and open(out, "rb").read() == open(data, "rb").read(), "get: %d %r" % (rc, err))
    after = js(["cache"], **S)
    check(after.get("added_bytes", 0) - before.get("added_bytes", 0) >= 300000,
          "added_bytes did not grow by the injected bytes: %r -> %r" % (before, after))
    check(after.get("hits_bytes", 0) - before.get("hits_bytes", 0) == 300000,
          "hits_bytes did not grow by the bytes read: %r -> %r" % (before, after))
    check(after.get("used_bytes", 0) > 0 and after.get("blocks", 0) >= 5,
          "cache holds nothing after inject: %r" % after)

    # cache set: override, then reset.
    rc, _, err = run(["cache", "set", "size", "1G"], **S)
    check(rc == 0, "cache set size 1G: %d %r" % (rc, err))
    c = js(["cache"], **S)
    check(c.get("limit_bytes") == 1 << 30 and c.get("cache_size_source") == "override",
          "after cache set size 1G: %r" % c)
    rc, _, err = run(["cache", "set", "max-age", "2h"], **S)
    c = js(["cache"], **S)
    check(rc == 0 and c.get("max_age_s") == 7200, "after cache set max-age 2h: %r" % c)
    rc, _, err = run(["cache", "set", "--reset"], **S)
    c = js(["cache"], **S)
    check(rc == 0 and c.get("cache_size_source") == "default" and
          c.get("max_age_s") == 28 * 86400, "after cache set --reset: %r" % c)

    # Refusals for an unprivileged uid; its own verbs still work.
    for args in (["tags", "--all"], ["flush", "--all"], ["flush", "--uid", "0"],
                 ["cache", "set", "size", "1G"], ["key", "show"],
                 ["key", "set", "--key", "x"], ["key", "export", "-"]):
        rc, _, err = run(args, uid=NOBODY, **S)
        check(rc == 1 and "needs root or membership of group peerdist" in err,
              "%s as uid %d: %d %r" % (args, NOBODY, rc, err))
    mine = js(["tags"], uid=NOBODY, **S)
    check(isinstance(mine, list) and len(mine) == 1 and mine[0].get("tag") == tag_user,
          "tags as uid %d: %r" % (NOBODY, mine))
    rc, _, _ = run(["cache"], uid=NOBODY, **S)
    check(rc == 0, "cache (read-only) refused to an unprivileged uid")

    # tags --all, flush --uid --tag, flush --all.
    every = js(["tags", "--all"], **S)
    uids = sorted(t.get("uid") for t in every) if isinstance(every, list) else []
    check(uids == [0, NOBODY], "tags --all: uids %r in %r" % (uids, every))
    for t in every if isinstance(every, list) else []:
        check(t.get("bytes") == 300000 and t.get("last_used", 0) > 0,
              "tags --all row: %r" % t)
    f = js(["flush", "--uid", str(NOBODY), "--tag", tag_user], **S)
    check(f.get("labels_removed", 0) >= 5 and f.get("bytes_freed") == 0,
          "flush --uid --tag (blocks still labelled by root): %r" % f)
    check(js(["tags"], uid=NOBODY, **S) == [], "uid %d still has tags" % NOBODY)
    f = js(["flush", "--all"], **S)
    check(f.get("labels_removed", 0) >= 5 and f.get("bytes_freed", 0) >= 300000,
          "flush --all: %r" % f)
    check(js(["tags", "--all"], **S) == [], "tags --all after flush --all is not empty")
    c = js(["cache"], **S)
    check(c.get("blocks") == 0 and c.get("segments") == 0, "cache after flush --all: %r" % c)
    rc, _, err = run(["get", "--ci", ci_pub, "-o", out + ".2"], **S)
    check(rc == 1 and not os.path.exists(out + ".2"), "get after flush --all: %d %r" % (rc, err))


if __name__ == "__main__":
    sys.exit(main())
