"""The structure counts of issues 39 and 48: modules over 400 lines, import cycles (type-only and in-function imports
included), files naming `parallel` and getattr(..., "parallel"), functions over 60 lines, every getattr( in src/ with
its `# getattr: REASON`. Usage: python scripts/structure.py [ROOT]"""
import ast, sys, os, re
from pathlib import Path
root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]) / "src"
mods = {}
for p in root.rglob("*.py"):
    name = ".".join(p.relative_to(root).with_suffix("").parts)
    if name.endswith(".__init__"): name = name[:-9]
    mods[name] = p
def resolve(mod, node):
    base = mod.split(".")
    if mods[mod].name != "__init__.py": base = base[:-1]
    if node.level:
        base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    out = []
    for a in node.names:
        cand = f"{target}.{a.name}"
        out.append(cand if cand in mods else target)
    return [t for t in out if t in mods]
graph = {m: set() for m in mods}
for m, p in mods.items():
    for node in ast.walk(ast.parse(p.read_text())):
        if isinstance(node, ast.ImportFrom):
            graph[m] |= set(resolve(m, node)) - {m}
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in mods: graph[m].add(a.name)
# cycles: strongly connected components > 1 (ignore package __init__ -> submodule edges, which are the package's own)
def parent(a, b): return b.startswith(a + ".")
g = {m: {t for t in ts if not parent(m, t) and not parent(t, m)} for m, ts in graph.items()}
index, low, stack, on, sccs, i = {}, {}, [], set(), [], [0]
sys.setrecursionlimit(10000)
def sc(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in g[v]:
        if w not in index: sc(w); low[v] = min(low[v], low[w])
        elif w in on: low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop(); on.discard(w); comp.append(w)
            if w == v: break
        if len(comp) > 1: sccs.append(sorted(comp))
for v in g:
    if v not in index: sc(v)
big = sorted((len(p.read_text().splitlines()), m) for m, p in mods.items())
print("modules over 400 lines:", [(m, n) for n, m in big if n > 400])
print("largest:", big[-3:])
print("import cycles (incl. type-only, in-function):", len(sccs), sccs)
files = [str(p.relative_to(root)) for p in mods.values() if re.search(r"\bparallel\b", p.read_text())]
print("files naming parallel:", len(files))
print("getattr(..., 'parallel'):", sum(len(re.findall(r"getattr\([^)]*[\"']parallel[\"']", p.read_text())) for p in mods.values()))
# Issue 48's counts: functions over 60 lines, and every getattr( in src/ with its reason (a `# getattr: REASON`
# comment on its line or the line above; one without is listed as unexplained).
long = []
for m, p in sorted(mods.items()):
    for node in ast.walk(ast.parse(p.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > 60: long.append((f"{p.relative_to(root)}:{node.lineno} {node.name}", n))
print("functions over 60 lines:", len(long), sorted(long, key=lambda x: -x[1]))
reasons, unexplained = [], []
for m, p in sorted(mods.items()):
    lines = p.read_text().splitlines()
    for i, line in enumerate(lines):
        if "getattr(" not in line.split("#")[0]: continue
        why = re.search(r"#\s*getattr:\s*(.+)", line) or (i and re.search(r"#\s*getattr:\s*(.+)", lines[i - 1]))
        (reasons if why else unexplained).append((f"{p.relative_to(root)}:{i + 1}", why.group(1).strip() if why else line.strip()))
print("getattr( calls:", len(reasons) + len(unexplained), "with a reason:", len(reasons), "unexplained:", len(unexplained))
for where, why in reasons: print("  ", where, "-", why)
for where, text in unexplained: print("   UNEXPLAINED", where, "-", text[:100])
