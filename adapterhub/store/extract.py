"""Safe extraction of legacy archives (zip, tar, tar.gz) held in memory.

Old AdapterHub zips were extracted without filters (``tarfile.extractall``) or flattened to base
names (later members silently overwrite earlier ones). Here every member is judged before anything
is written: regular files and directories only (no symlinks, hard links, devices), names safe under
POSIX and Windows rules, no duplicates (also case-insensitively), no encrypted zip members, and caps
on member count and unpacked size (zip bombs). A single top-level folder is stripped.
"""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from dataclasses import dataclass

from ..errors import UnsafeFileError, UnsafePathError
from ..paths import case_collisions, path_problem

MAX_MEMBERS = 1000
MAX_UNPACKED = 1 << 30


@dataclass(frozen=True)
class Member:
    path: str
    data: bytes


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


def _read_zip(data: bytes, where: str) -> list[Member]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise UnsafeFileError(f"{where}: not a valid zip archive ({exc})") from None
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise UnsafeFileError(f"{where}: {len(infos)} members, more than the {MAX_MEMBERS} allowed")
    files = []
    for info in infos:
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise UnsafeFileError(f"{where}: member {info.filename!r} is a symbolic link; refused")
        if info.flag_bits & 0x1:
            raise UnsafeFileError(f"{where}: member {info.filename!r} is encrypted; refused")
        if not info.is_dir():
            files.append(info)
    _check_names([i.filename for i in files], where)
    if sum(i.file_size for i in files) > MAX_UNPACKED:
        raise UnsafeFileError(f"{where}: unpacks to more than {MAX_UNPACKED} bytes; refused")
    out = []
    total = 0
    for info in files:
        with zf.open(info) as fh:
            body = fh.read(MAX_UNPACKED - total + 1)
        total += len(body)
        if total > MAX_UNPACKED:
            raise UnsafeFileError(f"{where}: unpacks to more than {MAX_UNPACKED} bytes; refused")
        out.append(Member(info.filename, body))
    return out


def _read_tar(data: bytes, where: str, compressed: bool) -> list[Member]:
    try:
        tf = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz" if compressed else "r:")  # noqa: SIM115
    except (tarfile.TarError, OSError) as exc:
        raise UnsafeFileError(f"{where}: not a valid tar archive ({exc})") from None
    with tf:
        members = tf.getmembers()
        if len(members) > MAX_MEMBERS:
            raise UnsafeFileError(f"{where}: {len(members)} members, more than the {MAX_MEMBERS} allowed")
        files = []
        for m in members:
            if m.isdir():
                continue
            if not m.isreg():
                kind = "a symbolic link" if m.issym() else "a hard link" if m.islnk() else "not a regular file"
                raise UnsafeFileError(f"{where}: member {m.name!r} is {kind}; refused")
            files.append(m)
        _check_names([m.name for m in files], where)
        if sum(m.size for m in files) > MAX_UNPACKED:
            raise UnsafeFileError(f"{where}: unpacks to more than {MAX_UNPACKED} bytes; refused")
        out = []
        for m in files:
            fh = tf.extractfile(m)
            out.append(Member(m.name, fh.read() if fh else b""))
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
