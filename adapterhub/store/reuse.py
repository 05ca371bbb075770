"""Checking cached bytes before a pull uses them again.

A blob was verified when it was written, but the cache is an ordinary directory: a view file (the
same inode as its blob) can be edited in place, a blob can be truncated or replaced by a symlink.
Reusing cached bytes therefore follows three rules:

- **Links are never followed.** Blobs and view files are opened with ``O_NOFOLLOW`` and must be
  regular files; anything else counts as corrupted.
- **What was not hashed now is only trusted if provably untouched.** A blob that a new view will
  link is hashed again (a cold pull pays for I/O anyway). A warm pull hashes every file of at most
  :func:`rehash_limit` bytes, and a larger one only when its :class:`Stamp` (size, mtime_ns, inode,
  ctime_ns) differs from the one recorded when it was last verified. Writing a file changes its
  mtime and ctime, and nobody but the kernel can set ctime back; replacing a file changes the inode.
  A stamp that changed for a harmless reason (a new hard link to the same blob changes its ctime)
  only costs one re-hash, after which the new stamp is recorded.
- **A bad blob is quarantined.** It is renamed aside (``.<hex>~<owner>.bad``, so no view can link it
  any more) and removed; the pull then fetches it again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, NamedTuple

from ..fileio import sha256_open_file, sha256_stream
from .layout import CacheLayout

DEFAULT_REHASH_LIMIT = 16 << 20
"""Files up to 16 MiB are re-hashed on every warm pull (about 12 ms each at 1.3 GB/s)."""

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)


def rehash_limit() -> int:
    """``ADAPTERHUB_REHASH_LIMIT`` (bytes): warm pulls re-hash files up to this size every time."""
    raw = os.environ.get("ADAPTERHUB_REHASH_LIMIT", "").strip()
    try:
        return max(int(raw), 0) if raw else DEFAULT_REHASH_LIMIT
    except ValueError:
        return DEFAULT_REHASH_LIMIT


class Stamp(NamedTuple):
    """What a file's stat said when its bytes were last hashed."""

    size: int
    mtime_ns: int
    ino: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Stamp:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)

    def to_json(self) -> list[int]:
        return [self.size, self.mtime_ns, self.ino, self.ctime_ns]

    @classmethod
    def from_json(cls, value: object) -> Stamp | None:
        if isinstance(value, list) and len(value) == 4 and all(type(v) is int for v in value):
            return cls(*value)
        return None


class NotRegularFileError(OSError):
    """A cached path is a symlink, directory, FIFO or device instead of a regular file."""


def open_regular(path: Path) -> tuple[BinaryIO, os.stat_result]:
    """Open ``path`` for reading without following a symlink; it must be a regular file."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotRegularFileError(errno.ELOOP, "is a symbolic link", str(path)) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotRegularFileError(errno.EINVAL, "is not a regular file", str(path))
    return os.fdopen(fd, "rb", buffering=0), st


def quarantine(layout: CacheLayout, sha256: str, owner: str) -> None:
    """Take a bad blob out of use: rename it aside (atomic; no new link can reach it), then delete it."""
    aside = layout.blobs / f".{sha256}~{owner}.bad"
    try:
        os.rename(layout.blob(sha256), aside)
    except FileNotFoundError:
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(aside)


def open_blob(layout: CacheLayout, sha256: str, owner: str) -> tuple[BinaryIO, os.stat_result] | None:
    """Blob ``sha256`` opened without following links; None when absent or not a regular file (then
    it is quarantined)."""
    try:
        return open_regular(layout.blob(sha256))
    except FileNotFoundError:
        return None
    except OSError:
        quarantine(layout, sha256, owner)
        return None


Check = Callable[[BinaryIO, int], None]
"""A content check run on a blob that matched its hash (the safetensors header gate)."""


def verified_blob(layout: CacheLayout, sha256: str, size: int, owner: str, *,
                  check: Check | None = None) -> os.stat_result | None:
    """The stat of blob ``sha256`` after hashing it now, or None when there is no good one.

    A blob that is not a regular file, has another size or other bytes is quarantined (and None
    returned, so the caller fetches it). ``check`` runs on a blob whose bytes are right; what it
    raises is the manifest's problem, not the cache's, and propagates.
    """
    opened = open_blob(layout, sha256, owner)
    if opened is None:
        return None
    fh, st = opened
    with fh:
        good = st.st_size == size and sha256_stream(fh, limit=size + 1) == (sha256, size)
        if good and check is not None:
            fh.seek(0)
            check(fh, size)
    if not good:
        quarantine(layout, sha256, owner)
        return None
    return st


class FileCheck(NamedTuple):
    """One view file against its record: right or not, whether it was hashed, its stamp now."""

    ok: bool
    hashed: bool
    stamp: Stamp | None


def check_file(path: Path, sha256: str, size: int, recorded: Stamp | None, *, limit: int) -> FileCheck:
    """Is ``path`` (a view file) still the bytes ``sha256``? Hash it unless it is larger than
    ``limit`` and its stamp is still ``recorded``."""
    try:
        fh, st = open_regular(path)
    except OSError:
        return FileCheck(False, False, None)
    with fh:
        stamp = Stamp.of(st)
        if st.st_size != size:
            return FileCheck(False, False, stamp)
        if size > limit and stamp == recorded:
            return FileCheck(True, False, stamp)
        ok = sha256_stream(fh, limit=size + 1) == (sha256, size)
        return FileCheck(ok, True, stamp)


def hash_file(path: Path, *, limit: int | None = None) -> tuple[str, int]:
    """sha256 hex and byte count of a regular file (or its first ``limit`` bytes); a symlink or
    other non-regular file raises :class:`NotRegularFileError`. A whole large file is read in place
    (:func:`~adapterhub.fileio.sha256_open_file`): these are the cache's files, never rewritten."""
    fh, st = open_regular(path)
    with fh:
        if limit is None:
            return sha256_open_file(fh, st.st_size)
        return sha256_stream(fh, limit=limit)
