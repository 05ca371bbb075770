"""Search over an index's summary file (``search-index.jsonl``: one line per name).

The summary holds what a search needs (latest version, description, task, method, base model and its
shape), so a search reads one file rather than every entry, locally or over HTTP. What matches and in
which order is :mod:`.scoring`; a large summary is searched through the SQLite database of
:mod:`.search_db`, a small one by scanning it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .entries import IndexEntry
from .index import Index
from .layout import SEARCH_FILE
from .scoring import SHAPE_FIELDS, SearchQuery, scan
from .search_db import database_search

__all__ = ["DESCRIPTION_CHARS", "SearchQuery", "search", "summary_line"]

DESCRIPTION_CHARS = 300


def summary_line(entries: list[IndexEntry]) -> dict[str, Any] | None:
    """The search summary of one name from all its entries (None when every version is yanked)."""
    live = [e for e in entries if not e.is_yanked]
    if not live:
        return None
    finals = [e for e in live if not e.parsed_version.is_prerelease]
    latest = max(finals or live, key=lambda e: e.parsed_version)
    m = latest.raw_manifest
    config = m.get("adapter", {}).get("config", {})
    base = m.get("base_model", {})
    return {
        "name": latest.name,
        "version": latest.version,
        "versions": [e.version for e in sorted(live, key=lambda e: e.parsed_version)],
        "description": " ".join(m.get("description", "").split())[:DESCRIPTION_CHARS],
        "task": m.get("task", {}).get("name", ""),
        "task_type": m.get("task", {}).get("type", ""),
        "dataset": m.get("task", {}).get("dataset", ""),
        "method": m.get("adapter", {}).get("method", ""),
        "variant": config.get("variant", "") if isinstance(config, dict) else "",
        "base_model": base.get("id", ""),
        **{k: base[k] for k in SHAPE_FIELDS if k in base},
        "license": m.get("license", ""),
    }


def search(index: Index, query: SearchQuery, limit: int | None = 50, *, engine: str = "auto",
           cache_root: Path | None = None) -> list[dict[str, Any]]:
    """Rows of the summary that match, best first (the order :mod:`.scoring` defines).

    ``engine``: ``"auto"`` uses the cached SQLite database for a summary of 1 MiB or more and the linear
    scan below that; ``"database"`` always builds/uses the database (falling back to the scan only when it
    cannot: no FTS5, an unwritable cache); ``"scan"`` never touches a database. Every engine answers the same.
    ``cache_root``: the cache the database lives in (default: ``ADAPTERHUB_CACHE``).
    """
    if engine not in ("auto", "database", "scan"):
        raise ValueError(f"unknown search engine {engine!r}")
    if engine != "scan":
        rows = database_search(index, query, limit, force=engine == "database", cache_root=cache_root)
        if rows is not None:
            return rows
    return scan(index.search_lines(), f"{index.location}/{SEARCH_FILE}", query, limit)
