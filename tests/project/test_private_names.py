"""No module uses another module's private names (``_name``): what crosses a module boundary is public.

A private name imported elsewhere (``from .handle import _is_repo_id``) is a function two modules depend
on while its owner believes it free to change; the fix is a public name in the module where it belongs.
Attribute access on our own modules (``pull._Puller``) is caught the same way.
"""

from __future__ import annotations

import ast
from pathlib import Path

from support.paths import REPO

PACKAGE = REPO / "adapterhub"


def _module(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        module_aliases: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                inside = node.level > 0 or (node.module or "").startswith("adapterhub")
                if not inside:
                    continue
                for alias in node.names:
                    if _private(alias.name):
                        found.append(f"{_module(path)}:{node.lineno} imports {alias.name}")
                    else:
                        module_aliases.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                module_aliases |= {a.asname or a.name.split(".")[0] for a in node.names if a.name.startswith("adapterhub")}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                    and node.value.id in module_aliases and node.value.id[:1].islower()):
                found.append(f"{_module(path)}:{node.lineno} uses {node.value.id}.{node.attr}")
    return found


def test_no_module_reaches_into_another_modules_privates():
    uses = private_uses()
    assert not uses, "private names used across modules (make them public where they belong):\n" + "\n".join(uses)


def test_the_check_sees_a_private_import(tmp_path, monkeypatch):
    """The walk recognises both spellings (else the test above proves nothing)."""
    fake = tmp_path / "adapterhub"
    fake.mkdir()
    (fake / "a.py").write_text("from .b import _hidden\nfrom . import b\nb._other()\n")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    monkeypatch.setitem(globals(), "REPO", tmp_path)
    uses = private_uses()
    assert uses == ["adapterhub.a:1 imports _hidden", "adapterhub.a:3 uses b._other"]
