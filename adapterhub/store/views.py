"""Per-adapter views: ``adapters/<name>/<version>/`` holding hard links to verified blobs.

A view is assembled in a temp directory next to its final place (links, ``adapterhub.json`` and a
small ``.adapterhub-view.json`` record), then renamed into place in one step. Directory renames do
not replace a non-empty directory, so when several processes publish the same view the first one
wins and the others keep its result. A reader that sees ``<version>/`` sees it complete.

The record says which manifest the view was built for (its digest) and which blobs it holds, so a
warm pull and gc read one small JSON file instead of re-validating a manifest.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import AdapterHubError
from ..fileio import make_read_only
from ..jsonio import dumps_pretty, loads_strict
from ..manifest import MANIFEST_FILENAME, FileEntry, Manifest, manifest_to_dict
from ..paths import safe_join
from .layout import VIEW_MARKER, CacheLayout
from .writer import fsync_dir

VIEW_FORMAT = 1


class BlobMissingError(AdapterHubError):
    """A blob vanished between being found and being linked (gc ran); the pull fetches it again."""

    def __init__(self, sha256: str) -> None:
        self.sha256 = sha256
        super().__init__(f"blob {sha256} disappeared while building a view")


@dataclass(frozen=True)
class ViewRecord:
    name: str
    version: str
    manifest_digest: str
    files: tuple[FileEntry, ...]
    derived_from: str | None = None

    def to_json(self) -> dict:
        return {"format": VIEW_FORMAT, "name": self.name, "version": self.version,
                "manifest_digest": self.manifest_digest, "derived_from": self.derived_from,
                "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files]}


def read_record(view_dir: Path) -> ViewRecord | None:
    """The view's record, or None if missing or unreadable (then the view is not trusted)."""
    try:
        data = loads_strict((view_dir / VIEW_MARKER).read_bytes(), str(view_dir / VIEW_MARKER))
        if data.get("format") != VIEW_FORMAT:
            return None
        files = tuple(FileEntry(f["path"], int(f["size"]), f["sha256"]) for f in data["files"])
        return ViewRecord(data["name"], data["version"], data["manifest_digest"], files, data.get("derived_from"))
    except (OSError, AdapterHubError, KeyError, TypeError, ValueError, AttributeError):
        return None


def view_is_intact(view_dir: Path, record: ViewRecord) -> bool:
    """Cheap completeness check (every file present with its size); hashes are ``verify``'s job."""
    try:
        if not (view_dir / MANIFEST_FILENAME).is_file():
            return False
        for entry in record.files:
            st = os.stat(view_dir / entry.path)
            if st.st_size != entry.size:
                return False
    except OSError:
        return False
    return True


def _link_or_copy(blob: Path, target: Path) -> None:
    for attempt in range(5):
        try:
            os.link(blob, target)
            return
        except FileNotFoundError:
            if not blob.exists():
                raise BlobMissingError(blob.name) from None
            if attempt == 4:
                raise
            # The inode we looked up was replaced under us (link count 0); the name is live again.
            continue
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                raise
            break
    try:
        shutil.copyfile(blob, target)
    except FileNotFoundError:
        raise BlobMissingError(blob.name) from None
    make_read_only(target)


def publish_view(layout: CacheLayout, owner: str, manifest: Manifest, record: ViewRecord) -> Path:
    """Assemble the view for ``record`` from blobs and move it into place atomically."""
    final = layout.view(record.name, record.version)
    temp = layout.view_temp(record.name, record.version, owner)
    final.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir()
    try:
        for entry in record.files:
            target = safe_join(temp, entry.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(layout.blob(entry.sha256), target)
        _write_json(temp / MANIFEST_FILENAME, manifest_to_dict(manifest))
        _write_json(temp / VIEW_MARKER, record.to_json())
        fsync_dir(temp)
        for _ in range(5):
            try:
                os.rename(temp, final)
                fsync_dir(final.parent)
                return final
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
            existing = read_record(final)
            if existing is not None and existing.manifest_digest == record.manifest_digest \
                    and existing.files == record.files and view_is_intact(final, existing):
                shutil.rmtree(temp, ignore_errors=True)
                return final  # another process published the same view first
            retire_view(layout, record.name, record.version, owner)
        raise OSError(f"could not publish {final}: it keeps being replaced by other processes")
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def retire_view(layout: CacheLayout, name: str, version: str, owner: str) -> bool:
    """Remove a view: rename it aside first (readers never see half a directory), then delete."""
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
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(dumps_pretty(data))
        fh.flush()
        os.fsync(fh.fileno())


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
