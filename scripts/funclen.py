#!/usr/bin/python3
"""Lists C functions whose body is longer than a limit.

    scripts/funclen.py [--max N] [--report] PATH...

PATH is a .c file or a directory (its .c files, not recursive). A function is
a top-level definition in the project's style: the signature, then "{" alone
at the start of a line, the body, and "}" at the start of a line. Its length
is the number of lines between the braces. Every function over N lines
(default 100) is printed as FILE:LINE: NAME: LINES lines, longest first.
Exit status 1 when there is one (0 with --report), 2 on a usage error.
"""
import argparse
import os
import re
import sys

NAME = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")


def functions(path):
    """Yields (name, line of the opening brace, body lines) of each function."""
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        if lines[i].rstrip() != "{":
            i += 1
            continue
        # The signature: the nearest line above with "name(" at its start
        # (or after the return type), no deeper than a few lines.
        name = None
        for j in range(i - 1, max(i - 8, -1), -1):
            m = NAME.search(lines[j])
            if m and not lines[j].startswith((" ", "\t", "#", "/", "*")):
                name = m.group(1)
                break
        end = i + 1
        while end < len(lines) and not lines[end].startswith("}"):
            end += 1
        if name is not None:
            yield name, i + 1, end - i - 1
        i = end + 1


def sources(paths):
    for p in paths:
        if os.path.isdir(p):
            for n in sorted(os.listdir(p)):
                if n.endswith(".c"):
                    yield os.path.join(p, n)
        elif p.endswith(".c") and os.path.isfile(p):
            yield p
        else:
            print(f"funclen.py: {p}: not a .c file or a directory", file=sys.stderr)
            sys.exit(2)


def main():
    ap = argparse.ArgumentParser(description="C functions longer than a limit")
    ap.add_argument("--max", type=int, default=100, help="longest body allowed (lines)")
    ap.add_argument("--report", action="store_true", help="list them, exit 0")
    ap.add_argument("paths", nargs="+", help=".c files or directories")
    a = ap.parse_args()
    over = []
    for path in sources(a.paths):
        for name, line, n in functions(path):
            if n > a.max:
                over.append((n, path, line, name))
    for n, path, line, name in sorted(over, reverse=True):
        print(f"{path}:{line}: {name}: {n} lines")
    if over:
        print(f"funclen.py: {len(over)} function(s) over {a.max} lines", file=sys.stderr)
    return 0 if a.report or not over else 1


if __name__ == "__main__":
    sys.exit(main())
