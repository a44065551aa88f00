#!/usr/bin/env python3
"""Checks the source layout that dist/README.md and kernels/ promise:

- no cycle between modules (a module is NAME.c with its NAME.h; an edge
  A -> B when A.c or A.h includes B.h);
- each folder includes only the folders its layer may use (LAYERS below, the
  table in dist/README.md);
- kernels/ includes neither MPI nor HDF5;
- no more than 12 files at dist/'s top, and no stage source over 900 lines.

Usage: check_layout.py [ROOT]   (exit 1 and one line per finding on failure)
"""
import os
import re
import sys

# folder -> folders it may include (itself always allowed)
LAYERS = {
    "kernels": [],
    "dist/run": ["kernels"],
    "dist/io": ["kernels", "dist/run"],
    "dist/data": ["kernels", "dist/run", "dist/io"],
    "dist/text": ["kernels", "dist/run", "dist/io"],
    "dist/stages": ["kernels", "dist/run", "dist/io", "dist/data", "dist/text"],
    "dist/report": ["kernels", "dist/run", "dist/io", "dist/stages"],
    "dist/pipeline": ["kernels", "dist/run", "dist/io", "dist/data", "dist/stages",
                      "dist/report"],
    "dist/commands": ["kernels", "dist/run", "dist/io", "dist/data", "dist/text",
                      "dist/stages", "dist/report", "dist/pipeline"],
    "dist": ["dist/commands", "dist/run"],
}
MAX_TOP = 12
MAX_STAGE_LINES = 900
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
SYSTEM = re.compile(r'^\s*#\s*include\s+<([^>]+)>', re.M)


def main(root):
    bad = []
    files = {}  # basename -> relative path
    for top in ("dist", "kernels"):
        for d, _, names in os.walk(os.path.join(root, top)):
            for n in names:
                if n.endswith((".c", ".h")):
                    rel = os.path.relpath(os.path.join(d, n), root)
                    if n in files:
                        bad.append(f"{rel}: same file name as {files[n]} (includes are by name)")
                    files[n] = rel
    module_of = lambda rel: rel[:-2]
    folder_of = lambda rel: os.path.dirname(rel)
    graph = {}
    for n, rel in files.items():
        text = open(os.path.join(root, rel), encoding="utf-8").read()
        mod = module_of(rel)
        graph.setdefault(mod, set())
        folder = folder_of(rel)
        if folder not in LAYERS:
            bad.append(f"{rel}: folder {folder} is not in the layer table")
            continue
        if folder == "kernels":
            for s in SYSTEM.findall(text):
                if s in ("mpi.h", "hdf5.h") or s.startswith("H5"):
                    bad.append(f"{rel}: kernels/ must not include <{s}>")
        for inc in INCLUDE.findall(text):
            if inc not in files:
                continue  # a generated or third-party header
            target = files[inc]
            tmod, tfolder = module_of(target), folder_of(target)
            if tmod != mod:
                graph[mod].add(tmod)
            if tfolder != folder and tfolder not in LAYERS[folder]:
                bad.append(f"{rel}: includes {target}, but {folder}/ may not use {tfolder}/")
    # cycles: depth-first search with colours
    colour, stack = {}, []

    def visit(m):
        colour[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if colour.get(t, 0) == 1:
                cyc = stack[stack.index(t):] + [t]
                bad.append("cycle: " + " -> ".join(cyc))
            elif colour.get(t, 0) == 0:
                visit(t)
        stack.pop()
        colour[m] = 2

    for m in sorted(graph):
        if colour.get(m, 0) == 0:
            visit(m)
    top = [n for n in os.listdir(os.path.join(root, "dist"))
           if os.path.isfile(os.path.join(root, "dist", n))]
    if len(top) > MAX_TOP:
        bad.append(f"dist/ has {len(top)} files at its top (at most {MAX_TOP}): {sorted(top)}")
    for n, rel in files.items():
        if rel.startswith("dist/stages/") and n.endswith(".c"):
            lines = sum(1 for _ in open(os.path.join(root, rel), encoding="utf-8"))
            if lines > MAX_STAGE_LINES:
                bad.append(f"{rel}: {lines} lines (a stage source has at most {MAX_STAGE_LINES})")
    for b in bad:
        print(b)
    n_edges = sum(len(v) for v in graph.values())
    print(f"layout: {len(graph)} modules, {n_edges} dependencies, {len(top)} files at dist/'s "
          f"top: {'OK' if not bad else str(len(bad)) + ' problem(s)'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else
                  os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")))
