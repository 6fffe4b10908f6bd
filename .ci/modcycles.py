#!/usr/bin/env python3
"""The crate's top-level module graph from `crate::` paths in code (comments and doc links
excluded, `super::` resolved inside a module's own files), and its cycles."""
import os, re, sys, itertools
root = sys.argv[1] if len(sys.argv) > 1 else 'src'
edges = {}
for dirpath, _, files in os.walk(root):
    for f in files:
        if not f.endswith('.rs'): continue
        path = os.path.join(dirpath, f)
        rel = os.path.relpath(path, root)
        if rel.startswith('bin'): continue
        top = rel.split(os.sep)[0].removesuffix('.rs')
        if top in ('lib', 'main'): continue
        deps = edges.setdefault(top, set())
        code = '\n'.join(l for l in open(path) if not l.strip().startswith('//'))
        # `use crate::{a, b::c}` groups
        for grp in re.findall(r'crate::\{([^}]*)\}', code):
            for name in re.findall(r'(?:^|,)\s*([a-z_]+)', grp):
                deps.add(name)
        for name in re.findall(r'crate::([a-z_]+)', code):
            deps.add(name)
        deps.discard(top)
mods = set(edges)
for k in edges: edges[k] &= mods
# Tarjan SCC
index = {}; low = {}; stack = []; on = set(); sccs = []; i = [0]
def strong(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in sorted(edges.get(v, ())):
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        sccs.append(comp)
for v in sorted(edges):
    if v not in index: strong(v)
cycles = [sorted(c) for c in sccs if len(c) > 1]
for k in sorted(edges):
    print(f"{k} -> {', '.join(sorted(edges[k])) or '-'}")
print("cycles:", cycles if cycles else "none")
sys.exit(1 if cycles else 0)
