#!/usr/bin/env python3
"""Fails when two top-level modules of the library import each other, directly or through
others (issue #22). `crate::error`, which gathers every stage's error into the crate's
`Error`, is the one module allowed to point back up. Test modules (an inline
`#[cfg(test)] mod tests { … }` to the end of its file, and `tests.rs` files) and comments
are not counted; everything else is, `super::` paths included.

    python3 scripts/module_cycles.py          # prints the graph; exit 1 on a cycle
"""
import collections
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
GATHERER = "error"
tops = {p.stem if p.is_file() else p.name for p in SRC.iterdir()} - {"main", "lib", "cli"}
edges = collections.defaultdict(set)
where = collections.defaultdict(set)
for f in sorted(SRC.rglob("*.rs")):
    rel = f.relative_to(SRC)
    top = rel.parts[0].removesuffix(".rs")
    if top not in tops or top == GATHERER or f.name == "tests.rs":
        continue
    text = f.read_text()
    cut = text.find("#[cfg(test)]\nmod tests {")
    body = text if cut < 0 else text[:cut]
    body = re.sub(r"//[^\n]*", "", body)
    found = set(re.findall(r"crate::(\w+)", body))
    # `super::…` as deep as the file's module path reaches the crate root.
    path = [p.removesuffix(".rs") for p in rel.parts]
    if path[-1] == "mod":
        path.pop()
    found |= set(re.findall(r"(?<![:\w])" + "super::" * len(path) + r"(\w+)", body))
    for group in re.findall(r"use crate::\{([^;]*)\}", body, re.S):
        found |= set(re.findall(r"(?:^|[{,])\s*(\w+)", group))
    for t in found & tops - {top}:
        edges[top].add(t)
        where[(top, t)].add(str(rel))

index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in sorted(edges[v]):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            cycles.append(sorted(comp))


for v in sorted(tops):
    if v not in index:
        visit(v)
for a in sorted(edges):
    print(f"{a} -> {', '.join(sorted(edges[a]))}")
for comp in cycles:
    print(f"module cycle: {' <-> '.join(comp)}")
    for a in comp:
        for b in comp:
            if b in edges[a]:
                print(f"  {a} -> {b} in {', '.join(sorted(where[(a, b)]))}")
print("module_cycles: no cycle between top-level modules" if not cycles else f"module_cycles: {len(cycles)} cycle(s)")
sys.exit(1 if cycles else 0)
