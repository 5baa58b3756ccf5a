"""Module import graph of a crate's src/ (its crate::, super:: and self:: paths, outside comments
and tests), and its cycles. Usage: python3 scripts/import_circles.py service/src"""
import re, sys, os, itertools
root = sys.argv[1]
mods = {}
for dirpath, _, files in os.walk(root):
    for f in files:
        if not f.endswith(".rs"): continue
        path = os.path.join(dirpath, f)
        rel = os.path.relpath(path, root)[:-3]
        parts = rel.split(os.sep)
        if parts[-1] in ("mod", "lib", "main"): parts = parts[:-1]
        mods["::".join(parts)] = open(path).read()
def resolve(mod, path):
    segs = path.split("::")
    cur = mod.split("::") if mod else []
    if segs[0] == "crate": base, segs = [], segs[1:]
    elif segs[0] == "super":
        base = cur[:-1]; segs = segs[1:]
        while segs and segs[0] == "super": base = base[:-1]; segs = segs[1:]
    elif segs[0] == "self": base, segs = cur, segs[1:]
    else: return None
    # longest known module prefix
    for n in range(len(segs), 0, -1):
        cand = "::".join(base + segs[:n])
        if cand in mods: return cand
    return "::".join(base) if "::".join(base) in mods else None
edges = {m: set() for m in mods}
for m, src in mods.items():
    src = re.sub(r"#\[cfg\(test\)\]\s*mod tests \{.*", "", src, flags=re.S)
    src = re.sub(r"//[^\n]*", "", src)
    for p in re.findall(r"\b((?:crate|super|self)(?:::\w+)+)", src):
        t = resolve(m, p)
        if t is not None and t != m and not t.startswith(m + "::") and not m.startswith(t + "::") and t != "":
            edges[m].add(t)
        # braces: use crate::{a, b}
    for base, inner in re.findall(r"use ((?:crate|super)(?:::\w+)*)::\{([^}]*)\}", src):
        for item in inner.split(","):
            item = item.strip().split("::")[0].split(" ")[0]
            if not item or item == "self": continue
            t = resolve(m, base + "::" + item)
            if t and t != m and not t.startswith(m + "::") and not m.startswith(t + "::"):
                edges[m].add(t)
# cycles via SCC
index = {}; low = {}; stack = []; on = set(); sccs = []; i = [0]
def strong(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in edges: continue
        if w not in index: strong(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(sorted(comp))
sys.setrecursionlimit(10000)
for v in edges:
    if v not in index: strong(v)
print(root, "cycles:", sccs if sccs else "none")
