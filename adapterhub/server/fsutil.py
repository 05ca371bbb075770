"""Crash-safe file writes and per-path locks for the server's storage.

Every file the server creates appears in one step: bytes go to a temp file in ``<root>/tmp`` (same
filesystem), are fsynced, then ``os.replace``d into place. Readers therefore never see half a blob,
half a commit or half a ref, and need no locks. Writers that read-modify-write (refs) take a lock that
is both a thread lock and, where the OS has it, an ``flock`` so two server processes on one root
also serialise.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from adapterhub.fileio import create_temp_file

try:  # POSIX only; on other systems the thread lock alone serialises one process.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def fsync_dir(path: Path) -> None:
    """Persist a directory entry (a rename) where the OS allows opening directories."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def temp_file(tmp_dir: Path, *, prefix: str = ".tmp-") -> Iterator[tuple[IO[bytes], Path]]:
    """A temp file in ``tmp_dir`` that is removed unless the caller renamed it away."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, path = create_temp_file(tmp_dir, prefix=prefix, suffix="")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle, path
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def commit_temp(handle: IO[bytes], tmp_path: Path, final: Path) -> None:
    """Flush + fsync ``handle`` and atomically move ``tmp_path`` to ``final``."""
    handle.flush()
    os.fsync(handle.fileno())
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp_path, final)
    fsync_dir(final.parent)


def atomic_write_bytes(final: Path, data: bytes, tmp_dir: Path) -> None:
    """Write ``data`` to ``final`` so that readers see the old file or the new one, never a mix."""
    with temp_file(tmp_dir) as (handle, tmp_path):
        handle.write(data)
        commit_temp(handle, tmp_path, final)


class PathLocks:
    """Hands out one lock per path: a thread lock plus an ``flock`` on ``<path>``."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[Path, threading.Lock] = {}

    @contextlib.contextmanager
    def hold(self, lock_file: Path) -> Iterator[None]:
        with self._guard:
            thread_lock = self._locks.setdefault(lock_file, threading.Lock())
        with thread_lock:
            if fcntl is None:  # pragma: no cover
                yield
                return
            lock_file.parent.mkdir(parents=True, exist_ok=True)
            with open(lock_file, "a+b") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
