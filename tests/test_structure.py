"""The package's shape: no import cycle between its modules, no module over 500 lines.

The import graph is read from the source (ast), not by importing: an edge A → B for every
``import`` or ``from ... import`` in A that names B, a module of ``stsflow``, wherever it is
written. Imports inside functions count: a lazy import is still a dependency, and a cycle through
one is still a cycle, only one that waits for a call to break (both cycles this test was written
against had one). Imports under ``if TYPE_CHECKING:`` do not count: they never run.

An import names one module: ``from stsflow.x import y`` is an edge to ``stsflow.x.y`` when that is
a module, else to ``stsflow.x`` (the package's ``__init__``, whose names it reads). The parent
packages Python initialises on the way are not edges: each would tie every module to its package's
``__init__``, which by design imports its own modules to present them."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "stsflow"
MAX_LINES = 500

# Import cycles known and not yet removed, each as the set of modules its cycles pass through (a
# strongly connected component of the graph). Each entry must match a component exactly, so an
# entry goes when its cycle does, and a new cycle, or a module joining a known one, still fails.
KNOWN_CYCLES: list[set[str]] = []  # none: a cycle found is a failure


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import / ImportFrom node, at any depth, outside ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that module ``name`` (at ``path``) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in _imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
            continue
        base = node.module or ""
        if node.level:  # relative: from the importing module's package, up level - 1
            anchor = package.split(".")
            anchor = anchor[:len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        for a in node.names:
            sub = f"{base}.{a.name}"
            if sub in known:
                out.add(sub)
            elif base in known:
                out.add(base)
    out.discard(name)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imported(name, path, set(mods)) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[tuple[set[str], list[str]]]:
    """Each strongly connected component of more than one module (Tarjan's algorithm,
    iterative), with one cycle through it: the modules in import order, the first repeated at the
    end."""
    index, low, on, stack, comps = {}, {}, set(), [], []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            node, succ = work[-1]
            nxt = next(succ, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                elif nxt in on:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = set()
                while True:
                    m = stack.pop()
                    on.discard(m)
                    comp.add(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    comps.append(comp)
    return [(comp, _cycle_in(graph, comp)) for comp in comps]


def _cycle_in(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first, within it)."""
    start = min(comp)
    prev = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & comp):
            if nxt == start:
                path = [node]
                while prev[path[-1]] is not None:
                    path.append(prev[path[-1]])
                return [*reversed(path), start]
            if nxt not in prev:
                prev[nxt] = node
                queue.append(nxt)
    raise AssertionError(f"no cycle through {start} in {sorted(comp)}")


def test_the_graph_sees_imports_in_functions_and_relative_ones(tmp_path):
    """The reader itself, on a small package: a function-level import and a relative one make
    edges, a TYPE_CHECKING import and a name imported from a package do not reach a module."""
    pkg = tmp_path / "p"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from p.a import f\n")
    (pkg / "a.py").write_text("def f():\n    from p.sub import b\n    return b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nfrom . import c\n"
                                      "if TYPE_CHECKING:\n    from p import a\n")
    (pkg / "sub" / "c.py").write_text("from ..a import f\nfrom p import f as g\n")
    known = {"p", "p.a", "p.sub", "p.sub.b", "p.sub.c"}
    got = {n: imported(n, tmp_path / (n.replace(".", "/") + (
        "/__init__.py" if n in ("p", "p.sub") else ".py")), known) for n in known}
    assert got == {"p": {"p.a"}, "p.a": {"p.sub.b"}, "p.sub": set(), "p.sub.b": {"p.sub.c"},
                   "p.sub.c": {"p.a", "p"}}
    assert cycles(got) == [({"p", "p.a", "p.sub.b", "p.sub.c"},
                             ["p", "p.a", "p.sub.b", "p.sub.c", "p"])]


def test_no_import_cycle():
    found = cycles(import_graph())
    new = [(sorted(comp), c) for comp, c in found if comp not in KNOWN_CYCLES]
    assert not new, "import cycles in stsflow:\n" + "\n".join(
        f"{' -> '.join(c)} (modules in the cycles: {', '.join(comp)})" for comp, c in new)
    gone = [sorted(k) for k in KNOWN_CYCLES if k not in [comp for comp, _ in found]]
    assert not gone, f"KNOWN_CYCLES lists cycles that no longer exist; remove them: {gone}"


def test_no_module_over_500_lines():
    long = {str(p.relative_to(REPO)): n for p in modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by responsibility): {long}"
