"""Search over an index's summary file (``search-index.jsonl``: one line per name).

The summary holds what a search needs (latest version, description, task, method, base model), so a
search reads one file rather than every entry, locally or over HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..jsonio import iter_json_lines
from .entries import IndexEntry
from .index import Index

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
        "base_model": m.get("base_model", {}).get("id", ""),
        "license": m.get("license", ""),
    }


@dataclass(frozen=True)
class SearchQuery:
    text: str = ""
    task: str | None = None
    method: str | None = None
    base_model: str | None = None

    def needles(self) -> list[str]:
        """Lower-case substrings every matching line must contain (for the pre-filter)."""
        out = [t for t in self.text.lower().split() if t.isascii() and "\"" not in t and "\\" not in t]
        out += [v.lower() for v in (self.task, self.method, self.base_model)
                if v and v.isascii() and "\"" not in v and "\\" not in v]
        return out

    def score(self, row: dict[str, Any]) -> int:
        """0 = no match; higher = better."""
        low = lambda v: str(v or "").lower()  # noqa: E731
        if self.task and self.task.lower() not in (low(row.get("task")), low(row.get("task_type")), low(row.get("dataset"))):
            return 0
        if self.method and self.method.lower() not in (low(row.get("method")), low(row.get("variant"))):
            return 0
        if self.base_model and self.base_model.lower() != low(row.get("base_model")):
            return 0
        terms = self.text.lower().split()
        if not terms:
            return 1
        name = low(row.get("name"))
        haystack = " ".join(low(row.get(k)) for k in ("name", "description", "task", "task_type", "dataset",
                                                        "method", "variant", "base_model"))
        score = 0
        for term in terms:
            if term not in haystack:
                return 0
            score += 10 if term == name else 5 if term in name else 1
        return score


def search(index: Index, query: SearchQuery, limit: int | None = 50) -> list[dict[str, Any]]:
    """Rows of the summary that match, best first (ties by name)."""
    data = index.search_lines()
    if not data:
        return []
    scored = []
    needles = [t.encode() for t in query.needles()]
    if needles:  # cheap byte pre-filter: parse only lines that contain every needle
        data = b"\n".join(line for line in data.split(b"\n") if all(n in line.lower() for n in needles))
    for _, row in iter_json_lines(data, f"{index.location}/search-index.jsonl"):
        s = query.score(row)
        if s:
            scored.append((-s, row["name"], row))
    scored.sort(key=lambda t: (t[0], t[1]))
    rows = [r for _, _, r in scored]
    return rows if limit is None else rows[:limit]
