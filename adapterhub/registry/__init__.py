"""The registry index: format, name rules, resolution (specs, yanking, dependencies), search."""

from .check import CheckReport, check_index
from .entries import IndexEntry, entry_for
from .index import Index, open_index
from .layout import entry_path
from .resolver import Resolved, YankedVersionWarning, resolve, resolve_closure
from .search import SearchQuery, search
from .writer import add_release, add_releases, init_index, rebuild_search, set_yanked

__all__ = [
    "CheckReport", "check_index", "IndexEntry", "entry_for", "Index", "open_index", "entry_path", "Resolved",
    "YankedVersionWarning", "resolve", "resolve_closure", "SearchQuery", "search", "add_release", "add_releases",
    "init_index",
    "rebuild_search", "set_yanked",
]
