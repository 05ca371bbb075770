"""The registry index: format, name rules, resolution (specs, yanking, dependencies), search.

Public names load their module on first use (:mod:`adapterhub.lazy`): resolving a name for a warm
``adapterhub pull`` needs the index reader and the resolver, not the checker or the writer (filelock),
and any ``adapterhub.registry.X`` import runs this file first. (``search`` lives in ``searching``: a
function named like its module could not load lazily.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .check import CheckReport, check_index
    from .entries import IndexEntry, entry_for
    from .index import Index, is_local_index, open_index
    from .layout import entry_path
    from .resolver import Resolved, YankedVersionWarning, resolve, resolve_closure
    from .searching import SearchQuery, search
    from .writer import add_release, add_releases, init_index, rebuild_search, set_yanked

_EXPORTS = {
    **dict.fromkeys(("CheckReport", "check_index"), ".check"),
    **dict.fromkeys(("IndexEntry", "entry_for"), ".entries"),
    **dict.fromkeys(("Index", "is_local_index", "open_index"), ".index"),
    "entry_path": ".layout",
    **dict.fromkeys(("Resolved", "YankedVersionWarning", "resolve", "resolve_closure"), ".resolver"),
    **dict.fromkeys(("SearchQuery", "search"), ".searching"),
    **dict.fromkeys(("add_release", "add_releases", "init_index", "rebuild_search", "set_yanked"), ".writer"),
}

__all__ = [
    "CheckReport", "check_index", "IndexEntry", "entry_for", "Index", "is_local_index", "open_index", "entry_path", "Resolved",
    "YankedVersionWarning", "resolve", "resolve_closure", "SearchQuery", "search", "add_release", "add_releases",
    "init_index",
    "rebuild_search", "set_yanked",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
