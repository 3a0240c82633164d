#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""daemon_graph.py - which daemon/ file calls which, from the symbols of peerdistd's objects,
and a failure if the graph has a cycle (distributed mode adds files to the daemon: each must
find the layers, not a loop). Usage: daemon_graph.py OBJECT... (CMake passes pddaemon's)."""
import collections
import os
import subprocess
import sys


def source_of(obj):
    return os.path.basename(obj).replace(".c.o", ".c")


def main(objs):
    defined, used = {}, collections.defaultdict(set)
    for obj in objs:
        out = subprocess.run(["nm", obj], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            f = line.split()
            if len(f) == 3 and f[1] in "TDBR":
                defined[f[2]] = source_of(obj)
            elif len(f) == 2 and f[0] == "U":
                used[source_of(obj)].add(f[1])
    calls = collections.defaultdict(set)
    for src, syms in used.items():
        for s in syms:
            if s in defined and defined[s] != src:
                calls[src].add(defined[s])
    state, cycles = {}, []

    def visit(node, path):
        state[node] = 1
        path.append(node)
        for nxt in sorted(calls[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path)
        path.pop()
        state[node] = 2

    for node in sorted(calls):
        if node not in state:
            visit(node, [])
    for src in sorted(calls):
        print(f"{src} -> {' '.join(sorted(calls[src]))}")
    for c in cycles:
        print("cycle: " + " -> ".join(c), file=sys.stderr)
    if len(calls) < 5:
        print("too few files with calls: wrong objects?", file=sys.stderr)
        return 1
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
