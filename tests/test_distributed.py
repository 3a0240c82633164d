#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""test_distributed.py - distributed mode end to end, run by tests/netns.sh on its LAN of
network namespaces: hosts a, b and c run peerdistd (mode distributed, peer_port 8080), host d
runs this script's own peer when a test needs one. Everything goes through peerdistctl as a
user would: `publish`, `inject`, `hash` make content and content information, `get` reads it
on another host, `cache --json` and `peers --json` show the peer byte counters.

  test_distributed.py                 the tests (inside netns.sh)
  test_distributed.py --peer MODE CI.. a peer for host d: answers V1 Probes for the segments
                                       of the content information files and serves MSG_BLK on
                                       peer_port; MODE liar sends wrong bytes (properly
                                       encrypted, so only the hash check can catch them),
                                       MODE silent answers Probes and never sends a block.
  test_distributed.py --probes DEST IDS SRC..  one V1 Probe for the segment IDs (hex, commas)
                                       from each source address to DEST:3702 (a crowd).

Each test says PASS or FAIL (with why); the exit status is 1 if any failed. Run it with
`-k NAME` to run the tests whose name contains NAME, and PD_NETNS_KEEP=1 to keep the daemons'
logs and databases:
  sudo PD_NETNS_KEEP=1 tests/netns.sh build/daemon/peerdistd build/client/peerdistctl \
      python3 tests/test_distributed.py -k liar
Tests share the three daemons and run in order; each starts from empty caches (flush --all),
and a daemon a test killed is started again. Host b keeps distrusting host d after the liar.
"""
import base64
import hashlib
import hmac
import http.server
import json
import os
import re
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid

ENV = os.environ
NODES = "abc"
PORT = int(ENV.get("PD_PEER_PORT", "8080"))
PCCRR_PATH = "/116b50eb-ece2-41ac-8429-9f9e963361b7/"
C_UTF16 = "MS_P2P_CACHING\0".encode("utf-16le")
PASSPHRASE = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
TAG = "0123456789abcdef0123456789abcdef"


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


# ---- the hosts -----------------------------------------------------------------------------

def ns(node):
    return ENV["PD_NS_" + node.upper()]


def addr(node):
    return ENV["PD_ADDR_" + node.upper()]


def nodedir(node):
    return os.path.join(ENV["PD_NETNS_DIR"], node)


def ctl(node, *args, timeout=120, check_rc=None):
    """peerdistctl on host node (inside its namespace) against its daemon."""
    env = dict(ENV, PEERDIST_SOCKET=os.path.join(nodedir(node), "sock"))
    cmd = ["ip", "netns", "exec", ns(node), ENV["PD_PEERDISTCTL"]] + list(args)
    p = subprocess.run(cmd, env=env, capture_output=True, timeout=timeout)
    if check_rc is not None and p.returncode != check_rc:
        raise Fail("peerdistctl %s on %s: exit %d, want %d\nstdout: %s\nstderr: %s" % (
            " ".join(args), node, p.returncode, check_rc, p.stdout.decode(errors="replace")[-2000:],
            p.stderr.decode(errors="replace")[-2000:]))
    return p


def ctl_json(node, *args, **kw):
    p = ctl(node, *args, "--json", check_rc=0, **kw)
    return json.loads(p.stdout)


def counters(node):
    """(peer_fetched_bytes, peer_served_bytes) of host node's daemon."""
    c = ctl_json(node, "cache")
    check("peer_fetched_bytes" in c and "peer_served_bytes" in c,
          "peerdistctl cache --json has no peer byte counters: %s" % c)
    return c["peer_fetched_bytes"], c["peer_served_bytes"]


def host_of(address):
    """The host letter of a peer address ("10.77.0.1:8080", "[fe80::..%eth0]:8080"), or it."""
    if address.startswith("["):
        host = address[1:].split("]")[0]
    elif address.count(":") == 1:
        host = address.rsplit(":", 1)[0]
    else:
        host = address  # an address alone (a host that probed us or asked us for blocks)
    host = host.split("%")[0]
    for n in "abcd":
        if host in (ENV.get("PD_ADDR_" + n.upper()), ENV.get("PD_ADDR6_" + n.upper())):
            return n
    return host


def fetched_from(node):
    """{peer host letter: verified bytes host node fetched from it, over IPv4 and IPv6}
    (peerdistctl peers)."""
    out = {}
    for p in ctl_json(node, "peers"):
        h = host_of(p["address"])
        out[h] = out.get(h, 0) + p.get("bytes_fetched", 0)
    return out


def fetched_delta(node, before, peer):
    return fetched_from(node).get(peer, 0) - before.get(peer, 0)


def daemon_pid(node):
    with open(os.path.join(nodedir(node), "pid")) as f:
        return int(f.read())


def daemon_alive(node):
    try:
        os.kill(daemon_pid(node), 0)
        return True
    except OSError:
        return False


def start_daemon(node):
    d = nodedir(node)
    log = open(os.path.join(d, "log"), "ab")
    p = subprocess.Popen(["ip", "netns", "exec", ns(node), ENV["PD_PEERDISTD"], "--config",
                          os.path.join(d, "peerdistd.conf")], stdout=log, stderr=log)
    with open(os.path.join(d, "pid"), "w") as f:
        f.write(str(p.pid))
    for _ in range(300):
        if os.path.exists(os.path.join(d, "sock")) and ctl(node, "status").returncode == 0:
            return p
        check(p.poll() is None, "peerdistd on %s exited with %s" % (node, p.returncode))
        time.sleep(0.1)
    raise Fail("peerdistd on %s did not come up" % node)


def stop_daemon(node, sig=signal.SIGTERM):
    pid = daemon_pid(node)
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    for _ in range(300):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not daemon_alive(node):
            return
        time.sleep(0.1)
    raise Fail("peerdistd on %s did not stop" % node)


def set_conf(node, key, value):
    """Sets key in host node's peerdistd.conf (replacing it) and tells the daemon (SIGHUP)."""
    path = os.path.join(nodedir(node), "peerdistd.conf")
    with open(path) as f:
        lines = [l for l in f.read().splitlines() if not l.startswith(key + " =")]
    if value is not None:
        lines.append("%s = %s" % (key, value))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    if daemon_alive(node):
        os.kill(daemon_pid(node), signal.SIGHUP)


def wait_log(node, text, seconds=30):
    path = os.path.join(nodedir(node), "log")
    for _ in range(seconds * 10):
        with open(path, errors="replace") as f:
            if text in f.read():
                return
        time.sleep(0.1)
    raise Fail("host %s's log never said %r" % (node, text))


def flush_all():
    for n in NODES:
        if daemon_alive(n):
            ctl(n, "flush", "--all", check_rc=0)


# ---- content -------------------------------------------------------------------------------

WORK = None


def make_file(name, size):
    path = os.path.join(WORK, name)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(os.urandom(n))
            left -= n
    return path


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def hash_ci(path, version, rng=None):
    """Content information made without any daemon (peerdistctl hash)."""
    out = path + ".v%d%s.ci" % (version, ".range" if rng else "")
    args = ["hash", path, "--version", str(version), "--passphrase-hex", PASSPHRASE, "-o", out]
    if rng:
        args += ["--range", "%d:%d" % rng]
    ctl("a", *args, check_rc=0)
    return out


def publish(node, path, version):
    out = path + ".%s.v%d.ci" % (node, version)
    ctl(node, "publish", path, "--version", str(version), "-o", out, check_rc=0, timeout=600)
    return out


def inject(node, path, ci, tag=TAG):
    ctl(node, "inject", path, "--ci", ci, "--tag", tag, check_rc=0, timeout=600)


def get(node, ci, out, timeout_ms=20000, extra=(), proc_timeout=600):
    return ctl(node, "get", "--ci", ci, "-o", out, "--timeout", str(timeout_ms), *extra,
               timeout=proc_timeout)


def expect_read(node, ci, src, timeout_ms=20000):
    out = os.path.join(WORK, "out-%s-%s" % (node, os.path.basename(ci)))
    p = get(node, ci, out, timeout_ms)
    check(p.returncode == 0, "get on %s failed (exit %d): %s" % (
        node, p.returncode, p.stderr.decode(errors="replace")[-1500:]))
    check(sha256_file(out) == sha256_file(src), "get on %s: the bytes differ from the file" % node)
    os.unlink(out)


# ---- a peer of our own, for host d (MS-PCCRD responder and MS-PCCRR server) ------------------

def parse_ci_v1(data):
    """[(hohodk, kp, segment length, block count)] of a V1 content information file."""
    ver, algo, _first, _last, nseg = struct.unpack_from("<HIIII", data, 0)
    if ver != 0x0100 or algo != 0x800C:
        raise ValueError("not V1 SHA-256 content information")
    off, segs = 18, []
    for _ in range(nseg):
        _o, cb, _bs = struct.unpack_from("<QII", data, off)
        hod, kp = data[off + 16:off + 48], data[off + 48:off + 80]
        off += 80
        hohodk = hmac.new(kp, hod + C_UTF16, hashlib.sha256).digest()
        segs.append((hohodk, kp, cb, (cb + 65535) // 65536))
    return segs


def aes128_cbc(key, iv, plain):
    p = subprocess.run(["openssl", "enc", "-aes-128-cbc", "-K", key.hex(), "-iv", iv.hex()],
                       input=plain, capture_output=True, check=True)
    return p.stdout


def pad4(b):
    return b + b"\0" * (-len(b) % 4)


def pccrr_blk(seg_id, index, nblocks, cipher, iv):
    body = struct.pack(">I", len(seg_id)) + pad4(seg_id)
    body += struct.pack(">III", index, index + 1 if index + 1 < nblocks else 0, len(cipher))
    body += pad4(cipher) + struct.pack(">I", 0) + struct.pack(">I", len(iv)) + iv
    msg = struct.pack(">HHIII", 0, 1, 5, 16 + len(body), 1) + body
    return struct.pack(">I", len(msg)) + msg


def probe_match(relates_to, ids_hex, counts, xaddr):
    return ("<?xml version=\"1.0\" encoding=\"utf-8\"?>"
            "<soap:Envelope xmlns:soap=\"http://www.w3.org/2003/05/soap-envelope\" "
            "xmlns:wsa=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" "
            "xmlns:wsd=\"http://schemas.xmlsoap.org/ws/2005/04/discovery\" "
            "xmlns:PeerDist=\"http://schemas.microsoft.com/p2p/2007/09/PeerDistributionDiscovery\">"
            "<soap:Header>"
            "<wsa:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:To>"
            "<wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsa:Action>"
            "<wsa:MessageID>urn:uuid:%s</wsa:MessageID>"
            "<wsa:RelatesTo>%s</wsa:RelatesTo>"
            "<wsd:AppSequence InstanceId=\"%d\" MessageNumber=\"1\"/>"
            "</soap:Header><soap:Body><wsd:ProbeMatches><wsd:ProbeMatch>"
            "<wsa:EndpointReference><wsa:Address>urn:uuid:%s</wsa:Address></wsa:EndpointReference>"
            "<wsd:Types>PeerDist:PeerDistData</wsd:Types>"
            "<wsd:Scopes>%s</wsd:Scopes>"
            "<wsd:XAddrs>%s</wsd:XAddrs>"
            "<wsd:MetadataVersion>1</wsd:MetadataVersion>"
            "<PeerDist:PeerDistData><PeerDist:BlockCount>%s</PeerDist:BlockCount></PeerDist:PeerDistData>"
            "</wsd:ProbeMatch></wsd:ProbeMatches></soap:Body></soap:Envelope>" % (
                uuid.uuid4(), relates_to, int(time.time()), uuid.uuid4(), " ".join(ids_hex), xaddr,
                "".join("%08X" % c for c in counts))).encode()


def run_peer(mode, ci_paths):
    segs = {}
    for path in ci_paths:
        with open(path, "rb") as f:
            for hohodk, kp, cb, nblocks in parse_ci_v1(f.read()):
                segs[hohodk] = (kp, cb, nblocks)
    my_addr = ENV["PD_ADDR_D"]
    log = open(os.path.join(ENV["PD_NETNS_DIR"], "peer-d.log"), "a", buffering=1)

    def discovery():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", 3702))
        mreq = socket.inet_aton("239.255.255.250") + socket.inet_aton(my_addr)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        while True:
            data, src = s.recvfrom(65536)
            text = data.decode(errors="replace")
            m = re.search(r"<(?:\w+:)?Scopes[^>]*>([^<]*)</", text)
            mid = re.search(r"<(?:\w+:)?MessageID[^>]*>([^<]*)</", text)
            if not m or not mid or "/discovery/Probe<" not in text:
                continue
            held = [i for i in m.group(1).split() if bytes.fromhex(i) in segs] if re.fullmatch(
                r"[0-9A-Fa-f\s]*", m.group(1)) else []
            log.write("probe from %s: %d of %d ids held\n" % (src[0], len(held),
                                                                 len(m.group(1).split())))
            if held:
                counts = [segs[bytes.fromhex(i)][2] for i in held]
                s.sendto(probe_match(mid.group(1), held, counts, "%s:%d" % (my_addr, PORT)), src)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path.lower() != PCCRR_PATH or len(body) < 16:
                self.send_error(400)
                return
            _minor, _major, mtype, _size, _algo = struct.unpack_from(">HHIII", body, 0)
            log.write("request type %d from %s\n" % (mtype, self.client_address[0]))
            if mode == "silent":
                time.sleep(60)
                return
            if mtype == 0:  # NEGO_REQ: we speak 1.0 only
                msg = struct.pack(">HHIIIII", 0, 1, 1, 24, 0, 1, 1)
                reply = struct.pack(">I", len(msg)) + msg
            elif mtype == 3:  # GETBLKS: the block asked for, with wrong bytes, encrypted right
                idlen = struct.unpack_from(">I", body, 16)[0]
                seg_id = body[20:20 + idlen]
                off = 20 + idlen + (-idlen % 4)
                _count, index, _n = struct.unpack_from(">III", body, off)
                kp, cb, nblocks = segs.get(seg_id, (None, 0, 0))
                if kp is None or index >= nblocks:
                    cipher, iv = b"", b""
                else:
                    length = min(65536, cb - index * 65536)
                    iv = os.urandom(16)
                    cipher = aes128_cbc(kp[:16], iv, bytes([0xA5]) * length)
                    log.write("lied about block %d\n" % index)
                reply = pccrr_blk(seg_id, index, nblocks, cipher, iv)
            else:
                self.send_error(400)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    threading.Thread(target=discovery, daemon=True).start()
    srv = Server(("0.0.0.0", PORT), Handler)
    log.write("peer %s ready on %s:%d, %d segments\n" % (mode, my_addr, PORT, len(segs)))
    srv.serve_forever()


def probe_xml(ids):
    """A V1-form Probe (MS-PCCRD §4.3) for the segment IDs, with a fresh MessageID."""
    return ("<?xml version=\"1.0\" encoding=\"utf-8\"?>"
            "<soap:Envelope xmlns:soap=\"http://www.w3.org/2003/05/soap-envelope\" "
            "xmlns:wsa=\"http://schemas.xmlsoap.org/ws/2004/08/addressing\" "
            "xmlns:wsd=\"http://schemas.xmlsoap.org/ws/2005/04/discovery\" "
            "xmlns:PeerDist=\"http://schemas.microsoft.com/p2p/2007/09/PeerDistributionDiscovery\">"
            "<soap:Header><wsa:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</wsa:To>"
            "<wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</wsa:Action>"
            "<wsa:MessageID>urn:uuid:%s</wsa:MessageID></soap:Header><soap:Body><wsd:Probe>"
            "<wsd:Types>PeerDist:PeerDistData</wsd:Types>"
            "<wsd:Scopes MatchBy=\"http://schemas.xmlsoap.org/ws/2005/04/discovery/strcmp0\">%s"
            "</wsd:Scopes></wsd:Probe></soap:Body></soap:Envelope>" % (
                uuid.uuid4(), " ".join(i.hex().upper() for i in ids))).encode()


def send_probes(dest, ids_hex, sources):
    """(--probes) One Probe for the IDs from each source address, to dest's port 3702."""
    ids = [bytes.fromhex(i) for i in ids_hex.split(",")]
    for src in sources:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((src, 0))
        s.sendto(probe_xml(ids), (dest, 3702))
        s.close()


class Peer:
    """This script's own peer, run on host d."""

    def __init__(self, mode, cis):
        self.log = os.path.join(ENV["PD_NETNS_DIR"], "peer-d.log")
        open(self.log, "w").close()
        self.p = subprocess.Popen(["ip", "netns", "exec", ns("d"), sys.executable,
                                   os.path.abspath(__file__), "--peer", mode] + list(cis))
        for _ in range(100):
            if "ready" in self.text():
                return
            check(self.p.poll() is None, "the peer on host d exited")
            time.sleep(0.1)
        raise Fail("the peer on host d did not start")

    def text(self):
        with open(self.log) as f:
            return f.read()

    def stop(self):
        self.p.kill()
        self.p.wait()


# ---- the tests -----------------------------------------------------------------------------

def test_daemons_run_distributed():
    """Every host's daemon says mode distributed, and the hosts reach each other."""
    for n in NODES:
        st = ctl_json(n, "status")
        check(st["mode"] == "distributed", "host %s: mode %s" % (n, st["mode"]))
    # The network itself: a TCP connection from b to a's peer port.
    p = subprocess.run(["ip", "netns", "exec", ns("b"), sys.executable, "-c",
                        "import socket; socket.create_connection(('%s', %d), 3).close()" %
                        (addr("a"), PORT)], capture_output=True)
    check(p.returncode == 0, "b cannot connect to a's peer port %d: %s" % (
        PORT, p.stderr.decode()[-300:]))


def test_v1_published_on_a_read_on_b():
    """V1 content published and injected on a is read on b: every byte from a."""
    size = 4 << 20
    src = make_file("v1-4m", size)
    ci = publish("a", src, 1)
    inject("a", src, ci)
    fb0, _ = counters("b")
    per0 = fetched_from("b")
    expect_read("b", ci, src)
    fb1, _ = counters("b")
    check(fb1 - fb0 == size, "b fetched %d bytes from peers, want %d" % (fb1 - fb0, size))
    got_a = fetched_delta("b", per0, "a")
    check(got_a == size, "peerdistctl peers on b: %d bytes fetched from a, want %d" % (got_a, size))
    # Read again: now from b's own cache, nothing from peers.
    expect_read("b", ci, src, timeout_ms=0)
    check(counters("b")[0] == fb1, "a second read fetched from peers again")


def test_get_reports_sources():
    """get --json says how many bytes came from peers and how many from the local cache."""
    size = (1 << 20) + 4321
    src = make_file("sources-1m", size)
    ci = publish("c", src, 1)
    inject("c", src, ci)
    out = os.path.join(WORK, "sources-out")
    p = ctl("b", "get", "--ci", ci, "-o", out, "--timeout", "20000", "--json")
    check(p.returncode == 0, "get --json: exit %d: %s" % (p.returncode, p.stderr[-500:]))
    j = json.loads(p.stdout)
    check(j["peer_bytes"] == size and j["cache_bytes"] == 0 and j["bytes"] == size,
          "first read: %s" % j)
    p = ctl("b", "get", "--ci", ci, "-o", out, "--json")  # the default timeout
    j = json.loads(p.stdout)
    check(p.returncode == 0 and j["peer_bytes"] == 0 and j["cache_bytes"] == size,
          "second read: %s" % j)


def test_served_bytes_counted():
    """peerdistctl cache on the serving host counts the bytes it served (peer_served_bytes)."""
    size = 2 << 20
    src = make_file("served-2m", size)
    ci = hash_ci(src, 1)
    inject("a", src, ci)
    _, sa0 = counters("a")
    expect_read("b", ci, src)
    _, sa1 = counters("a")
    check(sa1 - sa0 >= size, "a's peer_served_bytes grew by %d, want at least %d" % (
        sa1 - sa0, size))
    # peerdistctl peers on a: b probed for the segment and asked for its blocks.
    seen = {}
    for p in ctl_json("a", "peers"):
        h = host_of(p["address"])
        for k in ("probes", "requests", "bytes_served"):
            seen.setdefault(h, {}).setdefault(k, 0)
            seen[h][k] += p.get(k, 0)
    b = seen.get("b", {})
    check(b.get("probes", 0) >= 1 and b.get("requests", 0) >= 1 and
          b.get("bytes_served", 0) >= size,
          "a's peers shows b with probes/requests/bytes_served %s, want >= 1, 1, %d (%s)" % (
              b, size, seen))


def test_v2_from_a_or_c():
    """V2 content held by a and c is read on b, the blocks coming from a or c."""
    size = 3 << 20
    src = make_file("v2-3m", size)
    ci = publish("a", src, 2)
    inject("a", src, ci)
    inject("c", src, ci)
    fb0, _ = counters("b")
    per0 = fetched_from("b")
    expect_read("b", ci, src)
    fb1, _ = counters("b")
    check(fb1 - fb0 == size, "b fetched %d bytes, want %d" % (fb1 - fb0, size))
    fa, fc = fetched_delta("b", per0, "a"), fetched_delta("b", per0, "c")
    check(fa + fc == size, "b fetched %d bytes from a and %d from c, want %d in all" % (
        fa, fc, size))


def test_v2_single_segment():
    """A small V2 file (one segment) held by c is read on b."""
    src = make_file("v2-40k", 40000)
    ci = hash_ci(src, 2)
    inject("c", src, ci)
    expect_read("b", ci, src)


def test_v1_held_by_c_only():
    """V1 content (made by hash, no publication) held only by c is read on b, from c."""
    size = (2 << 20) + 12345
    src = make_file("v1-c-2m", size)
    ci = hash_ci(src, 1)
    inject("c", src, ci)
    per0 = fetched_from("b")
    expect_read("b", ci, src)
    check(fetched_delta("b", per0, "c") == size, "b did not fetch it all from c")


def test_100mib():
    """A 100 MiB V1 file (four segments) published on a is read on b, and verified."""
    src = make_file("big-100m", 100 << 20)
    ci = publish("a", src, 1)
    inject("a", src, ci)
    expect_read("b", ci, src, timeout_ms=300000)


def test_liar_rejected():
    """A peer (host d) answering with wrong bytes is not believed: alone, the read fails and
    b stores nothing; once a holds the content, the read completes with the right bytes."""
    src = make_file("liar-1m", 1 << 20)
    ci = hash_ci(src, 1)
    peer = Peer("liar", [ci])
    try:
        out = os.path.join(WORK, "liar-out")
        with open(out, "wb") as f:
            f.write(b"untouched")
        fb0, _ = counters("b")
        p = get("b", ci, out, timeout_ms=8000)
        check(p.returncode == 1, "get with only a liar: exit %d, want 1" % p.returncode)
        check(b"missing" in p.stderr, "get with only a liar does not say what is missing")
        with open(out, "rb") as f:
            check(f.read() == b"untouched", "get with only a liar changed OUT")
        check("lied about block" in peer.text(), "the liar was never asked for a block")
        check(counters("b")[0] == fb0, "b counted bytes from the liar as fetched")
        # Nothing the liar sent is in b's cache: a local-only read finds nothing.
        p = get("b", ci, out, timeout_ms=0)
        check(p.returncode == 1, "b's cache holds bytes of content nobody honest served")
        inject("a", src, ci)
        expect_read("b", ci, src)
        peers = ctl_json("b", "peers")
        liar = [x for x in peers if host_of(x["address"]) == "d"]
        check(liar and liar[0].get("distrusted_until", 0) > 0,
              "b does not show the liar as distrusted: %s" % peers)
    finally:
        peer.stop()


def test_peer_vanishes():
    """a is killed while b reads a file that a and c hold: the read completes from c."""
    size = 64 << 20
    src = make_file("vanish-64m", size)
    ci = hash_ci(src, 1)
    inject("a", src, ci)
    inject("c", src, ci)
    # Slow serving down (serve_rate_limit follows SIGHUP) so that the kill lands mid-read.
    for n in "ac":
        set_conf(n, "serve_rate_limit", "8M")
    time.sleep(0.5)
    out = os.path.join(WORK, "vanish-out")
    env = dict(ENV, PEERDIST_SOCKET=os.path.join(nodedir("b"), "sock"))
    reader = subprocess.Popen(["ip", "netns", "exec", ns("b"), ENV["PD_PEERDISTCTL"], "get",
                               "--ci", ci, "-o", out, "--timeout", "120000"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        fb0, _ = counters("b")
        for _ in range(600):
            if counters("b")[0] > fb0 or reader.poll() is not None:
                break
            time.sleep(0.05)
        check(reader.poll() is None, "the read ended before the kill (serve_rate_limit not held?)")
        check(counters("b")[0] > fb0, "b never fetched a byte of it")
        stop_daemon("a", signal.SIGKILL)
        _, err = reader.communicate(timeout=600)
        check(reader.returncode == 0, "get after a vanished: exit %d: %s" % (
            reader.returncode, err.decode(errors="replace")[-1500:]))
        check(sha256_file(out) == sha256_file(src), "get after a vanished: wrong bytes")
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
        for n in "ac":
            set_conf(n, "serve_rate_limit", None)
        if not daemon_alive("a"):
            start_daemon("a")


def test_timeouts():
    """get --timeout is honoured: 0 is the local cache alone (no peer asked, though a holds the
    content); a peer that answers Probes but never sends a block makes a short timeout end the
    read with the bytes missing, not a hang; with nobody holding the content the read ends
    with the bytes missing too."""
    src = make_file("timeout-1m", 1 << 20)
    ci = hash_ci(src, 1)
    inject("a", src, ci)
    out = os.path.join(WORK, "timeout-out")
    _, sa0 = counters("a")
    p = get("b", ci, out, timeout_ms=0)
    check(p.returncode == 1 and b"missing" in p.stderr, "--timeout 0 read from peers")
    check(counters("a")[1] == sa0, "--timeout 0 made a serve")
    check(not os.path.exists(out), "--timeout 0 created OUT")

    src2 = make_file("timeout-silent-1m", 1 << 20)
    ci2 = hash_ci(src2, 1)
    peer = Peer("silent", [ci2])
    try:
        # On c: b may still distrust host d after test_liar_rejected.
        p = get("c", ci2, out, timeout_ms=1500, proc_timeout=60)
        check(p.returncode == 1 and b"missing" in p.stderr,
              "a read from a silent peer: exit %d, %s" % (p.returncode, p.stderr[-500:]))
        check("request type" in peer.text(), "the silent peer was never asked for a block")
    finally:
        peer.stop()

    src3 = make_file("timeout-nobody-1m", 1 << 20)
    ci3 = hash_ci(src3, 1)
    p = get("b", ci3, out, timeout_ms=3000, proc_timeout=60)
    check(p.returncode == 1 and b"missing" in p.stderr, "content nobody holds was read")
    # The default timeout (no --timeout: PEERDIST_READ_TIMEOUT_DEFAULT, 5 s) fetches too.
    p = ctl("b", "get", "--ci", ci, "-o", out, timeout=120)
    check(p.returncode == 0, "get without --timeout did not fetch: %s" % p.stderr[-500:])
    check(sha256_file(out) == sha256_file(src), "get without --timeout: wrong bytes")


def test_ranged_blocks_not_served():
    """Blocks a holds verified only against a ranged hash list are not served to b."""
    src = make_file("ranged-2m", 2 << 20)
    rci = hash_ci(src, 1, (0, 4 * 65536))
    inject("a", src, rci)
    _, sa0 = counters("a")
    fb0, _ = counters("b")
    out = os.path.join(WORK, "ranged-out")
    p = get("b", rci, out, timeout_ms=4000, proc_timeout=60)
    check(p.returncode == 1, "b read blocks a holds only ranged-verified")
    check(counters("a")[1] == sa0, "a served ranged-verified blocks")
    check(counters("b")[0] == fb0, "b fetched bytes it should not have got")
    # Bound by a full list on a, the same blocks are served.
    full = hash_ci(src, 1)
    inject("a", src, full)
    p = get("b", rci, out, timeout_ms=20000)
    check(p.returncode == 0, "once bound on a, b still cannot read the range: %s" % p.stderr[-500:])
    with open(src, "rb") as f, open(out, "rb") as g:
        check(g.read() == f.read(4 * 65536), "the range read on b differs")


def test_serve_no():
    """serve = no (taken on SIGHUP): c fetches from a but serves nothing; serve = yes again
    and c serves."""
    src = make_file("serve-no-1m", 1 << 20)
    ci = hash_ci(src, 1)
    inject("c", src, ci)
    other = make_file("serve-no-a-1m", 1 << 20)
    oci = hash_ci(other, 1)
    inject("a", other, oci)
    set_conf("c", "serve", "no")
    try:
        wait_log("c", "reload: serve yes -> no")
        out = os.path.join(WORK, "serve-no-out")
        p = get("b", ci, out, timeout_ms=4000, proc_timeout=60)
        check(p.returncode == 1 and b"missing" in p.stderr, "b read what only c (serve = no) holds")
        expect_read("c", oci, other)  # c still fetches
    finally:
        set_conf("c", "serve", None)
    wait_log("c", "reload: serve no -> yes")
    expect_read("b", ci, src)


def restart_with(node, key, value):
    """Changes a key that needs a restart (set_conf's SIGHUP is harmless), then restarts."""
    set_conf(node, key, value)
    stop_daemon(node)
    start_daemon(node)


def test_ipv6_only():
    """a and b with ipv4 = no (a restart): b reads from a over IPv6 link-local alone."""
    src = make_file("v6-1m", 1 << 20)
    ci = hash_ci(src, 1)
    try:
        for n in "ab":
            restart_with(n, "ipv4", "no")
        inject("a", src, ci)

        def over_v4():
            return sum(p.get("bytes_fetched", 0) for p in ctl_json("b", "peers")
                       if p["address"].startswith(addr("a") + ":"))
        per0, v4 = fetched_from("b"), over_v4()
        expect_read("b", ci, src)
        check(fetched_delta("b", per0, "a") == 1 << 20, "b did not fetch it from a")
        check(over_v4() == v4, "b fetched from a over IPv4 with ipv4 = no")
    finally:
        for n in "ab":
            restart_with(n, "ipv4", None)


def flash_crowd_info():
    """The flash_crowd_info helper (tests/flash_crowd_info.c): from ctest's environment, else
    next to peerdistctl in the build tree."""
    path = ENV.get("PD_FLASH_CROWD_INFO") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(ENV["PD_PEERDISTCTL"]))), "tests",
        "flash_crowd_info")
    check(os.access(path, os.X_OK), "no flash_crowd_info helper at %s" % path)
    return path


def test_flash_crowd():
    """fFlashCrowd (PeerDistClientGetInformationByHandle) on b: FALSE with 3 distinct hosts
    probing for a segment of the content, TRUE once a 4th does (more than 3 in 10 s), and
    FALSE again once the 10 s have passed. The probers are four addresses of host d."""
    helper = flash_crowd_info()
    src = make_file("crowd-1m", 1 << 20)
    ci = hash_ci(src, 1)
    with open(ci, "rb") as f:
        ids = ",".join(seg[0].hex() for seg in parse_ci_v1(f.read()))
    env = dict(ENV, PEERDIST_SOCKET=os.path.join(nodedir("b"), "sock"))

    def crowd():
        p = subprocess.run(["ip", "netns", "exec", ns("b"), helper, ci], env=env,
                           capture_output=True, timeout=60)
        check(p.returncode == 0, "flash_crowd_info: exit %d: %s" % (
            p.returncode, p.stderr.decode(errors="replace")[-500:]))
        return p.stdout.decode().split() == ["fFlashCrowd", "1"]

    def probe_from(sources):
        p = subprocess.run(["ip", "netns", "exec", ns("d"), sys.executable,
                            os.path.abspath(__file__), "--probes", addr("b"), ids] + sources,
                           capture_output=True, timeout=60)
        check(p.returncode == 0, "Probes from d: %s" % p.stderr.decode(errors="replace")[-500:])

    def heard(n):
        """Waits until b's peers list shows n hosts of the crowd that probed."""
        for _ in range(50):
            probers = [x for x in ctl_json("b", "peers")
                       if x.get("probes", 0) > 0 and x["address"] in sources]
            if len(probers) >= n:
                return
            time.sleep(0.1)
        raise Fail("b did not hear the Probes of %d hosts" % n)

    sources = ["10.77.0.%d" % i for i in (21, 22, 23, 24)]
    for a in sources:
        subprocess.run(["ip", "-n", ns("d"), "addr", "add", a + "/24", "dev", "eth0"], check=True)
    try:
        check(not crowd(), "fFlashCrowd TRUE before anyone probed")
        probe_from(sources[:3])
        heard(3)
        check(not crowd(), "fFlashCrowd TRUE with 3 distinct probers (the rule is more than 3)")
        probe_from(sources[3:])
        heard(4)
        check(crowd(), "fFlashCrowd FALSE with 4 distinct probers in 10 s")
        # The window passes: FALSE again (polled; the count drops once the Probes are 10 s old).
        deadline = time.monotonic() + 30
        while crowd():
            check(time.monotonic() < deadline, "fFlashCrowd still TRUE 30 s after the Probes")
            time.sleep(0.5)
    finally:
        for a in sources:
            subprocess.run(["ip", "-n", ns("d"), "addr", "del", a + "/24", "dev", "eth0"])


def test_daemons_survived():
    """No daemon crashed along the way."""
    for n in NODES:
        check(daemon_alive(n), "peerdistd on %s is gone" % n)


TESTS = [test_daemons_run_distributed, test_v1_published_on_a_read_on_b, test_get_reports_sources,
         test_served_bytes_counted, test_v2_from_a_or_c, test_v2_single_segment,
         test_v1_held_by_c_only, test_liar_rejected, test_timeouts, test_ranged_blocks_not_served,
         test_serve_no, test_ipv6_only, test_flash_crowd, test_100mib, test_peer_vanishes,
         test_daemons_survived]


def main():
    global WORK
    if len(sys.argv) > 2 and sys.argv[1] == "--peer":
        run_peer(sys.argv[2], sys.argv[3:])
        return 0
    if len(sys.argv) > 4 and sys.argv[1] == "--probes":
        send_probes(sys.argv[2], sys.argv[3], sys.argv[4:])
        return 0
    if "PD_NETNS_DIR" not in ENV:
        print("test_distributed.py runs inside tests/netns.sh: "
              "netns.sh PEERDISTD PEERDISTCTL python3 test_distributed.py")
        return 2
    only = sys.argv[sys.argv.index("-k") + 1] if "-k" in sys.argv else None
    WORK = tempfile.mkdtemp(dir=ENV["PD_NETNS_DIR"], prefix="work.")
    failed = []
    for t in TESTS:
        if only and only not in t.__name__:
            continue
        start = time.monotonic()
        try:
            flush_all()
            t()
            print("PASS %s (%.1f s)" % (t.__name__, time.monotonic() - start), flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is reported, then the next test
            failed.append(t.__name__)
            why = str(e) if isinstance(e, Fail) else traceback.format_exc()
            print("FAIL %s: %s" % (t.__name__, why), flush=True)
        finally:
            for n in NODES:
                if not daemon_alive(n):
                    try:
                        start_daemon(n)
                    except Fail as e:
                        print("could not restart %s: %s" % (n, e), flush=True)
    print("%d failed: %s" % (len(failed), " ".join(failed)) if failed else "all passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
