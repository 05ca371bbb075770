"""Small file primitives every layer shares: atomic replacement and streaming sha256.

Atomic: write a temp file in the same directory, fsync, ``os.replace`` — readers see the old file or the
complete new one, never a part, and a crash leaves at most a dot-prefixed temp file behind. A whole
directory (an adapter) is written the same way with :func:`staged_directory`.

Modes follow the umask. ``tempfile.mkstemp``/``mkdtemp`` create 0600/0700 whatever the umask (they are
meant for private scratch space), so a file renamed out of them would stay owner-only and a team could
not share a registry or cache directory. :func:`create_temp_file` and :func:`create_temp_dir` create
with 0666/0777 and let the kernel apply the umask, as ``open`` and ``mkdir`` do.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .errors import ConflictError

HASH_CHUNK = 1 << 20
_TEMP_ATTEMPTS = 100


def create_temp_file(directory: str | Path, prefix: str = ".tmp-", suffix: str = ".tmp") -> tuple[int, Path]:
    """A new, uniquely named file in ``directory``, opened for writing: ``(fd, path)``.

    Like ``tempfile.mkstemp`` (``O_EXCL``, no symlink following) but with mode 0666 minus the umask.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(_TEMP_ATTEMPTS):
        path = Path(directory) / f"{prefix}{os.urandom(6).hex()}{suffix}"
        try:
            return os.open(path, flags, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"{directory}: no free temp file name after {_TEMP_ATTEMPTS} attempts")


def create_temp_dir(directory: str | Path, prefix: str = ".tmp-") -> Path:
    """A new, uniquely named directory in ``directory`` with mode 0777 minus the umask."""
    for _ in range(_TEMP_ATTEMPTS):
        path = Path(directory) / f"{prefix}{os.urandom(6).hex()}"
        try:
            path.mkdir(0o777)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{directory}: no free temp directory name after {_TEMP_ATTEMPTS} attempts")


def make_read_only(path: str | Path) -> None:
    """Drop every write bit, keeping the read bits the umask allowed (blobs are immutable)."""
    os.chmod(path, stat.S_IMODE(os.stat(path).st_mode) & ~0o222)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (creating parent directories)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = create_temp_file(path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text with ``\\n`` line ends."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_stream(fh: BinaryIO, *, limit: int | None = None) -> tuple[str, int]:
    """sha256 hex and byte count of what ``fh`` yields (at most ``limit`` bytes): the one hashing loop.

    Reads go into one reused 1 MiB buffer, small enough to stay in the CPU cache between the copy
    and the hash: on these machines that hashes a cached file faster than ``hashlib`` hashes the
    same bytes held in memory, while a 4 MiB buffer is measurably slower.
    """
    h = hashlib.sha256()
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    total = 0
    while limit is None or total < limit:
        want = len(buf) if limit is None else min(len(buf), limit - total)
        n = fh.readinto(view[:want])  # type: ignore[attr-defined]
        if not n:
            break
        h.update(view[:n])
        total += n
    return h.hexdigest(), total


MAP_AT_LEAST = 4 << 20
"""Files from this size are hashed through a read-only mapping (:func:`sha256_open_file`)."""


def sha256_open_file(fh: BinaryIO, size: int) -> tuple[str, int]:
    """sha256 hex and byte count of the open regular file ``fh`` whose ``fstat`` size is ``size``.

    A large file is hashed through a read-only ``mmap``: ``hashlib`` reads the page cache in place,
    where :func:`sha256_stream` first copies every byte into its buffer (about 15% of the time of a
    re-hash on these machines, measured by ``benchmarks/bench_store.py``'s verify row). The file must
    not be truncated by another process while it is hashed (the kernel ends a process that reads a
    mapped page past the end with SIGBUS): use it for files the caller owns and never rewrites, like
    the cache's read-only blobs. A file whose size changed while it was hashed is hashed again by
    :func:`sha256_stream` from its start, so the answer always describes the whole file.
    """
    if size < MAP_AT_LEAST:
        return sha256_stream(fh)
    import mmap  # here: most callers hash small files only

    h = hashlib.sha256()
    try:
        mapped = mmap.mmap(fh.fileno(), size, prot=mmap.PROT_READ)
    except (OSError, ValueError):  # a filesystem that cannot map files: read them
        return sha256_stream(fh)
    with mapped:
        h.update(mapped)
    if os.fstat(fh.fileno()).st_size != size:
        fh.seek(0)
        return sha256_stream(fh)
    return h.hexdigest(), size


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (constant memory)."""
    with Path(path).open("rb", buffering=0) as fh:
        return sha256_stream(fh)[0]


@contextmanager
def staged_directory(target: str | Path, *, owned: tuple[str, ...] = (), last: tuple[str, ...] = (),
                     remove: tuple[str, ...] = ()) -> Iterator[Path]:
    """Write a directory's files into a staging directory beside ``target``; put them in place at the end.

    Yields an empty staging directory (``.<name>.stage-*``, same filesystem). On an exception it is
    deleted and ``target`` is exactly as before (absent stays absent: parent directories this call
    created go too). On success: a missing or empty ``target`` is replaced by the staging directory in
    one rename; otherwise each staged file (by relative path) replaces its namesake in ``target`` (``last`` go last,
    e.g. the manifest that lists the others), then files named in ``owned`` that this write did not
    produce (a stale head from an earlier save) and those in ``remove`` are deleted. Other files in
    ``target`` are left alone.
    """
    import shutil  # here: a warm pull never removes or copies trees (start-up cost)

    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ConflictError(f"{target} exists and is not a directory", hint="choose another output directory")
    created = _missing_ancestor(target.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = create_temp_dir(target.parent, prefix=f".{target.name}.stage-")  # umask modes: it becomes target
    try:
        yield stage
        _commit(stage, target, owned, last, remove)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


def _missing_ancestor(path: Path) -> Path | None:
    """The outermost ancestor of ``path`` (itself included) that does not exist yet."""
    missing = None
    while not path.exists():
        missing, path = path, path.parent
    return missing


def _commit(stage: Path, target: Path, owned: tuple[str, ...], last: tuple[str, ...], remove: tuple[str, ...]) -> None:
    import shutil  # here: a warm pull never removes or copies trees (start-up cost)

    if target.is_dir() and not any(target.iterdir()):
        target.rmdir()
    if not target.exists():
        os.replace(stage, target)
        return
    names = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if not p.is_dir())
    for name in sorted(names, key=lambda n: n in last):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(stage / name, target / name)
    shutil.rmtree(stage)
    for name in (*owned, *remove):
        if name not in names:
            (target / name).unlink(missing_ok=True)
