"""Listing and removing cached adapters (``cache ls`` / ``cache rm``); blobs go with ``gc``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidVersionError
from ..names import parse_requirement
from .layout import CacheLayout, is_sha256, new_owner
from .views import iter_views, read_record, retire_view, view_is_intact


@dataclass(frozen=True)
class CachedAdapter:
    name: str
    version: str
    path: Path
    files: int
    size: int
    intact: bool

    def to_json(self) -> dict:
        return {"name": self.name, "version": self.version, "path": str(self.path), "files": self.files,
                "size": self.size, "intact": self.intact}


def list_cached(name: str | None = None, *, cache_dir: str | Path | None = None) -> list[CachedAdapter]:
    """Every view in the cache (or those of ``name``), oldest version first."""
    from packaging.version import InvalidVersion, Version

    layout = CacheLayout.default(cache_dir)
    out = []
    for n, v, path in iter_views(layout):
        if name is not None and n != name:
            continue
        rec = read_record(path)
        if rec is None:
            out.append(CachedAdapter(n, v, path, 0, 0, False))
        else:
            out.append(CachedAdapter(n, v, path, len(rec.files), sum(f.size for f in rec.files),
                                     view_is_intact(path, rec)))

    def key(a: CachedAdapter):
        try:
            return (a.name, 0, Version(a.version), "")
        except InvalidVersion:
            return (a.name, 1, Version("0"), a.version)

    return sorted(out, key=key)


def blob_usage(*, cache_dir: str | Path | None = None) -> tuple[int, int]:
    """(number of blobs, total bytes) in the cache."""
    layout = CacheLayout.default(cache_dir)
    count = size = 0
    try:
        for e in os.scandir(layout.blobs):
            if is_sha256(e.name):
                count += 1
                size += e.stat().st_size
    except FileNotFoundError:
        pass
    return count, size


def remove_cached(requirement: str, *, cache_dir: str | Path | None = None) -> list[CachedAdapter]:
    """Remove the views matching ``NAME[SPEC]``; their blobs become garbage for :func:`gc`."""
    req = parse_requirement(requirement)
    layout = CacheLayout.default(cache_dir)
    owner = new_owner()
    removed = []
    for item in list_cached(req.name, cache_dir=cache_dir):
        try:
            matches = req.allows(item.version)
        except InvalidVersionError:
            matches = not req.spec
        if matches and retire_view(layout, item.name, item.version, owner):
            removed.append(item)
    return removed
