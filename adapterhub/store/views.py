"""Per-adapter views: ``adapters/<name>/<version>/`` holding hard links to verified blobs.

A view is assembled in a temp directory next to its final place (links, ``adapterhub.json`` and a
small ``.adapterhub-view.json`` record), then renamed into place in one step. Only blobs are made
durable (fsync); a view is cheap to rebuild from them, and one a crash left incomplete is: its
record is unreadable, or its ``adapterhub.json`` no longer hashes to what the record says. Directory renames do
not replace a non-empty directory, so when several processes publish the same view the first one
wins and the others keep its result. A reader that sees ``<version>/`` sees it complete.

The record says which manifest the view was built for (its digest), which blobs it holds and each
file's :class:`~adapterhub.store.reuse.Stamp` when its bytes were last verified, so a warm pull and gc
read one small JSON file instead of re-validating a manifest, and a warm pull can tell which files
must be hashed again (see :mod:`adapterhub.store.reuse`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import stat
import time
from collections.abc import Iterator, Mapping
from dataclasses import field
from pathlib import Path
from typing import NamedTuple

from ..errors import AdapterHubError
from ..fileio import make_read_only
from ..jsonio import dumps_pretty, loads_strict
from ..manifest import MANIFEST_FILENAME, FileEntry, Manifest, manifest_to_dict
from ..paths import safe_join
from ..records import frozen_record
from .layout import VIEW_MARKER, CacheLayout
from .reuse import Stamp, check_file, hash_file, open_regular

VIEW_FORMAT = 1


class BlobMissingError(AdapterHubError):
    """A blob vanished between being found and being linked (gc ran); the pull fetches it again."""

    def __init__(self, sha256: str, what: str = "disappeared while building a view") -> None:
        self.sha256 = sha256
        super().__init__(f"blob {sha256} {what}")


class BlobChangedError(BlobMissingError):
    """The blob under its name is no longer the file this pull verified; the pull checks it again."""

    def __init__(self, sha256: str) -> None:
        super().__init__(sha256, "changed between its check and its link into a view")


@frozen_record
class ViewRecord:
    """What a view was built from (``.view.json``): the manifest's digest, the files it links, their stat stamps."""

    name: str
    version: str
    manifest_digest: str
    files: tuple[FileEntry, ...]
    derived_from: str | None = None
    stamps: Mapping[str, Stamp] = field(default_factory=dict, compare=False)
    """Per file path: its stat when its bytes were last hashed (missing: hash it next time)."""
    manifest_sha256: str | None = field(default=None, compare=False)
    """sha256 of the view's ``adapterhub.json`` as written (None in views made before it was kept)."""

    def to_json(self) -> dict:
        return {"format": VIEW_FORMAT, "name": self.name, "version": self.version,
                "manifest_digest": self.manifest_digest, "derived_from": self.derived_from,
                "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
                "stamps": {path: stamp.to_json() for path, stamp in sorted(self.stamps.items())},
                "manifest_sha256": self.manifest_sha256}


def read_record(view_dir: Path) -> ViewRecord | None:
    """The view's record, or None if missing or unreadable (then the view is not trusted)."""
    try:
        data = loads_strict((view_dir / VIEW_MARKER).read_bytes(), str(view_dir / VIEW_MARKER))
        if data.get("format") != VIEW_FORMAT:
            return None
        files = tuple(FileEntry(f["path"], int(f["size"]), f["sha256"]) for f in data["files"])
        raw_stamps = data.get("stamps") or {}
        stamps = {p: st for p, v in raw_stamps.items() if (st := Stamp.from_json(v)) is not None}
        return ViewRecord(data["name"], data["version"], data["manifest_digest"], files, data.get("derived_from"),
                          stamps, data.get("manifest_sha256"))
    except (OSError, AdapterHubError, KeyError, TypeError, ValueError, AttributeError):
        return None


def rewrite_record(view_dir: Path, record: ViewRecord, owner: str) -> None:
    """Replace a published view's record (new stamps after a re-hash); best effort, atomic for readers."""
    temp = view_dir / f".{VIEW_MARKER}~{owner}.tmp"
    try:
        _write_json(temp, record.to_json())
        os.replace(temp, view_dir / VIEW_MARKER)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp)


def view_is_intact(view_dir: Path, record: ViewRecord) -> bool:
    """Cheap completeness check (every file a regular file of its size); hashes are ``verify``'s job."""
    try:
        if not stat.S_ISREG(os.lstat(view_dir / MANIFEST_FILENAME).st_mode):
            return False
        for entry in record.files:
            st = os.lstat(view_dir / entry.path)
            if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
                return False
    except OSError:
        return False
    return True


class ViewCheck(NamedTuple):
    """A warm pull's look at a view: good or not, how many files it hashed, the stamps now."""

    ok: bool
    hashed: int
    record: ViewRecord
    problem: str | None = None


def check_view(view_dir: Path, record: ViewRecord, *, limit: int) -> ViewCheck:
    """Check each file of a view as :mod:`adapterhub.store.reuse` describes (``limit``: re-hash size)."""
    hashed = 0
    stamps = dict(record.stamps)
    try:
        if record.manifest_sha256 is not None:
            if hash_file(view_dir / MANIFEST_FILENAME)[0] != record.manifest_sha256:
                return ViewCheck(False, 0, record, f"{MANIFEST_FILENAME} was changed")
        elif not stat.S_ISREG(os.lstat(view_dir / MANIFEST_FILENAME).st_mode):
            return ViewCheck(False, 0, record, f"{MANIFEST_FILENAME} is not a regular file")
    except OSError:
        return ViewCheck(False, 0, record, f"{MANIFEST_FILENAME} is missing or not a regular file")
    for entry in record.files:
        got = check_file(view_dir / entry.path, entry.sha256, entry.size, record.stamps.get(entry.path), limit=limit)
        hashed += got.hashed
        if not got.ok:
            return ViewCheck(False, hashed, record, f"{entry.path} no longer matches its sha256 and size")
        if got.stamp is not None:
            stamps[entry.path] = got.stamp
    return ViewCheck(True, hashed, dataclasses.replace(record, stamps=stamps))


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    """Same inode with the same size and mtime: the bytes we verified (ctime moves with every link)."""
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns)


def _link_or_copy(blob: Path, target: Path, verified: os.stat_result, sha256: str) -> Stamp:
    """Put the verified blob at ``target``: a hard link (which must land on the very inode we
    verified, so a blob swapped for a symlink or another file is caught), else a checked copy."""
    import shutil  # here: a warm pull never removes or copies trees (start-up cost)

    for attempt in range(5):
        try:
            os.link(blob, target, follow_symlinks=False)
        except FileNotFoundError:
            if not os.path.lexists(blob):
                raise BlobMissingError(blob.name) from None
            if attempt == 4:
                raise
            # The inode we looked up was replaced under us (link count 0); the name is live again.
            continue
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                raise
            break
        st = os.lstat(target)
        if not _same_file(st, verified):
            raise BlobChangedError(sha256)
        return Stamp.of(st)
    try:
        source, st = open_regular(blob)
    except FileNotFoundError:
        raise BlobMissingError(blob.name) from None
    except OSError:
        raise BlobChangedError(sha256) from None
    with source, open(target, "wb") as out:
        if not _same_file(st, verified):
            raise BlobChangedError(sha256)
        shutil.copyfileobj(source, out, 1 << 20)
    make_read_only(target)
    if hash_file(target) != (sha256, verified.st_size):
        raise BlobChangedError(sha256)
    return Stamp.of(os.lstat(target))


def _make_temp_dir(temp: Path) -> None:
    """Create ``temp`` and its parent; a concurrent ``cache gc`` or ``cache rm`` may remove the empty
    parent between the two steps, so try again when that happens."""
    import shutil  # here: a warm pull never removes or copies trees (start-up cost)

    shutil.rmtree(temp, ignore_errors=True)
    for attempt in range(10):
        try:
            temp.mkdir(parents=True)
            return
        except FileNotFoundError:
            if attempt == 9:
                raise


def publish_view(layout: CacheLayout, owner: str, manifest: Manifest, record: ViewRecord,
                 verified: Mapping[str, os.stat_result]) -> tuple[Path, ViewRecord]:
    """Assemble the view for ``record`` from blobs and move it into place atomically.

    ``verified``: per sha256, the stat of the blob as this pull verified it; each link must land on
    that inode. Returns the view and the record as written (with each file's stamp).
    """
    import shutil  # here: a warm pull never removes or copies trees (start-up cost)

    final = layout.view(record.name, record.version)
    temp = layout.view_temp(record.name, record.version, owner)
    _make_temp_dir(temp)
    try:
        stamps: dict[str, Stamp] = {}
        for entry in record.files:
            target = safe_join(temp, entry.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            stamps[entry.path] = _link_or_copy(layout.blob(entry.sha256), target, verified[entry.sha256],
                                               entry.sha256)
        document = dumps_pretty(manifest_to_dict(manifest)).encode("utf-8")
        (temp / MANIFEST_FILENAME).write_bytes(document)
        record = dataclasses.replace(record, stamps=stamps, manifest_sha256=hashlib.sha256(document).hexdigest())
        _write_json(temp / VIEW_MARKER, record.to_json())
        for _ in range(5):
            try:
                os.rename(temp, final)
                return final, record
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            existing = read_record(final)
            if existing is not None and existing.manifest_digest == record.manifest_digest \
                    and existing.files == record.files and view_is_intact(final, existing):
                shutil.rmtree(temp, ignore_errors=True)
                return final, existing  # another process published the same view first
            retire_view(layout, record.name, record.version, owner)
        raise OSError(f"could not publish {final}: it keeps being replaced by other processes")
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def retire_view(layout: CacheLayout, name: str, version: str, owner: str) -> bool:
    """Remove a view: rename it aside first (readers never see half a directory), then delete."""
    import shutil  # here: a warm pull never removes or copies trees (start-up cost)

    final = layout.view(name, version)
    aside = final.parent / f".{version}~{owner}.old"
    try:
        os.rename(final, aside)
    except FileNotFoundError:
        return False
    shutil.rmtree(aside, ignore_errors=True)
    with contextlib.suppress(OSError):
        final.parent.rmdir()  # only succeeds when no other version is left
    return True


def _write_json(path: Path, data: dict) -> None:
    """Write a view's JSON without fsync: a view is rebuilt from durable blobs whenever its record is
    unreadable or its ``adapterhub.json`` does not hash to what the record says (a crash may leave
    either empty), so syncing them would only cost time on every cold pull."""
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(dumps_pretty(data))


def iter_views(layout: CacheLayout) -> Iterator[tuple[str, str, Path]]:
    """``(name, version, path)`` of every published view (temp and retired ones skipped)."""
    try:
        names = sorted(os.scandir(layout.adapters), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for name_entry in names:
        if name_entry.name.startswith(".") or not name_entry.is_dir(follow_symlinks=False):
            continue
        try:
            versions = sorted(os.scandir(name_entry.path), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        for v in versions:
            if not v.name.startswith(".") and v.is_dir(follow_symlinks=False):
                yield name_entry.name, v.name, Path(v.path)


def write_lease(layout: CacheLayout, owner: str, hashes: set[str]) -> Path:
    """Tell gc which blobs this process is about to use (written before we look for them)."""
    layout.leases.mkdir(parents=True, exist_ok=True)
    path = layout.lease(owner)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "created": time.time(), "sha256": sorted(hashes)}))
    os.replace(tmp, path)
    return path
