#!/usr/bin/python3
"""Functions longer than a limit in C files: a function starts at a line
beginning with an identifier and holding '(' at brace depth 0, followed by
a '{' at column 0; it ends at the matching '}' at column 0 (STYLE.md layout).
Usage: scripts/funclen.py LIMIT FILE_OR_DIR...   Exits 1 if any is over."""
import os
import re
import sys

START = re.compile(r"^[A-Za-z_][\w \t\*]*?\b(\w+)\s*\(")


def files(args):
    for a in args:
        if os.path.isdir(a):
            for root, _, names in os.walk(a):
                for n in sorted(names):
                    if n.endswith(".c"):
                        yield os.path.join(root, n)
        else:
            yield a


def functions(path):
    lines = open(path, encoding="utf-8").read().split("\n")
    name, first = None, 0
    for i, line in enumerate(lines):
        m = START.match(line)
        if m and not line.startswith(("typedef", "struct", "enum")) and not line.rstrip().endswith(";"):
            name, first = m.group(1), i
        elif line.startswith("{") and name is not None:
            body = first
            for j in range(i + 1, len(lines)):
                if lines[j].startswith("}"):
                    yield name, first + 1, j - body + 1
                    break
            name = None
        elif line and not line[0].isspace() and not line.startswith(("{", "}", "/", "#")) and not m:
            pass


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    limit, over = int(argv[0]), []
    for path in files(argv[1:]):
        for name, line, n in functions(path):
            if n > limit:
                over.append((path, line, name, n))
    for path, line, name, n in over:
        print(f"{path}:{line}: {name} is {n} lines (limit {limit})")
    print(f"funclen: {len(over)} function(s) over {limit} lines")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
