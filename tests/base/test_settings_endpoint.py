"""One reader of ``HF_ENDPOINT`` (``adapterhub.settings``), read at call time.

huggingface_hub reads the variable once, at import; our own readers must see a value set later (a test,
a notebook), so every module asks ``settings.hub_endpoint()``. Layers, cycles and private names are
checked for the whole package by ``tests/project/test_layers.py`` and ``test_private_names.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

from support.paths import REPO

from adapterhub import settings

PACKAGE = REPO / "adapterhub"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


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
