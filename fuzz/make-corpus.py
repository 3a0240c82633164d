#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""fuzz/make-corpus.py - writes the checked-in seed corpora, fuzz/corpus/<harness>/, from their
sources: every tests/vectors/*content_info.hex for fuzz_contentinfo, and the hand-made request
sequences below for fuzz_daemon. Run it after changing either; --check (a ctest) fails when a
checked-in seed is missing or differs. Other files in the corpus directories are left alone.

Usage: fuzz/make-corpus.py [--check]
"""
import pathlib
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


def seeds():
    """(path relative to fuzz/, bytes) for every seed."""
    for hexfile in sorted((ROOT / "tests" / "vectors").glob("*content_info.hex")):
        yield (f"corpus/fuzz_contentinfo/{hexfile.stem}.bin", hexbytes(hexfile.read_text()))
    for name, ops in DAEMON_SEEDS.items():
        yield (f"corpus/fuzz_daemon/{name}", hexbytes(ops))


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
