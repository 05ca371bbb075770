"""The registry index: format, name rules, resolution (specs, yanking, dependencies), search.

Each public name loads its module on first use (``__getattr__``): resolving a name for a warm
``adapterhub pull`` needs the index reader and the resolver, not the checker, the writer (filelock) or
search, and any ``adapterhub.registry.X`` import runs this file first. ``search`` is bound eagerly: it
is named like its module, and importing a submodule sets the package attribute of that name to the
module, which would hide a lazily bound function.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .search import SearchQuery, search

if TYPE_CHECKING:
    from .check import CheckReport, check_index
    from .entries import IndexEntry, entry_for
    from .index import Index, open_index
    from .layout import entry_path
    from .resolver import Resolved, YankedVersionWarning, resolve, resolve_closure
    from .writer import add_release, add_releases, init_index, rebuild_search, set_yanked

_EXPORTS = {
    **dict.fromkeys(("CheckReport", "check_index"), ".check"),
    **dict.fromkeys(("IndexEntry", "entry_for"), ".entries"),
    **dict.fromkeys(("Index", "open_index"), ".index"),
    "entry_path": ".layout",
    **dict.fromkeys(("Resolved", "YankedVersionWarning", "resolve", "resolve_closure"), ".resolver"),
    **dict.fromkeys(("add_release", "add_releases", "init_index", "rebuild_search", "set_yanked"), ".writer"),
}

__all__ = [
    "CheckReport", "check_index", "IndexEntry", "entry_for", "Index", "open_index", "entry_path", "Resolved",
    "YankedVersionWarning", "resolve", "resolve_closure", "SearchQuery", "search", "add_release", "add_releases",
    "init_index",
    "rebuild_search", "set_yanked",
]


def __getattr__(name: str) -> Any:
    """Load the module that defines ``name`` on first use (see the module docstring for why)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
