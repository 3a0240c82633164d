#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""test_discovery.py - daemon/discovery.c (MS-PCCRD) in two network namespaces.

Namespace A runs discovery_helper (discovery alone on an event loop, mode distributed, a stub
peer_serve_segment); this script moves itself into namespace B and plays the other peer with
plain sockets: V1- and V2-form Probes over IPv4 and IPv6, unknown segments, a malformed
datagram, a flood; then a responder for A's own Probes (a ProbeMatch from another subnet,
one with another host in XAddrs, one for no Probe), and a second helper in B as a real peer.
A and B are joined by a veth pair with no default route. Needs root: exits 77 (skipped)
otherwise, saying why.

usage: test_discovery.py DISCOVERY_HELPER
"""
import base64
import ctypes
import os
import re
import select
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid

PORT = 3702
GROUP4 = "239.255.255.250"
GROUP6 = "ff02::c"
PEER_PORT = 8080
# The limits of daemon/discovery.c the flood is checked against.
PEER_BURST, PEER_RATE = 128, 64

V1_ID = bytes(range(0x10, 0x30))
V2_ID = bytes(range(0x40, 0x60))
V2_PART = bytes(range(0x70, 0x90))
UNKNOWN = bytes(32 * [0xEE])
B_ID = bytes(range(0xA0, 0xC0))
SUP_ID = bytes(range(0xC0, 0xE0))
SUP_PART = bytes(range(0xD0, 0xF0))
# Ten more addresses of B's, ten peers answering A's Probes (reply suppression, §4.5).
CROWD = [f"10.77.0.{10 + i}" for i in range(10)]

NS_A = f"pd-discoA-{os.getpid()}"
NS_B = f"pd-discoB-{os.getpid()}"
A4, B4, B4_OTHER, B4_SECOND = "10.77.0.1", "10.77.0.2", "10.78.0.2", "10.77.0.3"
A6, B6 = "fd77::1", "fd77::2"

failures = []
LOG_DIR = tempfile.mkdtemp(prefix="pd-disco-")
helpers_started = [0]


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def skip(why):
    print(f"SKIP test_discovery: {why}", flush=True)
    sys.exit(77)


def sh(*args, check_rc=True):
    r = subprocess.run(args, capture_output=True, text=True)
    if check_rc and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.stderr.strip()}")
    return r


def in_ns(ns, *args):
    return sh("ip", "netns", "exec", ns, *args)


def setup():
    for ns in (NS_A, NS_B):
        sh("ip", "netns", "add", ns)
        # Addresses usable at once (no duplicate address detection), no reverse-path filter
        # (the other-subnet ProbeMatch must reach the socket to be dropped by discovery).
        for key in ("net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0",
                    "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"):
            in_ns(ns, "sysctl", "-qw", key)
        in_ns(ns, "ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", "vA", "netns", NS_A, "type", "veth", "peer", "name", "vB",
       "netns", NS_B)
    in_ns(NS_A, "ip", "addr", "add", f"{A4}/24", "dev", "vA")
    in_ns(NS_A, "ip", "addr", "add", f"{A6}/64", "dev", "vA", "nodad")
    for a in [f"{B4}/24", f"{B4_SECOND}/24", f"{B4_OTHER}/24"] + [f"{c}/24" for c in CROWD]:
        in_ns(NS_B, "ip", "addr", "add", a, "dev", "vB")
    in_ns(NS_B, "ip", "addr", "add", f"{B6}/64", "dev", "vB", "nodad")
    # A second link of A's own, both ends in A: A's Probes out of vA2 come back on vA3.
    sh("ip", "-n", NS_A, "link", "add", "vA2", "type", "veth", "peer", "name", "vA3")
    in_ns(NS_A, "ip", "addr", "add", "10.79.0.1/24", "dev", "vA2")
    in_ns(NS_A, "ip", "addr", "add", "10.79.0.2/24", "dev", "vA3")
    for dev in ("vA2", "vA3"):
        in_ns(NS_A, "ip", "link", "set", dev, "up")
    in_ns(NS_A, "ip", "link", "set", "vA", "up")
    in_ns(NS_B, "ip", "link", "set", "vB", "up")
    # Link-local addresses appear once the link is up.
    for _ in range(100):
        if "fe80" in in_ns(NS_A, "ip", "-6", "addr", "show", "dev", "vA").stdout and \
           "fe80" in in_ns(NS_B, "ip", "-6", "addr", "show", "dev", "vB").stdout:
            break
        time.sleep(0.05)


def teardown():
    for ns in (NS_A, NS_B):
        sh("ip", "netns", "del", ns, check_rc=False)


def enter_ns(ns):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        raise OSError(ctypes.get_errno(), "setns")
    os.close(fd)


def link_local(ns, dev):
    out = in_ns(ns, "ip", "-6", "addr", "show", "dev", dev, "scope", "link").stdout
    return re.search(r"inet6 (fe80::[0-9a-f:]+)/", out).group(1)


class Helper:
    def __init__(self, ns, path, *args):
        helpers_started[0] += 1
        self.log = os.path.join(LOG_DIR, f"helper{helpers_started[0]}-{ns}.log")
        with open(self.log, "w") as err:
            self.p = subprocess.Popen(["ip", "netns", "exec", ns, path, *args],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=err, text=True, bufsize=1)
        self.buf = ""
        line = self.line(10)
        if line != "ready":
            raise RuntimeError(f"helper in {ns} did not start: {line!r}")

    def send(self, cmd):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()

    def line(self, timeout):
        end = time.monotonic() + timeout
        while "\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.p.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.p.stdout.fileno(), 4096).decode()
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split("\n", 1)
        return line

    def lines_until(self, last, timeout):
        out = []
        while True:
            line = self.line(timeout)
            if line is None:
                return out, False
            out.append(line)
            if line == last:
                return out, True

    def log_text(self):
        with open(self.log) as f:
            return f.read()

    def stop(self):
        if self.p.poll() is None:
            self.send("quit")
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


# ---- the Probe and ProbeMatch forms (branchcache-protocols.md §4), written out here ----

NS_DECL = ('xmlns:soap="http://www.w3.org/2003/05/soap-envelope" '
           'xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing" '
           'xmlns:wsd="http://schemas.xmlsoap.org/ws/2005/04/discovery" '
           'xmlns:PeerDist="http://schemas.microsoft.com/p2p/2007/09/PeerDistributionDiscovery"')


def probe_xml(version, ids, message_id):
    if version == 1:
        types = "PeerDist:PeerDistData"
        match_by = "http://schemas.xmlsoap.org/ws/2005/04/discovery/strcmp0"
        scopes = " ".join(i.hex().upper() for i in ids)
    else:
        types = "PeerDist:PeerDistDataV2"
        match_by = "http://schemas.microsoft.com/p2p/2010/05/PeerDistV2MatchingRule"
        scopes = base64.b64encode(struct.pack(">HB", 32, len(ids)) + b"".join(ids)).decode()
    return ('<?xml version="1.0" encoding="utf-8"?>'
            f'<soap:Envelope {NS_DECL}><soap:Header>'
            '<wsa:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</wsa:To>'
            '<wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</wsa:Action>'
            f'<wsa:MessageID>{message_id}</wsa:MessageID>'
            '</soap:Header><soap:Body><wsd:Probe>'
            f'<wsd:Types>{types}</wsd:Types>'
            f'<wsd:Scopes MatchBy="{match_by}">{scopes}</wsd:Scopes>'
            '</wsd:Probe></soap:Body></soap:Envelope>').encode()


def match_xml(version, relates_to, xaddrs, ids=(), counts=(), bitmap=b""):
    if version == 1:
        types = "PeerDist:PeerDistData"
        scopes = " ".join(i.hex().upper() for i in ids)
        extra = ("<PeerDist:PeerDistData><PeerDist:BlockCount>" +
                 "".join("%08X" % c for c in counts) +
                 "</PeerDist:BlockCount></PeerDist:PeerDistData>")
    else:
        types = "PeerDist:PeerDistDataV2"
        scopes = base64.b64encode(bitmap).decode()
        extra = ""
    return ('<?xml version="1.0" encoding="utf-8"?>'
            f'<soap:Envelope {NS_DECL}><soap:Header>'
            '<wsa:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:To>'
            '<wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches</wsa:Action>'
            f'<wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID>'
            f'<wsa:RelatesTo>{relates_to}</wsa:RelatesTo>'
            '<wsd:AppSequence InstanceId="1" MessageNumber="1"/>'
            '</soap:Header><soap:Body><wsd:ProbeMatches><wsd:ProbeMatch>'
            f'<wsa:EndpointReference><wsa:Address>urn:uuid:{uuid.uuid4()}</wsa:Address>'
            '</wsa:EndpointReference>'
            f'<wsd:Types>{types}</wsd:Types><wsd:Scopes>{scopes}</wsd:Scopes>'
            f'<wsd:XAddrs>{xaddrs}</wsd:XAddrs>'
            f'<wsd:MetadataVersion>{version}</wsd:MetadataVersion>{extra}'
            '</wsd:ProbeMatch></wsd:ProbeMatches></soap:Body></soap:Envelope>').encode()


def tag(text, name):
    """The text of <name>...</name>, found as iPXE's text scan finds it (exact prefix)."""
    m = re.search(f"<{name}>([^<]*)</{name}>", text)
    return m.group(1) if m else None


def prober(family, source=None):
    if family == socket.AF_INET:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((source or B4, 0))
        s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(source or B4))
    else:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.bind(("::", 0))
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF,
                     struct.pack("@I", socket.if_nametoindex("vB")))
    return s


def send_probe(s, version, ids, message_id=None):
    message_id = message_id or f"urn:uuid:{uuid.uuid4()}"
    dest = (GROUP4, PORT) if s.family == socket.AF_INET else \
        (GROUP6, PORT, 0, socket.if_nametoindex("vB"))
    s.sendto(probe_xml(version, ids, message_id), dest)
    return message_id


def receive(s, timeout):
    """Every datagram until timeout seconds pass with none: [(bytes, source)]."""
    got = []
    s.settimeout(timeout)
    while True:
        try:
            got.append(s.recvfrom(65535))
        except socket.timeout:
            return got


# ---- answering Probes (the helper in A) ----

def test_answers(helper_path, a_ll, b_ll):
    a = Helper(NS_A, helper_path, "--port", str(PEER_PORT),
               "--hold", f"{V1_ID.hex()}:1:5:5", "--hold", f"{V2_ID.hex()}:2:1:1",
               "--hold", f"{V2_PART.hex()}:2:1:3")
    try:
        # V1 form, IPv4, with an unknown ID and a V2 ID in it (iPXE's habit): a V1 ProbeMatch
        # listing the held IDs with 8-digit BlockCounts, XAddrs A's address and peer_port.
        s = prober(socket.AF_INET)
        mid = send_probe(s, 1, [V1_ID, UNKNOWN, V2_ID])
        got = receive(s, 1.0)
        check(len(got) == 1, f"V1 Probe over IPv4: one ProbeMatch (got {len(got)})")
        if got:
            text, src = got[0][0].decode(), got[0][1]
            check(src == (A4, PORT), f"ProbeMatch from {A4}:{PORT} (got {src})")
            check(tag(text, "wsa:RelatesTo") == mid, "RelatesTo is the Probe's MessageID")
            check("ProbeMatches" in (tag(text, "wsa:Action") or ""), "Action ProbeMatches")
            check(tag(text, "wsd:Types") == "PeerDist:PeerDistData", "V1 Types")
            check((tag(text, "wsd:Scopes") or "").split() ==
                  [V1_ID.hex().upper(), V2_ID.hex().upper()],
                  f"V1 Scopes: the held IDs in order (got {tag(text, 'wsd:Scopes')})")
            check(tag(text, "PeerDist:BlockCount") == "0000000500000001",
                  f"V1 BlockCount 8 hex digits each (got {tag(text, 'PeerDist:BlockCount')})")
            check(tag(text, "wsd:XAddrs") == f"{A4}:{PEER_PORT}",
                  f"XAddrs {A4}:{PEER_PORT} (got {tag(text, 'wsd:XAddrs')})")
            check(tag(text, "wsd:MetadataVersion") == "1", "MetadataVersion 1")

        # V2 form: a V2 ProbeMatch whose Scopes is the bitmap, 2 bits per requested ID.
        mid = send_probe(s, 2, [V2_ID, UNKNOWN, V2_PART])
        got = receive(s, 1.0)
        check(len(got) == 1, f"V2 Probe over IPv4: one ProbeMatch (got {len(got)})")
        if got:
            text = got[0][0].decode()
            check(tag(text, "wsa:RelatesTo") == mid, "V2: RelatesTo is the Probe's MessageID")
            check(tag(text, "wsd:Types") == "PeerDist:PeerDistDataV2", "V2 Types")
            bitmap = base64.b64decode(tag(text, "wsd:Scopes") or "")
            check(bitmap == bytes([0b11001000]),
                  f"V2 bitmap: complete, absent, partial = c8 (got {bitmap.hex()})")
            check(tag(text, "wsd:XAddrs") == f"{A4}:{PEER_PORT}", "V2 XAddrs")
            check(tag(text, "wsd:MetadataVersion") == "2", "MetadataVersion 2")

        # Unknown segments only: no answer.
        send_probe(s, 1, [UNKNOWN])
        send_probe(s, 2, [UNKNOWN])
        got = receive(s, 1.0)
        check(len(got) == 0, f"Probes for unknown segments: no answer (got {len(got)})")

        # Malformed datagrams: dropped, and the helper answers the next Probe.
        for junk in (b"", b"\x00" * 100, b"<soap:Envelope", probe_xml(1, [], "urn:uuid:x"),
                     probe_xml(1, [V1_ID], "urn:uuid:y").replace(b"Scopes", b"Scopez"),
                     # another WS-Discovery user's Probe (a printer search): not ours
                     probe_xml(1, [V1_ID], "urn:uuid:z").replace(
                         b"PeerDist:PeerDistData", b"wsdp:Device"),
                     b"<?xml version='1.0'?><!DOCTYPE a [<!ENTITY e 'x'>]><a>&e;</a>"):
            s.sendto(junk, (GROUP4, PORT))
        mid = send_probe(s, 1, [V1_ID])
        got = receive(s, 1.0)
        check(len(got) == 1 and tag(got[0][0].decode(), "wsa:RelatesTo") == mid,
              "malformed datagrams dropped; the next Probe answered")
        check("dropped a malformed datagram from" in a.log_text(),
              "malformed datagrams logged")

        # The same Probe again (a retransmission): not answered twice.
        s.sendto(probe_xml(1, [V1_ID], mid), (GROUP4, PORT))
        got = receive(s, 0.5)
        check(len(got) == 0, f"a repeated MessageID is not answered again (got {len(got)})")
        s.close()

        # IPv6: from B's link-local address to FF02::C; the answer comes from A's link-local
        # address, which XAddrs names in brackets.
        s6 = prober(socket.AF_INET6)
        mid = send_probe(s6, 1, [V1_ID])
        got = receive(s6, 1.0)
        check(len(got) == 1, f"V1 Probe over IPv6: one ProbeMatch (got {len(got)})")
        if got:
            text, src = got[0][0].decode(), got[0][1]
            check(src[0].split("%")[0] == a_ll and src[1] == PORT,
                  f"IPv6 ProbeMatch from [{a_ll}]:{PORT} (got {src[:2]})")
            check(tag(text, "wsd:XAddrs") == f"[{a_ll}]:{PEER_PORT}",
                  f"IPv6 XAddrs [{a_ll}]:{PEER_PORT} (got {tag(text, 'wsd:XAddrs')})")
            check(tag(text, "wsa:RelatesTo") == mid, "IPv6 RelatesTo")
        s6.close()

        # A third prober address: three distinct peers probed V1_ID (flash crowd count).
        s3 = prober(socket.AF_INET, B4_SECOND)
        send_probe(s3, 1, [V1_ID])
        receive(s3, 0.5)
        s3.close()
        a.send(f"probers {V1_ID.hex()} 60")
        line = a.line(5)
        check(line == "probers 3", f"recent probers of V1_ID: {B4}, {B4_SECOND}, {b_ll} "
                                   f"(got {line!r})")
        a.send(f"probers {B_ID.hex()} 60")
        check(a.line(5) == "probers 0", "recent probers of a segment nobody probed: 0")

        # A probes for a segment it holds: its own Probe, heard back on its other link, is
        # not answered, and A never reports itself.
        a.send(f"probe 1 500 {V1_ID.hex()}")
        lines, done = a.lines_until("done", 5)
        check(done and not [l for l in lines if l.startswith("match ")],
              f"A's Probe for a segment only A holds: no match (got {lines})")
        check("our own Probe came back on vA3" in a.log_text(),
              "A's own Probe heard back on vA3, not answered")

        # A flood from one address: answers bounded by the per-peer token bucket.
        s = prober(socket.AF_INET)
        start = time.monotonic()
        for _ in range(1000):
            send_probe(s, 1, [V1_ID])
        got = receive(s, 1.0)
        elapsed = time.monotonic() - start
        bound = PEER_BURST + PEER_RATE * elapsed + 1
        check(0 < len(got) <= bound,
              f"a flood of 1000 Probes: {len(got)} answers, at most {bound:.0f}")
        s.close()
    finally:
        rc = a.stop()
        check(rc == 0, f"helper in A exits cleanly (rc {rc})")


# ---- sending Probes (the helper in A) ----

def responder():
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    r.bind(("", PORT))
    mreq = socket.inet_aton(GROUP4) + socket.inet_aton(B4)
    r.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    return r


def wait_probe(r, timeout=3.0):
    r.settimeout(timeout)
    data, src = r.recvfrom(65535)
    return data.decode(), src


def test_probes(helper_path):
    a = Helper(NS_A, helper_path, "--no-ipv6")
    r = responder()
    try:
        # V1: the Probe's form; a ProbeMatch from another subnet is dropped, one for no Probe
        # of A's is ignored, one naming another host in XAddrs gives the SOURCE with the
        # XAddrs port.
        a.send(f"probe 1 1500 {V1_ID.hex()}")
        text, src = wait_probe(r)
        check(src[0] == A4, f"A's Probe from {A4} (got {src[0]})")
        check(tag(text, "wsd:Types") == "PeerDist:PeerDistData", "A's V1 Probe Types")
        m = re.search(r"<wsd:Scopes[^>]*>([^<]*)</wsd:Scopes>", text)
        check(m and m.group(1).strip() == V1_ID.hex().upper(), "A's V1 Probe Scopes upper hex")
        mid = tag(text, "wsa:MessageID")
        check(bool(mid and mid.startswith("urn:uuid:")), "A's Probe MessageID urn:uuid:")
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other.bind((B4_OTHER, 0))
        other.sendto(match_xml(1, mid, f"{B4_OTHER}:9000", [V1_ID], [5]), src)
        other.close()
        reply = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        reply.bind((B4, 0))
        reply.sendto(match_xml(1, "urn:uuid:" + str(uuid.uuid4()), f"{B4}:9001", [V1_ID], [5]),
                     src)
        reply.sendto(match_xml(1, mid, f"10.99.99.99:8081", [V1_ID, UNKNOWN], [7, 3]), src)
        reply.sendto(b"<not xml", src)
        lines, done = a.lines_until("done", 5)
        matches = [l for l in lines if l.startswith("match ")]
        check(done, "A's V1 probe: done after the window")
        check(f"ProbeMatch from {B4_OTHER} dropped: not on the subnet" in a.log_text(),
              f"the ProbeMatch from {B4_OTHER} (another subnet) dropped, logged")
        check(matches == [f"match {V1_ID.hex().upper()} {B4} 8081 1 7 00"],
              f"A's V1 probe: one match, peer {B4}:8081 (the source, XAddrs' port), "
              f"BlockCount 7 (got {matches})")

        # V2 form: the bitmap's pair for the ID.
        a.send(f"probe 2 1500 {UNKNOWN.hex()} {V2_ID.hex()}")
        while True:  # the repeat of the V1 Probe may still be queued
            text, src = wait_probe(r)
            if tag(text, "wsd:Types") == "PeerDist:PeerDistDataV2":
                break
        m = re.search(r"<wsd:Scopes[^>]*>([^<]*)</wsd:Scopes>", text)
        check(m and base64.b64decode(m.group(1)) ==
              struct.pack(">HB", 32, 2) + UNKNOWN + V2_ID, "A's V2 Probe Scopes")
        reply.sendto(match_xml(2, tag(text, "wsa:MessageID"), f"{B4}:8082",
                               bitmap=bytes([0b00100000])), src)
        lines, done = a.lines_until("done", 5)
        matches = [l for l in lines if l.startswith("match ")]
        check(done and matches == [f"match {V2_ID.hex().upper()} {B4} 8082 2 0 80"],
              f"A's V2 probe: the ID with its pair 'have, not all' (got {matches})")
        reply.close()
    finally:
        r.close()
        rc = a.stop()
        check(rc == 0, f"helper in A exits cleanly (rc {rc})")


def test_suppression(helper_path):
    """§4.5: after ten peers answered A's own Probe with the whole segment, A stays silent
    for that segment; after ten partial answers, A answers about a third of the Probes."""
    a = Helper(NS_A, helper_path, "--no-ipv6", "--hold", f"{SUP_ID.hex()}:1:4:4",
               "--hold", f"{SUP_PART.hex()}:1:4:4", "--hold", f"{V1_ID.hex()}:1:5:5")
    r = responder()
    crowd = []
    try:
        for c in CROWD:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((c, 0))
            crowd.append(s)
        for seg, count in ((SUP_ID, 4), (SUP_PART, 2)):
            a.send(f"probe 1 1000 {seg.hex()}")
            while True:
                text, src = wait_probe(r)
                m = re.search(r"<wsd:Scopes[^>]*>([^<]*)</wsd:Scopes>", text)
                if m and m.group(1).strip() == seg.hex().upper():
                    break
            for s in crowd:
                s.sendto(match_xml(1, tag(text, "wsa:MessageID"), f"{B4}:80", [seg], [count]),
                         src)
            lines, done = a.lines_until("done", 5)
            n = len([l for l in lines if l.startswith("match ")])
            check(done and n == len(CROWD), f"A heard {len(CROWD)} peers for a segment (got {n})")
        p = prober(socket.AF_INET)
        send_probe(p, 1, [SUP_ID])
        got = receive(p, 1.0)
        check(len(got) == 0, f"ten whole answers heard: A does not answer for it (got {len(got)})")
        send_probe(p, 1, [SUP_ID, V1_ID])
        got = receive(p, 1.0)
        check(len(got) == 1 and (tag(got[0][0].decode(), "wsd:Scopes") or "").split() ==
              [V1_ID.hex().upper()], "a Probe for it and another segment: only the other listed")
        for _ in range(30):
            send_probe(p, 1, [SUP_PART])
        got = receive(p, 1.0)
        check(0 < len(got) < 30, f"ten partial answers heard: A answers some of 30 Probes, "
                                 f"about a third (got {len(got)})")
        p.close()
    finally:
        for s in crowd:
            s.close()
        r.close()
        rc = a.stop()
        check(rc == 0, f"helper in A exits cleanly (rc {rc})")


def test_two_peers(helper_path, b_ll):
    """A probes; a helper in B (real discovery on both sides) answers over IPv4 and IPv6."""
    b = Helper(NS_B, helper_path, "--port", "8443", "--hold", f"{B_ID.hex()}:1:3:5")
    a = Helper(NS_A, helper_path)
    try:
        a.send(f"probe 1 1500 {B_ID.hex()} {UNKNOWN.hex()}")
        lines, done = a.lines_until("done", 5)
        matches = sorted(l for l in lines if l.startswith("match "))
        want = sorted([f"match {B_ID.hex().upper()} {B4} 8443 1 3 00",
                       f"match {B_ID.hex().upper()} {b_ll} 8443 1 3 00"])
        check(done and matches == want, f"peer to peer: matches over IPv4 and IPv6 {want} "
                                        f"(got {matches})")
        a.send(f"probe 1 1000 {UNKNOWN.hex()}")
        lines, done = a.lines_until("done", 5)
        check(done and not [l for l in lines if l.startswith("match ")],
              "peer to peer: no match for a segment nobody holds, then done")
        # Cancelling from inside on_match: no more callbacks, no done.
        a.send(f"probec 1 800 {B_ID.hex()}")
        lines, passed = a.lines_until("window-passed", 5)
        check(passed and "cancelled" in lines and "done" not in lines and
              len([l for l in lines if l.startswith("match ")]) == 1,
              f"cancel inside on_match: one match, then nothing (got {lines})")
    finally:
        for h, name in ((a, "A"), (b, "B")):
            rc = h.stop()
            check(rc == 0, f"helper in {name} exits cleanly (rc {rc})")


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    helper_path = os.path.abspath(sys.argv[1])
    if os.geteuid() != 0:
        skip("needs root (network namespaces, veth pairs)")
    try:
        sh("ip", "netns", "add", f"pd-discoT-{os.getpid()}")
        sh("ip", "netns", "del", f"pd-discoT-{os.getpid()}")
    except (RuntimeError, FileNotFoundError) as e:
        skip(f"ip netns is not usable here: {e}")
    try:
        try:
            setup()
        except RuntimeError as e:
            teardown()
            skip(f"cannot build the namespaces: {e}")
        a_ll, b_ll = link_local(NS_A, "vA"), link_local(NS_B, "vB")
        enter_ns(NS_B)
        test_answers(helper_path, a_ll, b_ll)
        test_probes(helper_path)
        test_suppression(helper_path)
        test_two_peers(helper_path, b_ll)
    finally:
        teardown()
    if failures:
        print(f"{len(failures)} check(s) failed; helper logs in {LOG_DIR}")
        return 1
    subprocess.run(["rm", "-rf", LOG_DIR])
    print("all discovery checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
