"""``verify``: re-hash what the cache holds, and evict what no longer matches.

Blobs were verified when written; this catches what happened since (disk errors, a user editing a
file in a view, which is the same inode as the blob). A corrupted blob is removed together with every
view that holds it, so the next ``pull`` fetches it again instead of serving bad bytes. Views whose
files are copies (no hard links on this file system) are hashed themselves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .layout import CacheLayout, is_sha256, new_owner
from .reuse import NotRegularFileError, Stamp, hash_file
from .views import iter_views, read_record, retire_view, rewrite_record

NOT_REGULAR = ("(not a regular file)", -1)


@dataclass
class VerifyReport:
    checked_files: int = 0
    checked_bytes: int = 0
    views: int = 0
    problems: list[str] = field(default_factory=list)
    evicted_blobs: list[str] = field(default_factory=list)
    evicted_views: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {"ok": self.ok, "checked_files": self.checked_files, "checked_bytes": self.checked_bytes,
                "views": self.views, "problems": self.problems, "evicted_blobs": self.evicted_blobs,
                "evicted_views": self.evicted_views}


HELPER_AT_LEAST = 4 << 20
"""Files from this size get a helper thread of their own when several are verified together."""


def _hash_many(paths: list[Path]) -> dict[Path, tuple[str, int] | None]:
    """sha256 of several files side by side (hashlib releases the GIL on large updates): the largest and
    every small file on the calling thread (a thread start costs more than hashing a config), the other
    large ones on helper threads."""
    def one(p: Path) -> tuple[str, int] | None:
        try:
            return hash_file(p)
        except NotRegularFileError:
            return NOT_REGULAR  # a symlink or other non-file where a verified file belongs
        except OSError:
            return None

    def size(p: Path) -> int:
        try:
            return os.lstat(p).st_size
        except OSError:
            return 0

    sizes = {p: size(p) for p in paths}
    by_size = sorted(paths, key=sizes.__getitem__, reverse=True)
    beside = [p for p in by_size[1:] if sizes[p] >= HELPER_AT_LEAST]
    hashed: dict[Path, tuple[str, int] | None] = {}
    if not beside:
        return {p: one(p) for p in paths}
    with ThreadPoolExecutor(max_workers=min(3, os.cpu_count() or 1, len(beside))) as pool:
        pending = pool.map(one, beside)
        hashed.update((p, one(p)) for p in by_size if p not in beside)
        hashed.update(zip(beside, pending, strict=True))
    return {p: hashed[p] for p in paths}


def verify(name: str | None = None, *, cache_dir: str | Path | None = None) -> VerifyReport:
    """Re-hash the blobs of ``name``'s views (every blob when None) and evict corrupted ones."""
    layout = CacheLayout.default(cache_dir)
    report = VerifyReport()
    owner = new_owner()
    views = [(n, v, p) for n, v, p in iter_views(layout) if name is None or n == name]
    records = {}
    for n, v, p in views:
        rec = read_record(p)
        if rec is None:
            report.problems.append(f"{n} {v}: view has no readable record; evicted")
            retire_view(layout, n, v, owner)
            report.evicted_views.append(f"{n}=={v}")
        else:
            records[(n, v, p)] = rec
    report.views = len(records)
    expected: dict[str, int] = {}
    for rec in records.values():
        for f in rec.files:
            expected[f.sha256] = f.size
    if name is None and layout.blobs.is_dir():
        for entry in os.scandir(layout.blobs):
            if is_sha256(entry.name):
                expected.setdefault(entry.name, -1)
    blob_paths = {h: layout.blob(h) for h in expected if os.path.lexists(layout.blob(h))}
    hashes = _hash_many(list(blob_paths.values()))
    bad: set[str] = set()
    for sha, path in blob_paths.items():
        got = hashes[path]
        if got is None:
            continue
        report.checked_files += 1
        report.checked_bytes += got[1]
        if got[0] != sha or (expected[sha] >= 0 and got[1] != expected[sha]):
            bad.add(sha)
            report.problems.append(f"blob {sha} is corrupted (hashes to {got[0]}, {got[1]} bytes); evicted")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            report.evicted_blobs.append(sha)
    for (n, v, p), rec in records.items():
        why = _view_problem(layout, p, rec, bad, blob_paths, report)
        if why:
            report.problems.append(f"{n} {v}: {why}; evicted (the next pull fetches it again)")
            retire_view(layout, n, v, owner)
            report.evicted_views.append(f"{n}=={v}")
        else:
            _restamp(p, rec, owner)
    return report


def _restamp(view: Path, rec, owner: str) -> None:
    """Record each file's stat now that its bytes were hashed, so warm pulls trust it again."""
    try:
        stamps = {f.path: Stamp.of(os.lstat(view / f.path)) for f in rec.files}
    except OSError:
        return
    if stamps != dict(rec.stamps):
        rewrite_record(view, dataclasses.replace(rec, stamps=stamps), owner)


def _view_problem(layout: CacheLayout, view: Path, rec, bad: set[str], blob_paths: dict[str, Path],
                  report: VerifyReport) -> str | None:
    for f in rec.files:
        target = view / f.path
        try:
            st = os.lstat(target)
        except OSError:
            return f"{f.path} is missing"
        if f.sha256 in bad:
            return f"{f.path} holds corrupted blob {f.sha256[:12]}…"
        blob = blob_paths.get(f.sha256)
        if blob is not None:
            with contextlib.suppress(OSError):
                bst = os.lstat(blob)
                if (bst.st_ino, bst.st_dev) == (st.st_ino, st.st_dev):
                    continue  # same inode as a blob we just hashed
        got = _hash_many([target])[target]
        if got is None:
            return f"{f.path} is unreadable"
        report.checked_files += 1
        report.checked_bytes += got[1]
        if got != (f.sha256, f.size):
            return f"{f.path} does not match its sha256"
    return None
