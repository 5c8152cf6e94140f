"""The code's layout rules (docs/DESIGN.md): few top-level modules, short files, no import cycle, no private import,
and the pruning layer importing nothing above it.

The import graph is read from the source (``ast``), so a lazy import inside a function counts like a top-level one;
imports under ``if TYPE_CHECKING:`` don't run and don't count.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import REPO

PACKAGES = ("agent", "env", "search_spaces")
MAX_LINES = 400
MAX_TOP_LEVEL_MODULES = 6
PRUNING_MAY_IMPORT = ("agent.errors", "agent.outputs", "agent.storage", "agent.tasks", "agent.pruning")


def _modules() -> dict[str, tuple[Path, bool]]:
    """Dotted name -> (file, is_package) for every module of the project's packages."""
    out = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Import statements that can run (those under ``if TYPE_CHECKING:`` can't)."""
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for stmt in node.body for n in ast.walk(stmt)}
    return [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) and id(n) not in skipped]


def _import_graph() -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """Module -> modules it imports (project modules only), and every ``(importer, module, _private)`` import."""
    modules = _modules()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    private = []
    for name, (path, is_pkg) in modules.items():
        package = name if is_pkg else name.rpartition(".")[0]
        for node in _runtime_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [source]
                for alias in node.names:
                    if f"{source}.{alias.name}" in modules:
                        targets.append(f"{source}.{alias.name}")
                    elif alias.name.startswith("_") and source in modules and source != name:
                        private.append((name, source, alias.name))
            for target in targets:
                # importing a.b.c runs a/__init__ and a/b/__init__ too (not the importer's own packages)
                while target:
                    if target in modules and target != name and not name.startswith(target + "."):
                        edges[name].add(target)
                    target = target.rpartition(".")[0]
    return edges, private


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    edges, _ = _import_graph()
    assert len(edges) > 50, "the import graph looks empty: did the package layout change?"
    assert _cycles(edges) == []


def test_no_module_imports_another_modules_private_names():
    _, private = _import_graph()
    assert private == []


def test_pruning_imports_nothing_above_it():
    edges, _ = _import_graph()
    upward = {(m, t) for m, targets in edges.items() if m.startswith("agent.pruning") for t in targets
              if t.startswith("agent") and t != "agent" and not t.startswith(PRUNING_MAY_IMPORT)}
    assert upward == set()


def test_agent_top_level_holds_few_modules():
    top = sorted(p.stem for p in (REPO / "agent").glob("*.py") if p.stem != "__init__")
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


@pytest.mark.parametrize("package", PACKAGES)
def test_no_file_over_the_line_limit(package):
    long = {str(p.relative_to(REPO)): n for p in (REPO / package).rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def _design_tree() -> set[str]:
    """Paths listed in docs/DESIGN.md's tree (its first code block after ``## The tree``)."""
    text = (REPO / "docs" / "DESIGN.md").read_text()
    block = text.split("## The tree", 1)[1].split("```", 2)[1]
    paths, stack = set(), []
    for line in block.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        name = line.split()[0]
        del stack[depth:]
        if name.endswith("/"):
            stack.append(name.rstrip("/"))
        elif name.endswith(".py"):
            paths.add("/".join([*stack, name]))
    return paths


def test_design_tree_lists_every_module_and_nothing_else():
    listed = _design_tree()
    actual = {str(p.relative_to(REPO)) for pkg in (*PACKAGES, "scripts") for p in (REPO / pkg).rglob("*.py")}
    assert {"agent/evaluation/core.py", "env/budget.py"} <= listed, "the tree parser found no paths"
    assert sorted(actual - listed) == [], "missing from docs/DESIGN.md's tree"
    assert sorted(listed - actual) == [], "listed in docs/DESIGN.md's tree but gone"
