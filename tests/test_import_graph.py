"""The shape of segtool/ (issue 37): no import circles, at most two imports that run back up to a
package above, no module importing another's ``_private`` name, no file over 400 lines and no
function over 60 lines unless its docstring says why ("Long because ...").

Every ``import`` counts, lazy ones inside functions and ``TYPE_CHECKING`` ones included: a
circle that only closes at run time is still a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "segtool"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """({module: modules it imports}, [(importer, module, private name imported from it)])."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in files}
    private = []
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[tuple[str, str | None]] = []
            if isinstance(node, ast.Import):
                targets = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                targets = [(f"{base}.{a.name}", None) if f"{base}.{a.name}" in files else (base, a.name)
                           for a in node.names]
            for target, name in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if not target or target == mod:
                    continue
                edges[mod].add(target)
                if name and name.startswith("_") and not name.startswith("__"):
                    private.append((mod, target, name))
    return edges, private


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports of a package that contains the importer (its own package face or one above)."""
    return sorted((a, b) for a, targets in edges.items() for b in targets if a.startswith(b + "."))


def test_the_checks_see_a_circle_an_upward_import_and_a_private_name(tmp_path):
    pkg = tmp_path / "segtool"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from segtool.b import _hidden\n")
    (pkg / "b.py").write_text("def f():\n    import segtool.a\n_hidden = 1\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from segtool import sub\n")
    edges, private = import_graph(pkg)
    assert circles(edges) == [["segtool.a", "segtool.b"]]
    assert upward(edges) == [("segtool.sub.c", "segtool.sub")]
    assert private == [("segtool.a", "segtool.b", "_hidden")]


def test_no_import_circles_and_at_most_two_imports_back_up():
    edges, _ = import_graph()
    assert circles(edges) == []
    assert len(upward(edges)) <= 2, upward(edges)


def test_no_module_imports_another_modules_private_name():
    _, private = import_graph()
    assert private == []


def test_no_file_over_400_lines_and_no_function_over_60_without_a_reason():
    too_long = [f"{p.relative_to(ROOT.parent)}: {n} lines" for p in ROOT.rglob("*.py")
                if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400]
    for path in ROOT.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60 and "Long because" not in (ast.get_docstring(node) or ""):
                    too_long.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name}: {length} lines")
    assert too_long == []
