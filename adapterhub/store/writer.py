"""The one cache writer: bytes in, a verified blob out, or nothing at all.

Every source streams into a :class:`BlobWriter`. It writes to a temp file owned by this process in
the blob directory, hashes while writing, refuses the first byte past the expected size, and only
after size, sha256 and an optional content check passed does it fsync and ``os.replace`` the file to
``blobs/sha256/<hex>``. Any failure removes the temp file. Readers therefore never see a partial or
unverified blob, without any lock.

A temp file left by a process that died (SIGKILL, power loss) is adopted by the next writer of the
same blob: renamed to the new owner's name (only one process can win that rename), re-hashed, and
resumed from where it stopped.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from ..errors import IntegrityError, SizeLimitError
from ..fileio import make_read_only
from . import lanes
from .layout import CacheLayout, new_owner, parse_owner, parse_temp_name
from .room import full_disk

Validator = Callable[[Path], None]
READ_CHUNK = 1 << 20


def fsync_dir(path: Path) -> None:
    """Persist a rename in ``path`` (best effort: some systems cannot open directories)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _publish_no_replace(temp: Path, final: Path) -> bool:
    """Give ``temp`` the name ``final`` unless another process already published that blob; True
    when ours became the blob.

    Replacing an existing blob would be harmless for readers that open it, but not for a
    concurrent ``link()`` of the old inode: Linux fails that link with ENOENT once the replaced
    inode's link count drops to zero. Blobs are named by their content, so the first one wins and
    later identical copies are dropped (the caller re-checks the winner: it is another process's
    file). ``link`` never replaces; filesystems without hard links fall back to ``os.replace``.
    """
    try:
        os.link(temp, final)
        published = True
    except FileExistsError:
        published = False
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
            raise
        if not os.path.lexists(final):
            os.replace(temp, final)
            return True
        published = False
    os.unlink(temp)
    return published


class _Hasher:
    """sha256 fed in order; large inputs are hashed on a helper thread while the caller keeps reading.

    hashlib releases the GIL for large updates, so hashing a download overlaps with receiving and
    writing it instead of adding to it. Updates stay in order (one worker, FIFO), at most
    ``MAX_PENDING`` chunks are in flight, and :meth:`hexdigest` waits for all of them. The helper
    starts with the first byte when the blob is known to be large (``expected``), else once more than
    ``THREAD_AFTER`` bytes came: a small file never pays for a thread, and a large one never hashes its
    first megabytes on the receiving thread (that stalls the transfer while the helper is idle).

    Written data is also pushed to disk while the download runs (``fdatasync`` every ``SYNC_EVERY``
    bytes, on a third thread so neither reading nor hashing waits for the disk), which leaves little
    for the final ``fsync`` that makes the blob durable. Both helpers are lanes (:mod:`.lanes`):
    threads kept by the process, so a download does not wait for threads to start.
    """

    THREAD_AFTER = 4 * READ_CHUNK
    MAX_PENDING = 16
    SYNC_EVERY = 4 * READ_CHUNK

    def __init__(self, fd: int, expected: int | None = None) -> None:
        self._h = hashlib.sha256()
        self._fed = 0
        self._threaded_after = 0 if expected is not None and expected > self.THREAD_AFTER else self.THREAD_AFTER
        self._fd = fd
        self._unsynced = 0
        self._pool: ThreadPoolExecutor | None = None
        self._syncer: ThreadPoolExecutor | None = None
        self._sync: Future | None = None
        self._pending: deque[Future] = deque()

    def update(self, data: bytes | memoryview) -> None:
        self._fed += len(data)
        if self._pool is None and self._fed > self._threaded_after:
            self._pool = lanes.take()
        if self._pool is None:
            self._h.update(data)
            return
        if isinstance(data, memoryview):
            data = bytes(data)
        self._pending.append(self._pool.submit(self._h.update, data))
        while len(self._pending) > self.MAX_PENDING:
            self._pending.popleft().result()
        self._unsynced += len(data)
        if self._unsynced >= self.SYNC_EVERY and (self._sync is None or self._sync.done()):
            self._unsynced = 0
            if self._syncer is None:
                self._syncer = lanes.take()
            self._sync = self._syncer.submit(_datasync, self._fd)

    def _drain(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def hexdigest(self) -> str:
        self._drain()
        return self._h.hexdigest()

    def final_sync(self) -> Future:
        """Start the fsync that makes the written bytes durable, on the sync thread (after any
        ``fdatasync`` still running there); the caller waits on the returned future. A file too small
        to have started that thread is fsynced here: a thread would cost more than the overlap gains."""
        if self._syncer is None:
            done: Future = Future()
            try:
                os.fsync(self._fd)
            except BaseException as exc:
                done.set_exception(exc)
            else:
                done.set_result(None)
            return done
        self._sync = self._syncer.submit(os.fsync, self._fd)
        return self._sync

    def close(self) -> None:
        """Wait for every hash update and sync of this file, then return the helpers to the process."""
        helpers = [lane for lane in (self._pool, self._syncer) if lane is not None]
        self._pool = self._syncer = None
        try:
            self._drain()
            if self._sync is not None:  # the last sync queued (a lane runs its tasks in order)
                with contextlib.suppress(OSError):
                    self._sync.result()
        except BaseException:
            for lane in helpers:
                lanes.drop(lane)
            raise
        for lane in helpers:
            lanes.give_back(lane)


def _datasync(fd: int) -> None:
    with contextlib.suppress(OSError):  # best effort: the final fsync in commit() is the one that counts
        os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)


class BlobWriter:
    """Write one blob of known sha256 and size (or a size cap); see the module docstring."""

    def __init__(self, layout: CacheLayout, sha256: str, size: int | None, *, max_size: int | None = None, where: str = "", validator: Validator | None = None,
                 on_progress: Callable[[int], None] | None = None) -> None:
        if size is None and max_size is None:
            raise ValueError("a blob needs an exact size or a size cap")
        self.layout = layout
        self.sha256 = sha256
        self.size = size
        self.limit = size if size is not None else max_size
        self.where = where or sha256
        self.validator = validator
        self.on_progress = on_progress
        self.final = layout.blob(sha256)
        self.temp = layout.blob_temp(sha256, new_owner())  # one name per writer, even in one process
        self.published: os.stat_result | None = None
        """After :meth:`commit`: the stat of the blob this writer published (None when another
        process's copy of the blob already had the name)."""
        layout.blobs.mkdir(parents=True, exist_ok=True)
        layout.partials.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.temp, "wb")  # noqa: SIM115 - closed in commit/abort
        self._hash = _Hasher(self._fh.fileno(), size)
        self.offset = 0
        self._done = False
        self._adopt_orphan()

    # -- resume after a dead process -------------------------------------------------------------

    def _adopt_orphan(self) -> None:
        """Take over the temp file of a dead writer of this blob, keeping its verified prefix."""
        try:
            entries = list(os.scandir(self.layout.partials))
        except FileNotFoundError:
            return
        prefix = f".{self.sha256}~"
        for entry in entries:
            if not entry.name.startswith(prefix) or entry.path == str(self.temp):
                continue
            parsed = parse_temp_name(entry.name)
            owner = parse_owner(parsed[1]) if parsed and parsed[2] == "part" else None
            if owner is None or not owner.is_dead():
                continue
            try:
                os.replace(entry.path, self.temp)  # atomic claim: exactly one adopter wins
            except FileNotFoundError:
                continue
            self._fh.close()
            self._fh = open(self.temp, "r+b")  # noqa: SIM115
            size = os.fstat(self._fh.fileno()).st_size
            if size > self.limit:
                self.reset()
                return
            h = _Hasher(self._fh.fileno(), self.size)
            while True:
                chunk = self._fh.read(4 * READ_CHUNK)
                if not chunk:
                    break
                h.update(chunk)
            self._hash.close()
            self._hash, self.offset = h, size
            if self.on_progress and size:
                self.on_progress(size)
            return

    # -- streaming -------------------------------------------------------------------------------

    def write(self, data: bytes | memoryview) -> None:
        """Append bytes; raise :class:`SizeLimitError` at the first byte past the allowed size."""
        n = len(data)
        if self.offset + n > self.limit:
            raise SizeLimitError(f"{self.where}: the source sent more than the {self.limit} bytes the "
                                 "manifest allows; refusing the rest")
        try:
            self._fh.write(data)
        except OSError as exc:
            raise full_disk(exc, self.where) or exc from None
        self._hash.update(data)
        self.offset += n
        if self.on_progress:
            self.on_progress(n)

    def reset(self) -> None:
        """Start over from byte 0 (the server ignored our Range, or sent the wrong one)."""
        if self.on_progress and self.offset:
            self.on_progress(-self.offset)
        self._fh.seek(0)
        self._fh.truncate()
        self._hash.close()
        self._hash = _Hasher(self._fh.fileno(), self.size)
        self.offset = 0

    @property
    def complete(self) -> bool:
        return self.size is not None and self.offset == self.size

    # -- finishing -------------------------------------------------------------------------------

    def commit(self) -> Path:
        """Check size, sha256 and content; then fsync and atomically publish the blob."""
        try:
            if self.size is not None and self.offset != self.size:
                raise IntegrityError(f"{self.where}: got {self.offset} bytes, the manifest says {self.size} "
                                     "(truncated download or wrong file)")
            self._fh.flush()
            synced = self._hash.final_sync()  # the disk works while the hash and the check finish
            digest = self._hash.hexdigest()
            if digest != self.sha256:
                raise IntegrityError(f"{self.where}: sha256 is {digest}, the manifest pins {self.sha256}",
                                     hint="the source serves different bytes; nothing was stored")
            if self.validator is not None:
                self.validator(self.temp)
            synced.result()
            self._hash.close()
            self._fh.close()
            make_read_only(self.temp)
            mine = os.stat(self.temp)
            if _publish_no_replace(self.temp, self.final):
                self.published = mine
            self._done = True
        except OSError as exc:  # a delayed allocation can find the disk full at flush or fsync
            self.abort()
            raise full_disk(exc, self.where) or exc from None
        except BaseException:
            self.abort()
            raise
        fsync_dir(self.final.parent)
        return self.final

    def abort(self) -> None:
        """Drop the temp file (idempotent)."""
        with contextlib.suppress(Exception):
            self._hash.close()
        with contextlib.suppress(OSError):
            self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.temp)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._done:
            self.abort()
