"""Check that the library's imports go one way.

Reads every module of the installed packages (``ledger`` and ``projections``) with ``ast`` and
collects every import, module-level and function-level alike (a late import is still a
dependency: it only hides the cycle until the function runs). Imports under
``if TYPE_CHECKING:`` are left out, since they never run.

Two rules, both printed with the offending modules:

1. no import cycle among library modules;
2. every import goes down the layer order of DESIGN.md
   (errors <- process state <- model <- events <- store <- projections <- write <- facade <- CLI).

Run ``python tools/check_imports.py``; exit status 1 when a rule is broken. ``--graph`` prints
every edge. The test suite runs it (tests/test_layering.py).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ledger", "projections")

# Layer of each module, lowest first. A module may import its own layer or any lower one.
# Longest prefix wins, so "ledger.store.sqlite" falls under "ledger.store".
LAYERS: tuple[tuple[str, ...], ...] = (
    ("ledger.errors",),
    ("ledger._process",),
    ("ledger.model",),
    ("ledger.events", "ledger.proofs"),  # ledger.proofs: standalone (hashlib + cryptography), the store builds on it
    ("ledger.store",),
    ("projections",),
    ("ledger.write",),
    ("ledger.ledger", "ledger.registry", "ledger.callables", "ledger.functional", "ledger.reactions", "ledger"),
    ("ledger.cli",),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def library_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[module_name(path)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, here: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    """Every module named by an import statement that can run, as absolute dotted names."""
    named: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".") if is_package else here.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base)
                module = f"{prefix}.{node.module}" if node.module else prefix
            else:
                module = node.module or ""
            for alias in node.names:
                # "from pkg import sub" names the submodule; "from pkg import name" the package
                named.add(f"{module}.{alias.name}" if f"{module}.{alias.name}" in modules else module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return named


def import_graph() -> dict[str, set[str]]:
    modules = library_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        targets = _imports(tree, name, path.name == "__init__.py", modules)
        edges: set[str] = set()
        for target in targets:
            # resolve to the deepest library module the name refers to
            parts = target.split(".")
            while parts and ".".join(parts) not in modules:
                parts.pop()
            if parts:
                resolved = ".".join(parts)
                if resolved != name:
                    edges.add(resolved)
        graph[name] = edges
    # importing a submodule runs its package's __init__ first: not an edge we count, since
    # a package __init__ that re-exports its children would otherwise make every child a cycle
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
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


def layer_of(module: str) -> int:
    best, best_len = len(LAYERS), -1
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = rank, len(prefix)
    return best


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted(
        (source, target)
        for source, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(source)
    )


def main(argv: list[str]) -> int:
    graph = import_graph()
    if "--graph" in argv:
        for source in sorted(graph):
            print(f"{source} -> {', '.join(sorted(graph[source])) or '-'}")
    problems = 0
    for component in cycles(graph):
        problems += 1
        print(f"cycle: {' <-> '.join(component)}")
    for source, target in upward_imports(graph):
        problems += 1
        print(f"upward: {source} (layer {layer_of(source)}) imports {target} (layer {layer_of(target)})")
    if problems:
        print(f"{problems} problem(s)")
        return 1
    print(f"{len(graph)} modules, imports go one way")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
