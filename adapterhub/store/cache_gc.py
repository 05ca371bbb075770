"""``cache gc``: remove unreferenced blobs and abandoned temp files while other processes pull.

Protocol (pulls take no lock; correctness must not depend on one):

- A pull writes a *lease* (``leases/<owner>.json``, the blobs it needs) before it looks for blobs,
  and removes it after its view is published. A published view's record names its blobs.
- gc takes an advisory lock (two gcs do not race each other; pulls ignore it), then:
  1. removes temp files, temp views and leases whose owner process is dead (same host) or that
     nobody touched for ``max_age`` seconds (other hosts, pid reuse), and empty name directories
     older than ``EMPTY_DIR_GRACE_SECONDS`` (a younger one may be a pull's, about to hold a view);
  2. computes the referenced set (view records + live leases), renames every other blob aside
     (``.<hex>~<owner>.gc``; an atomic step, so a pull either finds the blob or does not);
  3. computes the referenced set *again*, renames back any blob that became referenced meanwhile,
     and deletes the rest;
  4. empties the schema-validation memo (``validated/``, :mod:`adapterhub.schema`), so it holds only
     what was read since the last gc: a missing marker only means one more validation.

A pull that raced step 2 finds its blob missing when linking, and simply fetches it again; a pull
that leased a blob before step 3 keeps it. Blobs are never deleted while a live lease names them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..jsonio import loads_strict
from ..schema import MEMO_DIRNAME
from .layout import (
    EMPTY_DIR_GRACE_SECONDS,
    STALE_AFTER_SECONDS,
    CacheLayout,
    is_sha256,
    is_stale,
    new_owner,
    parse_owner,
    parse_temp_name,
)
from .views import iter_views, read_record


@dataclass
class GcReport:
    removed_blobs: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    removed_temp: list[str] = field(default_factory=list)
    kept_blobs: int = 0

    def to_json(self) -> dict:
        return {"removed_blobs": self.removed_blobs, "freed_bytes": self.freed_bytes,
                "removed_temp": self.removed_temp, "kept_blobs": self.kept_blobs}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def live_leases(layout: CacheLayout, *, max_age: float, now: float) -> set[str]:
    """Blobs named by leases whose owner may still be running."""
    held: set[str] = set()
    try:
        entries = list(os.scandir(layout.leases))
    except FileNotFoundError:
        return held
    for e in entries:
        if not e.name.endswith(".json"):
            continue
        owner = e.name[: -len(".json")]
        if is_stale(Path(e.path), owner, now=now, max_age=max_age):
            continue
        try:
            data = loads_strict(Path(e.path).read_bytes(), e.path)
            held.update(h for h in data.get("sha256", []) if isinstance(h, str))
        except Exception:  # a lease being replaced or garbled: keep everything it might name
            held.add("*")
    return held


def referenced(layout: CacheLayout, *, max_age: float, now: float) -> tuple[set[str], set[str]]:
    """(blob hashes in use, archive hashes of derived records in use)."""
    blobs: set[str] = set()
    derived: set[str] = set()
    for _, _, path in iter_views(layout):
        rec = read_record(path)
        if rec is not None:
            blobs.update(f.sha256 for f in rec.files)
            if rec.derived_from:
                derived.add(rec.derived_from)
    return blobs | live_leases(layout, max_age=max_age, now=now), derived


def _sweep_temp(layout: CacheLayout, report: GcReport, *, max_age: float, now: float) -> None:
    dirs = [layout.partials, layout.blobs, layout.tmp, layout.leases]  # blobs: partials of caches made before
    with contextlib.suppress(FileNotFoundError):
        dirs += [Path(e.path) for e in os.scandir(layout.adapters) if e.is_dir(follow_symlinks=False)]
    for d in dirs:
        try:
            entries = list(os.scandir(d))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for e in entries:
            path = Path(e.path)
            parsed = parse_temp_name(e.name)
            if parsed is not None:
                owner_tag, kind = parsed[1], parsed[2]
                if kind == "gc":
                    continue  # handled by the blob pass
            elif d == layout.leases and e.name.endswith((".json", ".tmp")):
                owner_tag = e.name.rsplit(".", 1)[0]
            elif d == layout.tmp and "~" in e.name:
                owner_tag = e.name.split("~", 1)[1]
            else:
                continue
            if is_stale(path, owner_tag, now=now, max_age=max_age):
                _remove(path)
                report.removed_temp.append(str(path.relative_to(layout.root)))
    with contextlib.suppress(FileNotFoundError):
        for e in os.scandir(layout.adapters):
            with contextlib.suppress(OSError):
                if now - e.stat(follow_symlinks=False).st_mtime > EMPTY_DIR_GRACE_SECONDS:
                    os.rmdir(e.path)  # only empty name directories go, and not brand-new ones


def gc(*, cache_dir: str | Path | None = None, max_age: float = STALE_AFTER_SECONDS) -> GcReport:
    """Collect garbage as the module docstring describes; safe next to running pulls."""
    from filelock import FileLock

    layout = CacheLayout.default(cache_dir)
    report = GcReport()
    if not layout.root.is_dir():
        return report
    owner = new_owner()
    with FileLock(str(layout.gc_lock)):
        now = time.time()
        _sweep_temp(layout, report, max_age=max_age, now=now)
        _restore_orphaned_gc_files(layout, max_age=max_age, now=now)
        used, used_derived = referenced(layout, max_age=max_age, now=now)
        if "*" in used:
            return report  # an unreadable lease: collect nothing this time
        aside: dict[str, Path] = {}
        with contextlib.suppress(FileNotFoundError):
            for e in os.scandir(layout.blobs):
                if is_sha256(e.name) and e.name not in used:
                    tmp = layout.blobs / f".{e.name}~{owner}.gc"
                    with contextlib.suppress(FileNotFoundError):
                        os.rename(e.path, tmp)
                        aside[e.name] = tmp
                elif is_sha256(e.name):
                    report.kept_blobs += 1
        used_again, used_derived = referenced(layout, max_age=max_age, now=time.time())
        for sha, tmp in aside.items():
            if sha in used_again or "*" in used_again:
                _put_back(layout, sha, tmp)
                report.kept_blobs += 1
            else:
                with contextlib.suppress(FileNotFoundError):
                    report.freed_bytes += tmp.stat().st_size
                    tmp.unlink()
                report.removed_blobs.append(sha)
        with contextlib.suppress(FileNotFoundError):
            for e in os.scandir(layout.derived):
                stem = e.name[: -len(".json")] if e.name.endswith(".json") else None
                if stem and is_sha256(stem) and stem not in used_derived:
                    _remove(Path(e.path))
                elif stem is None and now - e.stat().st_mtime > 3600:
                    _remove(Path(e.path))  # an interrupted atomic write
        _remove(layout.root / MEMO_DIRNAME)
    return report


def _put_back(layout: CacheLayout, sha: str, tmp: Path) -> None:
    with contextlib.suppress(FileExistsError):
        os.link(tmp, layout.blob(sha))  # fails if a pull re-created the blob meanwhile: fine
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()


def _restore_orphaned_gc_files(layout: CacheLayout, *, max_age: float, now: float) -> None:
    """A gc that died between renaming a blob aside and deciding: put the blob back, decide again."""
    with contextlib.suppress(FileNotFoundError):
        for e in os.scandir(layout.blobs):
            parsed = parse_temp_name(e.name)
            if parsed and parsed[2] == "gc" and is_sha256(parsed[0]):
                owner = parse_owner(parsed[1])
                if owner is not None and (owner.is_dead() or is_stale(Path(e.path), parsed[1], now=now,
                                                                       max_age=max_age)):
                    _put_back(layout, parsed[0], Path(e.path))
