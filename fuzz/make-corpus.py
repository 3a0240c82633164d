#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""fuzz/make-corpus.py - writes the checked-in seed corpora, fuzz/corpus/<harness>/, from their
sources: every tests/vectors/*content_info.hex for fuzz_contentinfo, the hand-made request
sequences below for fuzz_daemon, the PCCRR vectors (tests/vectors/*pccrr*.hex) and the messages
built below for fuzz_pccrr, and the PCCRD sample messages below for fuzz_pccrd. Run it after changing either; --check (a ctest) fails when a
checked-in seed is missing or differs. Other files in the corpus directories are left alone.

Usage: fuzz/make-corpus.py [--check]
"""
import pathlib
import struct
import sys

FUZZ = pathlib.Path(__file__).resolve().parent
ROOT = FUZZ.parent


def hexbytes(text):
    return bytes.fromhex("".join(text.split()))


# fuzz_daemon.c's input format: a setup byte, then per operation a selector byte (bits 0-5 the
# operation, bit 6 the client) and its field bytes; fuzz/README.md walks through consume-v1.
DAEMON_SEEDS = {
    # open, whole V1 content information, complete, all the data, settle, block read, stream
    # read, flush, tags, close
    "consume-v1": "00 0200 0e01010000 0f01 10010100 0400 18 1101160100 1101170100 0400 13 0301",
    # publish V2, add all, complete, settle, open content info, retrieve twice, a ranged open,
    # close it, unpublish
    "publish-v2": "00 06020500 070201000400 0801 18 0b020000 0c0302 0c0302 0b020700010b 0d02 0a00",
    # client 2 (uid+1): V2 content information, data, cancel it, settle, read, disconnect
    "consume-v2-cancel": "00 4200 4e01000100 4f01 50000100 0400 520401 58 5100160100 59",
    # garbage: an undecodable frame, then (new connection) an oversized header
    "raw-frames": "00 1403616263 1501",
    # ranged V1 content information (its second block), the block in two parts (1 byte, then
    # the other 65535: held, then whole), settle, read it
    "consume-ranged": "00 0201 0e01010003 0302 0f01 100101030000 100101040100 18 1101160103",
    # uid 0 stores a block against a ranged (partial) list: private; a full list on a second
    # handle promotes it; uid 1 (client 2) then reads it through its own full list
    "promote": "00 0201 0e01010003 0302 0f01 100101030200 18 0201 0e02010000 0f02 1101160203"
               " 4201 4e01010000 4f01 5101160103 18",
    # all 200000 bytes stored, then 50 whole reads while not reading the replies: the daemon's
    # writes back up, it stops reading, then resumes once the replies are read
    "backpressure": "00 0200 0e01000000 0f01 100001000400 18 1c " + "1100180100 " * 50 + "18",
}


# fuzz_pccrr: the other messages, laid out as branchcache-protocols.md §3 gives them.
PCCRR_ID = bytes.fromhex("5f4f88bcd0c3216ad216c870be49c2536b069223e3a92495574730baa19a9c66")


def pccrr_msg(msg_type, crypto, body, response):
    msg = struct.pack(">IIII", 1, msg_type, 16 + len(body), crypto) + body
    return struct.pack(">I", len(msg)) + msg if response else msg


def pccrr_seeds():
    ident = struct.pack(">I", len(PCCRR_ID)) + PCCRR_ID
    yield "getblklist", pccrr_msg(2, 1, ident + struct.pack(">IIIII", 2, 0, 3, 4, 1), False)
    yield "nego-resp", pccrr_msg(1, 0, struct.pack(">II", 1, 2), True)
    yield "blklist", pccrr_msg(4, 0, ident + struct.pack(">IIIIII", 2, 0, 3, 4, 1, 3), True)
    yield "blklist-empty", pccrr_msg(4, 0, ident + struct.pack(">II", 0, 0), True)
    yield "blk-empty", pccrr_msg(5, 0, ident + struct.pack(">IIIII", 7, 0, 0, 0, 0), True)
    # a 16-byte block under AES-256 (not a valid ciphertext for the harness's key: padding)
    yield "blk-aes256", pccrr_msg(5, 3, ident + struct.pack(">III", 0, 0, 16) + bytes(range(16))
                                  + struct.pack(">II", 0, 16) + bytes(16), True)
    yield "getblks-vrf", pccrr_msg(3, 2, ident + struct.pack(">IIII", 1, 511, 1, 3) + b"abc\0",
                                   False)


# fuzz_pccrd: the §4 sample messages (V1 and V2 Probes, V1 and V2 ProbeMatches).
ENV = ('<?xml version="1.0" encoding="utf-8"?><soap:Envelope'
       ' xmlns:soap="http://www.w3.org/2003/05/soap-envelope"'
       ' xmlns:wsa="http://schemas.xmlsoap.org/ws/2004/08/addressing"'
       ' xmlns:wsd="http://schemas.xmlsoap.org/ws/2005/04/discovery"'
       ' xmlns:PeerDist="http://schemas.microsoft.com/p2p/2007/09/PeerDistributionDiscovery">')
PROBE_HEAD = (ENV + "<soap:Header><wsa:To>urn:schemas-xmlsoap-org:ws:2005:04:discovery</wsa:To>"
              "<wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/Probe</wsa:Action>"
              "<wsa:MessageID>urn:uuid:8a1f63e2-0a53-4b5c-9d3e-51c6a7e5f2d0</wsa:MessageID>"
              "</soap:Header><soap:Body><wsd:Probe>")
MATCH_HEAD = (ENV + "<soap:Header>"
              "<wsa:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</wsa:To>"
              "<wsa:Action>http://schemas.xmlsoap.org/ws/2005/04/discovery/ProbeMatches"
              "</wsa:Action><wsa:MessageID>urn:uuid:99999999-8888-4777-8666-555555555555"
              "</wsa:MessageID><wsa:RelatesTo>urn:uuid:8a1f63e2-0a53-4b5c-9d3e-51c6a7e5f2d0"
              '</wsa:RelatesTo><wsd:AppSequence InstanceId="1290000000" MessageNumber="7"/>'
              "</soap:Header><soap:Body><wsd:ProbeMatches><wsd:ProbeMatch>"
              "<wsa:EndpointReference><wsa:Address>urn:uuid:0f0e0d0c-0b0a-4908-8706-050403020100"
              "</wsa:Address></wsa:EndpointReference>")
HEX_ID = PCCRR_ID.hex().upper()
PCCRD_SEEDS = {
    "probe-v1": PROBE_HEAD + "<wsd:Types>PeerDist:PeerDistData</wsd:Types><wsd:Scopes MatchBy="
    '"http://schemas.xmlsoap.org/ws/2005/04/discovery/strcmp0">' + HEX_ID + " " + HEX_ID
    + "</wsd:Scopes></wsd:Probe></soap:Body></soap:Envelope>",
    "probe-v2": PROBE_HEAD + "<wsd:Types>PeerDist:PeerDistDataV2</wsd:Types><wsd:Scopes MatchBy="
    '"http://schemas.microsoft.com/p2p/2010/05/PeerDistV2MatchingRule">'
    + "ACABX0+IvNDDIWrSFshwvknCU2sGkiPjqSSVV0cwuqGanGY="
    + "</wsd:Scopes></wsd:Probe></soap:Body></soap:Envelope>",
    "match-v1": MATCH_HEAD + "<wsd:Types>PeerDist:PeerDistData</wsd:Types><wsd:Scopes>" + HEX_ID
    + "</wsd:Scopes><wsd:XAddrs>192.0.2.10:80 [2001:db8::1]:8080</wsd:XAddrs>"
    "<wsd:MetadataVersion>1</wsd:MetadataVersion><PeerDist:PeerDistData><PeerDist:BlockCount>"
    "0000002A</PeerDist:BlockCount></PeerDist:PeerDistData></wsd:ProbeMatch></wsd:ProbeMatches>"
    "</soap:Body></soap:Envelope>",
    "match-v2": MATCH_HEAD + "<wsd:Types>PeerDist:PeerDistDataV2</wsd:Types><wsd:Scopes>"
    "/////////////w==</wsd:Scopes><wsd:XAddrs>192.0.2.11:80</wsd:XAddrs>"
    "<wsd:MetadataVersion>2</wsd:MetadataVersion></wsd:ProbeMatch></wsd:ProbeMatches>"
    "</soap:Body></soap:Envelope>",
}


def seeds():
    """(path relative to fuzz/, bytes) for every seed."""
    for hexfile in sorted((ROOT / "tests" / "vectors").glob("*content_info.hex")):
        yield (f"corpus/fuzz_contentinfo/{hexfile.stem}.bin", hexbytes(hexfile.read_text()))
    for name, ops in DAEMON_SEEDS.items():
        yield (f"corpus/fuzz_daemon/{name}", hexbytes(ops))
    for hexfile in sorted((ROOT / "tests" / "vectors").glob("*pccrr*.hex")):
        yield (f"corpus/fuzz_pccrr/{hexfile.stem}.bin", hexbytes(hexfile.read_text()))
    for name, data in pccrr_seeds():
        yield (f"corpus/fuzz_pccrr/{name}", data)
    for name, xml in PCCRD_SEEDS.items():
        yield (f"corpus/fuzz_pccrd/{name}.xml", xml.encode())


def main(argv):
    check = argv[1:] == ["--check"]
    if argv[1:] and not check:
        sys.exit(__doc__.strip().splitlines()[-1])
    stale = []
    for rel, data in seeds():
        path = FUZZ / rel
        if check:
            if not path.is_file() or path.read_bytes() != data:
                stale.append(rel)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    for rel in stale:
        print(f"fuzz/{rel}: missing or not what fuzz/make-corpus.py makes", file=sys.stderr)
    if stale:
        print("run fuzz/make-corpus.py and commit fuzz/corpus/", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
