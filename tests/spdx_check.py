#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""spdx_check.py [--fix] ROOT - every source file of ours carries the line
'SPDX-License-Identifier: MIT' (LICENSE) near its top. Without --fix it lists the files that
lack it and fails; with --fix it adds the line in the file's comment syntax (after a #! line).
Data (test vectors, fuzz corpora) and files that cannot hold a comment are not checked."""
import os
import subprocess
import sys

TAG = "SPDX-License-Identifier: MIT"
HASH = (".py", ".sh", ".cmake", ".in", ".socket", ".tmpfiles", ".sysusers", ".postrm")
HASH_NAMES = ("CMakeLists.txt", "Makefile", "run", "rules")


def comment_for(path):
    base = os.path.basename(path)
    ext = os.path.splitext(base)[1]
    if path.startswith(("tests/vectors/",)) or "/corpus/" in path:
        return None
    if ext in (".c", ".h"):
        return "/* %s */\n" % TAG
    if ext == ".proto":
        return "// %s\n" % TAG
    if ext in (".sql", ".lua"):
        return "-- %s\n" % TAG
    if ext in HASH or base in HASH_NAMES:
        return "# %s\n" % TAG
    return None


def main():
    fix = "--fix" in sys.argv[1:]
    root = [a for a in sys.argv[1:] if a != "--fix"][0]
    ls = subprocess.run(["git", "-C", root, "ls-files"], capture_output=True, text=True)
    if ls.returncode != 0:
        print("spdx check skipped: %s is not a git checkout" % root)
        return 0
    files = ls.stdout.split()
    missing = []
    for f in files:
        line = comment_for(f)
        path = os.path.join(root, f)
        if line is None or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        if TAG in text[:400]:
            continue
        missing.append(f)
        if fix:
            if text.startswith("#!"):
                nl = text.index("\n") + 1
                text = text[:nl] + line + text[nl:]
            else:
                text = line + text
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(text)
    if missing and not fix:
        print("files without '%s' (add it, or run tests/spdx_check.py --fix .):" % TAG)
        for f in missing:
            print("  " + f)
        return 1
    print("spdx: %d file(s) %s" % (len(missing), "fixed" if fix else "missing"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
