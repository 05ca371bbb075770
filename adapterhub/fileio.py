"""Small file primitives every layer shares: atomic replacement and streaming sha256.

Atomic: write a temp file in the same directory, fsync, ``os.replace`` — readers see the old file or the
complete new one, never a part, and a crash leaves at most a dot-prefixed temp file behind. A whole
directory (an adapter) is written the same way with :func:`staged_directory`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ConflictError

HASH_CHUNK = 1 << 20


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (creating parent directories)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text with ``\\n`` line ends."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (constant memory)."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(HASH_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


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
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ConflictError(f"{target} exists and is not a directory", hint="choose another output directory")
    created = _missing_ancestor(target.parent)
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.stage-"))
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
