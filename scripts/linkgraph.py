#!/usr/bin/python3
"""Link graph of the mzcore library: one node per object file, an edge from
A to B when A uses a symbol B defines (nm). Prints every strongly connected
component of more than one file (a circle of files that need each other at
link time) and exits 1 if there is any.

Usage: scripts/linkgraph.py OBJECT_DIR_OR_FILES... [--edges] [--root SOURCE_DIR]
An OBJECT_DIR is searched for *.o (e.g. build/CMakeFiles/mzcore.dir). With
--root, an object whose source file no longer exists under SOURCE_DIR (left
behind in a build directory after a file moved) is skipped."""
import os
import subprocess
import sys


def objects(args, src_root=None):
    out = []
    for a in args:
        if os.path.isdir(a):
            for root, _, files in os.walk(a):
                for f in files:
                    path = os.path.join(root, f)
                    if not f.endswith(".o"):
                        continue
                    rel = os.path.relpath(path, a)[:-2]
                    if src_root and not os.path.exists(os.path.join(src_root, rel)):
                        continue
                    out.append(path)
        else:
            out.append(a)
    return sorted(out)


def name_of(path, base):
    rel = os.path.relpath(path, base) if base else os.path.basename(path)
    rel = rel.replace(os.sep, "/")
    for prefix in ("src/",):
        i = rel.find(prefix)
        if i >= 0:
            rel = rel[i + len(prefix):]
    return rel[:-2] if rel.endswith(".o") else rel


def symbols(path):
    res = subprocess.run(["nm", "-P", path], capture_output=True, text=True, check=True)
    defined, undefined = set(), set()
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        sym, kind = parts[0], parts[1]
        if kind == "U":
            undefined.add(sym)
        elif kind.isupper() and kind not in "N":
            defined.add(sym)
    return defined, undefined


def sccs(nodes, edges):
    """Tarjan's algorithm, iterative."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                    advanced = True
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                out.append(sorted(comp))
    return out


def main(argv):
    show_edges = "--edges" in argv
    args = [a for a in argv if a != "--edges"]
    src_root = None
    if "--root" in args:
        i = args.index("--root")
        if i + 1 >= len(args):
            print("linkgraph: --root needs a directory", file=sys.stderr)
            return 2
        src_root = args[i + 1]
        del args[i:i + 2]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    objs = objects(args, src_root)
    if not objs:
        print(f"linkgraph: no object files under {' '.join(args)}; build the library first",
              file=sys.stderr)
        return 2
    base = args[0] if os.path.isdir(args[0]) else None
    names, defs, uses = [], {}, {}
    for o in objs:
        n = name_of(o, base)
        names.append(n)
        defs[n], uses[n] = symbols(o)
    owner = {}
    for n in names:
        for s in defs[n]:
            owner.setdefault(s, n)
    edges = {n: set() for n in names}
    why = {}
    for n in names:
        for s in uses[n]:
            m = owner.get(s)
            if m and m != n:
                edges[n].add(m)
                why.setdefault((n, m), []).append(s)
    if show_edges:
        for n in names:
            for m in sorted(edges[n]):
                syms = sorted(why[(n, m)])
                print(f"{n} -> {m}: {', '.join(syms[:4])}{' ...' if len(syms) > 4 else ''}")
    circles = [c for c in sccs(names, edges) if len(c) > 1]
    print(f"linkgraph: {len(names)} object files, {sum(len(e) for e in edges.values())} edges, "
          f"{len(circles)} circle(s)")
    for c in circles:
        print(f"  circle of {len(c)}: {' '.join(c)}")
        inside = set(c)
        for n in c:
            for m in sorted(edges[n] & inside):
                syms = sorted(why[(n, m)])
                print(f"    {n} -> {m}: {', '.join(syms[:3])}{' ...' if len(syms) > 3 else ''}")
    return 1 if circles else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
