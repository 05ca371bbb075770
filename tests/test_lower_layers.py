"""The lower layers' shape: one reader of HF_ENDPOINT, no import cycle inside a package, no private names
borrowed across modules (see docs/design.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from adapterhub import settings

PACKAGE = Path(__file__).resolve().parents[1] / "adapterhub"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(module: str, path: Path) -> list[tuple[str, list[str]]]:
    """``(imported module, imported names)`` for every import of ``module``, inside functions and
    ``TYPE_CHECKING`` blocks included (they are edges too)."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            prefix = ".".join([*base, *([node.module] if node.module else [])])
            for a in node.names:
                sub = f"{prefix}.{a.name}"
                found.append((sub, []) if sub in MODULES else (prefix, [a.name]))
    return found


def _reads_hf_endpoint(tree: ast.AST) -> bool:
    """``os.environ["HF_ENDPOINT"]``, ``os.environ.get("HF_ENDPOINT")``, ``os.getenv("HF_ENDPOINT")``."""
    for node in ast.walk(tree):
        args = node.args if isinstance(node, ast.Call) else [node.slice] if isinstance(node, ast.Subscript) else []
        if any(isinstance(a, ast.Constant) and a.value == "HF_ENDPOINT" for a in args):
            return True
    return False


def test_only_settings_reads_hf_endpoint():
    readers = sorted(name for name, path in MODULES.items() if _reads_hf_endpoint(ast.parse(path.read_text())))
    assert readers == ["adapterhub.settings"]


def test_the_hf_endpoint_checker_sees_each_way_of_reading_it():
    for code in ('os.environ["HF_ENDPOINT"]', 'os.environ.get("HF_ENDPOINT") or x', 'getenv("HF_ENDPOINT", "")'):
        assert _reads_hf_endpoint(ast.parse(code)), code
    assert not _reads_hf_endpoint(ast.parse('"HF_ENDPOINT is read by settings"'))


def test_hub_endpoint_is_read_at_call_time(monkeypatch):
    from adapterhub.store.sources import HubSource

    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    assert settings.hub_endpoint() == settings.PUBLIC_HUB
    monkeypatch.setenv("HF_ENDPOINT", " http://127.0.0.1:9/hub/ ")
    assert settings.hub_endpoint() == "http://127.0.0.1:9/hub"
    assert settings.token_endpoints()[0] == "http://127.0.0.1:9/hub"
    assert "(http://127.0.0.1:9/hub)" in HubSource("org/repo", "a" * 40).description
    monkeypatch.setenv("HF_ENDPOINT", "  ")
    assert settings.hub_endpoint() == settings.PUBLIC_HUB


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
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


LOWER = ("registry", "store", "server", "transport", "manifest", "publish")


@pytest.mark.parametrize("package", LOWER)
def test_no_import_cycle_inside_a_lower_package(package):
    prefix = f"adapterhub.{package}."
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        if name.startswith(prefix):
            edges[name] = {m for m, _ in _imports(name, path) if m.startswith(prefix) and m != name}
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", LOWER)
def test_no_private_name_imported_across_modules(package):
    borrowed = [f"{name}: {target}.{n}" for name, path in MODULES.items() if name.startswith(f"adapterhub.{package}.")
                for target, names in _imports(name, path) if target.startswith("adapterhub")
                for n in names if n.startswith("_") and not n.startswith("__")]
    assert borrowed == []


def _is_base(module: str) -> bool:
    """The bottom layer: single-file modules right under ``adapterhub`` (errors, settings, names, jsonio,
    fileio, paths, ...), the package itself and the transport package."""
    parts = module.split(".")
    return len(parts) == 1 or module.startswith("adapterhub.transport") or (
        len(parts) == 2 and MODULES[module].name != "__init__.py" and MODULES[module].parent == PACKAGE
        and parts[1] not in ("serve_run", "__main__"))


def test_base_modules_import_only_base_modules():
    upward = [f"{name} -> {target}" for name, path in MODULES.items() if _is_base(name)
              for target, _ in _imports(name, path) if target.startswith("adapterhub") and not _is_base(target)]
    assert upward == []
