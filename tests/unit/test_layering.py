"""The package's shape, checked from the source: no import circle, the catalog imports nothing
above it, and no pipeline stage imports another (docs/ARCHITECTURE.md, "Layers").

Imports are read with ast, including those inside functions (a lazy import still ties two
modules together); only ``if TYPE_CHECKING:`` blocks are left out, since they never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import ingestd

ROOT = Path(ingestd.__file__).parent

# What the catalog may import besides itself: the value layer (docs/ARCHITECTURE.md, "Layers").
# names (and untrusted, which it uses) are pure leaves: the catalog stores file names exactly.
CATALOG_MAY_IMPORT = (
    "ingestd.catalog",
    "ingestd.states",
    "ingestd.errors",
    "ingestd.names",
    "ingestd.untrusted",
)

# The pipeline's stages: each reads catalog states and writes through catalog operations; none
# imports another (they meet only in the catalog, and the daemon wires their doorbells).
STAGES = ("ingestd.intake", "ingestd.pipeline.lane", "ingestd.pipeline.post")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_runtime(node: ast.AST) -> Iterator[ast.AST]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield other
                yield from _walk_runtime(other)
            continue
        yield child
        yield from _walk_runtime(child)


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The ingestd modules ``name`` imports at run time (a package import counts as its
    ``__init__``; ``from pkg import mod`` counts as ``pkg.mod`` when that is a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _walk_runtime(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("ingestd"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if not target.startswith("ingestd"):
                continue
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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
    return sorted(found)


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_no_import_circle() -> None:
    assert cycles(graph()) == []


def test_catalog_imports_nothing_above_it() -> None:
    offenders = {
        name: sorted(m for m in deps if not any(_within(m, ok) for ok in CATALOG_MAY_IMPORT))
        for name, deps in graph().items()
        if _within(name, "ingestd.catalog")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_stage_imports_another() -> None:
    crossings = sorted(
        (name, dep)
        for name, deps in graph().items()
        for dep in deps
        for stage in STAGES
        if _within(name, stage)
        for other in STAGES
        if other != stage and _within(dep, other)
    )
    assert crossings == []


def test_the_checker_sees_a_circle() -> None:
    # The checks above pass on an empty graph too: prove they would see a real circle.
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert "ingestd.catalog.repo" in graph()["ingestd.daemon"]
