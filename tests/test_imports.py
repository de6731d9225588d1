"""The package's import graph: no cycle, even through imports made inside functions; experiments' insides stay
inside it (the command line, the demo, scripts/ and bench/ use ``firsttoken.experiments.__all__``)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import firsttoken.experiments

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in (SRC / "firsttoken").rglob("*.py")}


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, (inner.end_lineno or inner.lineno) + 1))
    return lines


def imports(path: Path, name: str | None) -> list[tuple[str, int, bool]]:
    """(imported module, line, made inside a function) for each import of a firsttoken module at run time."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    nested: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nested.update(n.lineno for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom)))
    package = (name if name and _is_package(name) else (name or "").rpartition(".")[0])
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)) or node.lineno in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for target in targets:
            if target in MODULES:
                found.append((target, node.lineno, node.lineno in nested))
    return found


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def graph() -> dict[str, dict[str, tuple[int, bool]]]:
    """module -> {module it makes Python import: (line, inside a function)}. Importing ``a.b.c`` runs ``a.b``'s
    ``__init__`` first, so that is an edge too, except into the importer's own packages (already running)."""
    edges: dict[str, dict[str, tuple[int, bool]]] = {m: {} for m in MODULES}
    for name, path in MODULES.items():
        own = set(_ancestors(name)) | ({name} if _is_package(name) else set())
        for target, line, nested in imports(path, name):
            for t in [*_ancestors(target), target]:
                if t in MODULES and t not in own and t != name:
                    edges[name].setdefault(t, (line, nested))
    return edges


def _cycles(edges: dict[str, dict[str, tuple[int, bool]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def test_the_graph_is_read_right():
    edges = graph()
    assert "firsttoken._errors" in edges["firsttoken._backend"]
    assert "firsttoken.tasks" in edges["firsttoken.experiments._runner"]  # a package's __init__ is an edge
    assert "firsttoken.experiments" not in edges["firsttoken.experiments._runner"]  # its own package is not


def test_the_cycle_check_can_fail():
    edges = {"a": {"b": (1, False)}, "b": {"c": (3, True)}, "c": {"a": (2, False)}, "d": {}}
    assert _cycles(edges) == [["a", "b", "c"]]


def test_no_import_cycle_not_even_through_imports_inside_functions():
    edges = graph()
    described = []
    for comp in _cycles(edges):
        inner = [f"{a} -> {b} (line {line}{', inside a function' if nested else ''})"
                 for a in comp for b, (line, nested) in edges[a].items() if b in comp]
        described.append("; ".join(inner))
    assert not described, "import cycles: " + " | ".join(described)


def test_experiments_insides_stay_inside():
    """Outside ``firsttoken.experiments`` nothing imports ``experiments._*``: not the package, scripts or bench."""
    bad = []
    for name, path in MODULES.items():
        if name.startswith("firsttoken.experiments"):
            continue
        bad += [f"{name}:{line} imports {t}" for t, line, _ in imports(path, name)
                if t.startswith("firsttoken.experiments._")]
    for path in [*(ROOT / "scripts").glob("*.py"), *(ROOT / "bench").glob("*.py")]:
        bad += [f"{path.relative_to(ROOT)}:{line} imports {t}" for t, line, _ in imports(path, None)
                if t.startswith("firsttoken.experiments._")]
    assert not bad


def test_experiments_public_names_are_pinned():
    assert sorted(firsttoken.experiments.__all__) == [
        "Arm", "EvalConfig", "Row", "Store", "Task", "arm_label", "baseline_note", "build_grid", "default_store", "dspy_program",
        "evaluate", "file_task", "fixed_n", "html_page", "knee_sentence", "load_demos", "make_config",
        "markdown", "pair_alpha", "pair_fixed_n", "paired", "plots", "predict_file", "probe", "same_file", "show_arm",
        "simulate", "summarize", "versus", "with_options"]
    for name in firsttoken.experiments.__all__:
        assert getattr(firsttoken.experiments, name) is not None


def test_every_module_imports_on_its_own():
    """Each module imports first, in a fresh interpreter's order (a cycle shows here as an ImportError)."""
    import subprocess
    import sys

    code = ("import importlib, sys\n"
            f"for name in {sorted(MODULES)!r}:\n"
            "    for m in [k for k in sys.modules if k.startswith('firsttoken')]: del sys.modules[m]\n"
            "    importlib.import_module(name)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert importlib.util.find_spec("firsttoken") is not None


def test_no_test_module_imports_another():
    """Shared test code lives in tests/helpers.py, conftest.py (fixtures), fakes, signatures, servers, grammar."""
    bad = []
    for path in (ROOT / "tests").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + ([a.name for a in node.names] if not node.module else [])
                bad += [f"{path.name}:{node.lineno} imports {n}" for n in names
                        if n.rpartition(".")[2].startswith("test_")]
    assert not bad
