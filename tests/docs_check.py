#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""tests/docs_check.py - fails when a Markdown file of the repository cites a path or a name
of ours that the tree no longer has, listing each such citation.

Usage: tests/docs_check.py [ROOT]   check the tree at ROOT (default: this script's checkout)
       tests/docs_check.py --self-test   plant bad citations in a scratch tree, expect each found

What is read: every *.md file under ROOT, except in build directories (any directory holding
a CMakeCache.txt), directories the top-level .gitignore names, and dot-directories other than
.ci. In each, the inline code spans (`...`, outside fenced code blocks) and the targets of
relative links, [text](target).

Paths. A span, or the first word of a span with several (a command line), is a path when it
is made only of [A-Za-z0-9_.*/+-], starts with neither '-' nor '/' (a system path, not
ours), and either holds a '/' or ends in one of PATH_EXTENSIONS. It must exist (as a glob if
it holds '*'; a directory if it ends in '/'), looked up first from the Markdown file's
directory, then from ROOT, and, for a bare file name, anywhere in the tree. A path that
leaves ROOT (../shared/...) is not ours and is not checked, nor is one whose first component
.gitignore names (build/, build-fuzz/...: build outputs). A link target is looked up from the
Markdown file's directory only.

Names of ours. In each span, identifiers that are:
  * followed by '(' : any function name, `store_open()`, `epoll_ctl(fd, ...)` - but not a
    manual-page reference such as `peerdistd(8)`, nor sizeof;
  * prefixed with one of our module prefixes (OUR_PREFIXES: `ci_range`, `pd_op_id`), or their
    upper-case form for constants (`FRAME_MAX_PAYLOAD`, `PEERDIST_ERROR_NO_MORE`);
  * the Windows API of libpeerdist (`PeerDist...`) or a protocol message (`...Request`,
    `...Reply`, from proto/peerdist.proto);
  * after struct, enum or union (`struct daemon`);
  * a glob of an identifier (`ci_gen_*`, `pick_*`) or a bare prefix (`ci_`): some identifier
    must match it.
Such a name must occur in the code of a source file of ours (SOURCE_SUFFIXES, SOURCE_NAMES;
comments removed, string literals kept since environment variables and configuration keys
live there); one that occurs only in comments, or nowhere, is reported. This rule is "the
code still has it", which holds for what we define and for what our code calls; it cannot
tell a definition from a use, and does not need to: a name that the code neither defines nor
uses is what drifted.

Allowlist (tests/docs_allowlist.txt): exact paths and names cited from elsewhere (wineserver's
`server/completion.c`, an install directory, a placeholder). One a line, '#' starts a comment.
An entry that no Markdown file cites any more, or that the tree now has (a name a later
change added), is reported too, so the list holds only what it says.
"""
import fnmatch
import os
import pathlib
import re
import subprocess
import shutil
import sys
import tempfile

# Module prefixes of this tree's C code (daemon/, client/, common/, proto/, schema/), and
# those of its tests and fuzz harnesses.
OUR_PREFIXES = (
    "api_", "bs_", "child_", "ci_", "config_", "conn_", "content_", "ctl_", "daemon_",
    "dispatch_", "flush_", "frame_", "fs_", "fuzz_", "handle_", "hobj_", "instance_", "log_",
    "pd_", "pdconn_", "pdw32_", "peerdist_", "pub_", "publish_", "schema_", "secret_",
    "server_", "store_", "test_", "w32_", "worker_",
)
PATH_EXTENSIONS = (
    ".c", ".h", ".md", ".sql", ".proto", ".sh", ".py", ".txt", ".hex", ".sym", ".in", ".dict",
    ".service", ".sysusers", ".cmake",
)
SOURCE_SUFFIXES = (".c", ".h", ".proto", ".sh", ".py", ".sql", ".sym", ".cmake")
SOURCE_NAMES = ("CMakeLists.txt", "Makefile", "run")  # run: .ci/run
NOT_FUNCTIONS = {"sizeof", "if", "for", "while", "switch", "return"}

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
SELF = pathlib.Path(__file__).resolve()


# ---- the tree ----

def gitignore_patterns(root):
    """Top-level .gitignore patterns, as fnmatch patterns for a path's first component."""
    try:
        lines = (root / ".gitignore").read_text().splitlines()
    except OSError:
        return []
    return [ln.strip().strip("/") for ln in lines if ln.strip() and not ln.startswith("#")]


def ignored(first_component, patterns):
    return any(fnmatch.fnmatch(first_component, p) for p in patterns)


def git_ignored_paths(root):
    """What git ignores under root (directories end in /), or an empty set outside git."""
    if not (root / ".git").exists() or shutil.which("git") is None:
        return set()
    r = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--others", "--ignored",
                        "--exclude-standard", "--directory"],
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    return set(p for p in r.stdout.decode(errors="replace").split("\0") if p) \
        if r.returncode == 0 else set()


def walk(root):
    """Every file of the tree (relative paths), build and ignored files left out."""
    patterns = gitignore_patterns(root)
    git_ignored_set = git_ignored_paths(root)
    for dirpath, dirnames, filenames in os.walk(root):
        rel = pathlib.Path(dirpath).relative_to(root)
        if "CMakeCache.txt" in filenames:
            dirnames[:] = []
            continue
        dirnames[:] = sorted(
            d for d in dirnames
            if not (d.startswith(".") and d != ".ci")
            and not (rel == pathlib.Path(".") and ignored(d, patterns)))
        for f in sorted(filenames):
            p = rel / f
            if str(p) in git_ignored_set or any(
                    str(a) + "/" in git_ignored_set for a in p.parents if str(a) != "."):
                continue
            yield p


# ---- source code: identifiers outside comments ----

C_TOKENS = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|/\*.*?\*/|//[^\n]*', re.S)
HASH_COMMENT = re.compile(r'(^|\s)#[^\n]*')
SQL_COMMENT = re.compile(r'--[^\n]*')


def strip_comments(path, text):
    if path.suffix in (".c", ".h", ".proto", ".sym"):
        return C_TOKENS.sub(lambda m: m.group(0) if m.group(0)[0] in "\"'" else " ", text)
    if path.suffix == ".sql":
        return SQL_COMMENT.sub(" ", text)
    return HASH_COMMENT.sub(" ", text)  # sh, python, CMake, make


def code_identifiers(root, files):
    names = set()
    for rel in files:
        if (rel.suffix in SOURCE_SUFFIXES or rel.name in SOURCE_NAMES) and root / rel != SELF:
            text = (root / rel).read_text(errors="replace")
            names.update(re.findall(IDENT, strip_comments(rel, text)))
    return names


# ---- Markdown: code spans and links ----

FENCE = re.compile(r"^ {0,3}(```|~~~)")
SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.S)
LINK = re.compile(r"\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")


def citations(text):
    """(line, kind, string) for each code span and link target outside fenced blocks."""
    kept, fenced = [], False
    for line in text.split("\n"):
        if FENCE.match(line):
            fenced = not fenced
            kept.append("")
        else:
            kept.append("" if fenced else line)
    prose = "\n".join(kept)
    for paragraph in re.finditer(r"(?:[^\n]+\n?)+", prose):
        start = prose.count("\n", 0, paragraph.start()) + 1
        body = paragraph.group(0)
        for m in SPAN.finditer(body):
            yield start + body.count("\n", 0, m.start()), "span", " ".join(m.group(2).split())
        no_spans = SPAN.sub(lambda m: " " * len(m.group(0)), body)
        for m in LINK.finditer(no_spans):
            yield start + no_spans.count("\n", 0, m.start()), "link", m.group(1)


PATHLIKE = re.compile(r"[A-Za-z0-9_.*/+-]+")


def path_of(span):
    """The path a span cites, or None."""
    word = span.split(" ")[0]
    if not PATHLIKE.fullmatch(word) or word.startswith(("-", "/")) or word in (".", ".."):
        return None
    if "/" in word or word.endswith(PATH_EXTENSIONS) or word == "Makefile":
        return word
    return None


def names_of(span):
    """The names of ours a span cites (see the rules at the top)."""
    found = []
    for m in re.finditer(r"(?<![A-Za-z0-9_.$-])(" + IDENT + r")(\*?)(\(?)", span):
        name, star, paren = m.groups()
        before = span[:m.start()].split()
        after = span[m.end():]
        if star:
            if "_" in name or name.startswith("PeerDist"):
                found.append(name + "*")
        elif paren:
            manpage = re.match(r"\d\)", after)
            if not manpage and name not in NOT_FUNCTIONS:
                found.append(name)
        elif (name.startswith(OUR_PREFIXES) or name.lower().startswith(OUR_PREFIXES)
              and name.isupper()):
            found.append(name)
        elif re.fullmatch(r"PeerDist[A-Z]\w*|[A-Z]\w*(Request|Reply)", name):
            found.append(name)
        elif before and before[-1] in ("struct", "enum", "union"):
            found.append(name)
    return found


# ---- the check ----

def git_ignored(root, target):
    """Whether git ignores target (a file `make bench` writes, say): it is not in the tree."""
    if not (root / ".git").exists() or shutil.which("git") is None:
        return False
    r = subprocess.run(["git", "-C", str(root), "check-ignore", "-q", str(target)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return r.returncode == 0


def exists(root, md_dir, path, tree_files, only_relative=False):
    bases = [md_dir] if only_relative else [md_dir, root]
    for base in bases:
        target = os.path.normpath(base / path)
        if os.path.relpath(target, root).startswith(".."):
            return True  # outside the repository: not ours to check
        if "*" in path:
            if any(fnmatch.fnmatch(str(root / f), target) for f in tree_files):
                return True
        elif (os.path.isdir(target) if path.endswith("/") else os.path.exists(target)) and \
                not git_ignored(root, target):
            return True
    if only_relative or "/" in path:
        return False
    return any(fnmatch.fnmatch(f.name, path) for f in tree_files)


def load_allowlist(path):
    entries = {}
    try:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            entry = line.split("#", 1)[0].strip()
            if entry:
                entries[entry] = n
    except OSError:
        pass
    return entries


def check(root, allowlist_path):
    """The findings, one line each."""
    root = root.resolve()
    files = list(walk(root))
    patterns = gitignore_patterns(root)
    code = code_identifiers(root, files)
    allowed = load_allowlist(allowlist_path)
    cited, resolved, findings = set(), set(), []

    def verdict(where, s, ok, problem):
        if s in allowed:
            cited.add(s)
            if ok:
                resolved.add(s)
        elif not ok:
            findings.append(f"{where}: {problem}")

    for rel in files:
        if rel.suffix != ".md":
            continue
        md_dir = (root / rel).parent
        for line, kind, s in citations((root / rel).read_text(errors="replace")):
            where = f"{rel}:{line}"
            if kind == "link":
                target = s.split("#", 1)[0]
                if target and not re.match(r"[a-z]+:", target):
                    ok = exists(root, md_dir, target, files, only_relative=True)
                    verdict(where, target, ok, f"link target {target} does not exist")
                continue
            path = path_of(s)
            if path is not None:
                if not ignored(path.split("/")[0], patterns):
                    ok = exists(root, md_dir, path, files)
                    verdict(where, path, ok, f"path `{path}` does not exist")
                continue
            for name in names_of(s):
                if name.endswith(("*", "_")):
                    pattern = name.rstrip("*") + "*"
                    ok = any(fnmatch.fnmatchcase(c, pattern) for c in code)
                else:
                    ok = name in code
                verdict(where, name, ok, f"`{name}` is in no source file's code")
    for entry, n in sorted(allowed.items(), key=lambda e: e[1]):
        if entry not in cited:
            findings.append(f"{allowlist_path.name}:{n}: `{entry}` is cited nowhere any more")
        elif entry in resolved:
            findings.append(f"{allowlist_path.name}:{n}: `{entry}` is in the tree now: "
                            "remove it from the allowlist")
    return findings


# ---- self-test: the check must find what is planted ----

SELF_TEST_FILES = {
    ".gitignore": "build/\n",
    "src/a.c": 'int store_kept(void) { return 0; } /* store_in_comment_only */\n'
               'static const char *env = "PD_IN_STRING"; // PD_IN_COMMENT\n'
               'struct ci_thing { int x; };\n',
    "src/run.sh": "#!/bin/sh\nworker_in_shell() { :; }  # worker_in_shell_comment\n",
    "build/CMakeCache.txt": "",
    "build/stale.md": "`src/gone_but_in_build_dir.c`\n",
    "docs/b.md": "See `../src/a.c` and `a.c`.\n",
    "allow.txt": "server/completion.c\nunused_entry  # no one cites it\nstore_kept\n",
    "README.md": """# planted
Fine: `src/a.c`, `src/*.c`, `a.c`, `docs/`, `store_kept()`, `PD_IN_STRING`, `struct ci_thing`,
`worker_in_shell`, `store_*`, `store_`, `peerdist(3)`, `build/out/x`, `../outside.md`, `-o`,
`server/completion.c`, [ok](docs/b.md#top), [web](https://example.org/x.c).
```
store_fenced_is_not_read()
```
Bad: `src/gone.c`, `src/nope/`, `gone.h`, `src/*.h`, `store_gone()`,
`store_in_comment_only`, `PD_IN_COMMENT`, `epoll_ctl(fd, op)`, `FRAME_GONE_MAX`,
`PeerDistGone`, `GoneReply{x}`, `struct ci_gone`, `ci_gone_*`, `ci_gone_`, [bad](docs/missing.md),
`fuzz/run.sh 60`, ``a `store_double_gone` span``.
""",
}
SELF_TEST_EXPECTED = [
    "README.md:8: path `src/gone.c` does not exist",
    "README.md:8: path `src/nope/` does not exist",
    "README.md:8: path `gone.h` does not exist",
    "README.md:8: path `src/*.h` does not exist",
    "README.md:8: `store_gone` is in no source file's code",
    "README.md:9: `store_in_comment_only` is in no source file's code",
    "README.md:9: `PD_IN_COMMENT` is in no source file's code",
    "README.md:9: `epoll_ctl` is in no source file's code",
    "README.md:9: `FRAME_GONE_MAX` is in no source file's code",
    "README.md:10: `PeerDistGone` is in no source file's code",
    "README.md:10: `GoneReply` is in no source file's code",
    "README.md:10: `ci_gone` is in no source file's code",
    "README.md:10: `ci_gone_*` is in no source file's code",
    "README.md:10: `ci_gone_` is in no source file's code",
    "README.md:11: path `fuzz/run.sh` does not exist",
    "README.md:11: `store_double_gone` is in no source file's code",
    "README.md:10: link target docs/missing.md does not exist",
    "allow.txt:2: `unused_entry` is cited nowhere any more",
    "allow.txt:3: `store_kept` is in the tree now: remove it from the allowlist",
]


def self_test():
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        for rel, text in SELF_TEST_FILES.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        got = check(root, root / "allow.txt")
    missed = [f for f in SELF_TEST_EXPECTED if f not in got]
    extra = [f for f in got if f not in SELF_TEST_EXPECTED]
    for f in missed:
        print(f"docs_check self-test: not found: {f}", file=sys.stderr)
    for f in extra:
        print(f"docs_check self-test: wrongly found: {f}", file=sys.stderr)
    if missed or extra:
        return 1
    print(f"docs_check self-test: all {len(got)} planted citations found, nothing else")
    return 0


def main(argv):
    if argv[1:] == ["--self-test"]:
        return self_test()
    if len(argv) > 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    root = pathlib.Path(argv[1]) if len(argv) == 2 else SELF.parent.parent
    allowlist = SELF.parent / "docs_allowlist.txt"
    findings = check(root, allowlist)
    for f in findings:
        print(f)
    if findings:
        print(f"docs_check: {len(findings)} finding(s); fix the Markdown, or list a name from "
              f"elsewhere in tests/{allowlist.name}")
        return 1
    print("docs_check: every path and name of ours cited in *.md is in the tree")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
