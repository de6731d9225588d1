"""The code's shape, for a closing note: imports made inside functions, the largest functions and modules.

    python scripts/code_shape.py [SRC]      (default: src/firsttoken)

Import cycles are checked by tests/test_imports.py; this only counts.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def main(root: Path) -> None:
    nested_internal = nested_all = 0
    functions: list[tuple[int, int, str]] = []
    modules: list[tuple[int, str]] = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        modules.append((len(text.splitlines()), str(path.relative_to(root.parent))))
        lines: dict[int, ast.AST] = {}
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                params = len(node.args.args) + len(node.args.kwonlyargs)
                functions.append((node.end_lineno - node.lineno + 1, params, f"{path.name}:{node.name}"))
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        lines[inner.lineno] = inner
        nested_all += len(lines)
        nested_internal += sum(1 for n in lines.values() if isinstance(n, ast.ImportFrom) and
                               (n.level or (n.module or "").startswith(root.name)))
    print(f"imports inside functions: {nested_all} ({nested_internal} of the package's own modules)")
    print("largest functions (lines, parameters):", ", ".join(f"{n} {ln}/{p}" for ln, p, n in
                                                               sorted(functions, reverse=True)[:4]))
    print("most parameters:", ", ".join(f"{n} {p}" for ln, p, n in sorted(functions, key=lambda f: -f[1])[:4]))
    print("largest modules (lines):", ", ".join(f"{n} {ln}" for ln, n in sorted(modules, reverse=True)[:4]))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "src/firsttoken"))
