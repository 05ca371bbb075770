"""The package's import graph follows the one-way layers of ``docs/design.md``.

Every import of an ``adapterhub`` module counts: module level, inside functions, and under
``TYPE_CHECKING``, because each is an edge a reader has to follow. An import may only point to the
same layer or a lower one, and no set of modules may import each other in a circle. An import placed
inside a function must say why on its line (``# deferred: <reason>``), so the edges a linter cannot
see at the top of a module are listed where they are. The documented exception is ``adapterhub.cli``:
every command imports what it needs inside the command, so ``adapterhub --help`` and the light
commands load no torch, transformers or jsonschema (the import-cost tests measure that).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from support.paths import REPO

PACKAGE = REPO / "adapterhub"

LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("base", frozenset({"__init__", "_version", "errors", "settings", "names", "jsonio", "fileio", "paths",
                        "progress", "resources", "schema", "blocks", "transport", "families", "lazy",
                        "records", "digits"})),
    ("manifest", frozenset({"manifest"})),
    ("registry", frozenset({"registry"})),
    ("store", frozenset({"store"})),
    ("runtime", frozenset({"runtime", "interop"})),
    ("compose", frozenset({"compose", "loading"})),
    ("publish", frozenset({"publish"})),
    ("serve", frozenset({"server", "serve_run", "tasks"})),
    ("cli", frozenset({"cli", "__main__"})),
)
"""Bottom to top. ``interop`` is the deprecated alias of ``runtime.formats`` (it only forwards)."""
CLI = len(LAYERS) - 1


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = all_modules()


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for rank, (_, members) in enumerate(LAYERS):
        if top in members:
            return rank
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {Path(__file__).name} and docs/design.md")


def _target(module: str, is_package: bool, node: ast.ImportFrom, alias: str) -> str | None:
    if node.level:
        base = module.split(".")
        base = base if is_package else base[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    if not prefix.startswith("adapterhub"):
        return None
    candidate = f"{prefix}.{alias}"
    return candidate if candidate in MODULES else _known(prefix)


def _known(name: str) -> str:
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


class Edge:
    def __init__(self, source: str, target: str, line: int, deferred: bool, text: str) -> None:
        self.source, self.target, self.line, self.deferred, self.text = source, target, line, deferred, text

    def __repr__(self) -> str:
        return f"{self.source}:{self.line} -> {self.target}"


def edges() -> list[Edge]:
    out: list[Edge] = []
    for module, path in MODULES.items():
        source = path.read_text()
        lines = source.splitlines()
        tree = ast.parse(source)
        is_package = path.name == "__init__.py"
        in_function: set[int] = set()
        for fn in ast.walk(tree):
            if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                in_function |= {id(n) for n in ast.walk(fn) if n is not fn}
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [_known(a.name) for a in node.names if a.name.startswith("adapterhub")]
            elif isinstance(node, ast.ImportFrom):
                targets = [t for a in node.names if (t := _target(module, is_package, node, a.name))]
            text = "\n".join(lines[node.lineno - 1: node.end_lineno]) if targets else ""
            for target in targets:
                if target != module:
                    out.append(Edge(module, target, node.lineno, id(node) in in_function, text))
    return out


EDGES = edges()


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


def test_imports_point_down_only():
    upward = [f"{e!r} ({LAYERS[layer_of(e.source)][0]} imports {LAYERS[layer_of(e.target)][0]})"
              for e in EDGES if layer_of(e.target) > layer_of(e.source)]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
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


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    for e in EDGES:
        graph.setdefault(e.source, set()).add(e.target)
    found = cycles(graph)
    detail = [" <-> ".join(c) + "\n  " + "\n  ".join(repr(e) for e in EDGES if e.source in c and e.target in c)
              for c in found]
    assert not found, "modules importing each other in a circle:\n" + "\n".join(detail)


def test_deferred_imports_say_why():
    silent = [repr(e) for e in EDGES if e.deferred and "# deferred:" not in e.text and layer_of(e.source) != CLI]
    assert not silent, ("imports inside functions hide an edge; import at module level, or say why on the line "
                        "(# deferred: <reason>):\n" + "\n".join(sorted(set(silent))))


@pytest.mark.parametrize("graph,expected", [
    ({"a": {"b"}, "b": {"a"}}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": {"c"}}, []),
])
def test_the_cycle_finder_finds_cycles(graph, expected):
    assert cycles(graph) == expected


def test_the_checker_sees_deferred_and_type_checking_imports(tmp_path):
    """The walk covers function bodies and ``if TYPE_CHECKING`` blocks (else the rules above prove nothing)."""
    deferred = [e for e in EDGES if e.deferred]
    assert deferred, "no in-function import found: the walk is not looking inside functions"
    handle = MODULES["adapterhub.runtime.handle"].read_text()
    assert any(e.source == "adapterhub.runtime.handle" for e in EDGES) and "import" in handle
