"""Safe extraction of legacy archives (zip, tar, tar.gz) held in memory.

Old AdapterHub zips were extracted without filters (``tarfile.extractall``) or flattened to base
names (later members silently overwrite earlier ones). Here every member is judged before anything
is written: regular files and directories only (no symlinks, hard links, devices), names safe under
POSIX and Windows rules, no duplicates (also case-insensitively), no encrypted zip members, and caps
on member count and unpacked size (zip bombs). A single top-level folder is stripped.

A damaged archive is a typed error, never a library exception: ``zipfile`` and ``tarfile`` report a
bad CRC, a local header whose name differs from the central directory, an unknown compression
method or a truncated stream as ``BadZipFile``, ``zlib.error``, ``EOFError``,
``NotImplementedError``, ``tarfile.ReadError``... and all of them become :class:`UnsafeFileError`.
A gzip layer is inflated here with a cap first, so no tar header (a pax record, a long name) can
make ``tarfile`` read more than the cap into memory. Nothing is written to disk in this module: a
refused archive leaves nothing behind.
"""

from __future__ import annotations

import io
import lzma
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ..errors import UnsafeFileError, UnsafePathError
from ..paths import case_collisions, path_problem

MAX_MEMBERS = 1000
MAX_UNPACKED = 1 << 30
TAR_OVERHEAD = 16 << 20
"""Room for tar headers and padding on top of :data:`MAX_UNPACKED` when inflating a ``.tar.gz``."""

LIBRARY_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError, EOFError, NotImplementedError,
    OSError, ValueError, RuntimeError, struct.error,
)
"""What ``zipfile``/``tarfile``/``zlib`` raise on damaged input (bz2 reports as OSError)."""


@dataclass(frozen=True)
class Member:
    path: str
    data: bytes


@contextmanager
def _damaged(where: str, kind: str) -> Iterator[None]:
    """Turn the archive libraries' exceptions into one typed error that says what broke."""
    try:
        yield
    except LIBRARY_ERRORS as exc:
        cls = type(exc)
        name = cls.__name__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__name__}"
        raise UnsafeFileError(f"{where}: damaged or unsupported {kind} archive ({name}: {str(exc)[:200]})",
                              hint="re-download or re-create the archive") from None


def _check_names(names: list[str], where: str) -> None:
    for name in names:
        problem = path_problem(name)
        if problem:
            raise UnsafePathError(f"{where}: archive member {name!r} is unsafe: {problem}")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise UnsafePathError(f"{where}: archive member {name!r} appears twice")
        seen.add(name)
    clashes = case_collisions(names)
    if clashes:
        raise UnsafePathError(f"{where}: archive members {clashes[0][0]!r} and {clashes[0][1]!r} differ only in case")


def _strip_common_folder(members: list[Member]) -> list[Member]:
    heads = {m.path.split("/", 1)[0] for m in members}
    if len(heads) == 1 and all("/" in m.path for m in members):
        head = heads.pop() + "/"
        return [Member(m.path[len(head):], m.data) for m in members]
    return members


def _too_big(where: str) -> UnsafeFileError:
    return UnsafeFileError(f"{where}: unpacks to more than {MAX_UNPACKED} bytes; refused")


def _too_many(where: str, count: int | str) -> UnsafeFileError:
    return UnsafeFileError(f"{where}: {count} members, more than the {MAX_MEMBERS} allowed")


def _zip_kind(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member is not a plain file or directory (``None`` when it is one)."""
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if mode and stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "a device, pipe or socket"
    return None


def _read_zip(data: bytes, where: str) -> list[Member]:
    with _damaged(where, "zip"):
        zf = zipfile.ZipFile(io.BytesIO(data))
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise _too_many(where, len(infos))
        files = []
        for info in infos:
            if not info.filename:
                raise UnsafeFileError(f"{where}: a member has an empty name; refused")
            kind = _zip_kind(info)
            if kind:
                raise UnsafeFileError(f"{where}: member {info.filename!r} is {kind}; refused")
            if info.flag_bits & 0x1:
                raise UnsafeFileError(f"{where}: member {info.filename!r} is encrypted; refused")
            if not info.is_dir():
                files.append(info)
        _check_names([i.filename for i in files], where)
        if sum(i.file_size for i in files) > MAX_UNPACKED:
            raise _too_big(where)
        out = []
        total = 0
        for info in files:
            with zf.open(info) as fh:  # checks the local header's name and, at the end, the CRC
                body = fh.read(MAX_UNPACKED - total + 1)
            total += len(body)
            if total > MAX_UNPACKED:
                raise _too_big(where)
            out.append(Member(info.filename, body))
        return out


def _gunzip(data: bytes, where: str) -> bytes:
    """Inflate every gzip member of ``data``, refusing more than the tar cap and trailing garbage."""
    limit = MAX_UNPACKED + TAR_OVERHEAD
    parts: list[bytes] = []
    size = 0
    rest = data
    while rest:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        chunk = inflater.decompress(rest, limit - size + 1)
        size += len(chunk)
        if size > limit:
            raise _too_big(where)
        if not inflater.eof:
            raise UnsafeFileError(f"{where}: gzip stream is truncated", hint="re-download the archive")
        parts.append(chunk)
        rest = inflater.unused_data
        if rest and not rest.startswith(b"\x1f\x8b"):
            if rest.strip(b"\0"):
                raise UnsafeFileError(f"{where}: unexpected bytes after the gzip stream")
            break
    return b"".join(parts)


def _read_tar(data: bytes, where: str, compressed: bool) -> list[Member]:
    kind = "tar.gz" if compressed else "tar"
    with _damaged(where, kind):
        plain = _gunzip(data, where) if compressed else data
        with tarfile.open(fileobj=io.BytesIO(plain), mode="r:") as tf:
            files = []
            count = 0
            total = 0
            while (m := tf.next()) is not None:
                count += 1
                if count > MAX_MEMBERS:
                    raise _too_many(where, "more than")
                if m.isdir():
                    continue
                if not m.isreg() or m.issparse():
                    what = "a symbolic link" if m.issym() else "a hard link" if m.islnk() else "not a regular file"
                    raise UnsafeFileError(f"{where}: member {m.name!r} is {what}; refused")
                if m.size < 0:
                    raise UnsafeFileError(f"{where}: member {m.name!r} has a negative size")
                total += m.size
                if total > MAX_UNPACKED:
                    raise _too_big(where)
                files.append(m)
            _check_names([m.name for m in files], where)
            out = []
            for m in files:
                fh = tf.extractfile(m)
                body = fh.read() if fh else b""
                if len(body) != m.size:
                    raise UnsafeFileError(f"{where}: member {m.name!r} is truncated ({len(body)} of {m.size} bytes)")
                out.append(Member(m.name, body))
            return out


def read_archive(data: bytes, fmt: str, where: str) -> list[Member]:
    """The regular files of an archive (checked as the module docstring says), in archive order."""
    if fmt == "zip":
        members = _read_zip(data, where)
    elif fmt in ("tar", "tar.gz"):
        members = _read_tar(data, where, fmt == "tar.gz")
    else:
        raise UnsafeFileError(f"{where}: unsupported archive format {fmt!r}")
    return _strip_common_folder(members)
