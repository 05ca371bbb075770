"""File-name rules for anything that will become a path on disk.

A manifest comes from strangers. Each of its paths is judged under POSIX *and* Windows rules on every
OS (a file written on Linux may be read on Windows later): no ``..`` segment, nothing anchored
(``/x``, ``C:\\x``, ``C:x``, ``\\x``, ``\\\\host\\share``), no empty segment, no control characters,
no Windows-reserved names or trailing dots/spaces, and no two paths that differ only in case.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from .errors import UnsafePathError

_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?$", re.IGNORECASE)
_FORBIDDEN_CHARS = set('<>:"|?*')
MAX_PATH_LENGTH = 255


def path_problem(path: str) -> str | None:
    """Describe why ``path`` is unsafe, or return None when it is a safe relative POSIX path."""
    if not isinstance(path, str) or not path:
        return "empty path"
    if len(path) > MAX_PATH_LENGTH:
        return f"longer than {MAX_PATH_LENGTH} characters"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        return "contains a control character (NUL, newline, ...)"
    if "\\" in path:
        if path.startswith("\\\\"):
            return "is a UNC path (\\\\host\\share)"
        return "contains a backslash; use '/' as the separator"
    if path.startswith("/"):
        return "is absolute"
    if _DRIVE_RE.match(path):
        return "starts with a drive letter"
    if any(ch in _FORBIDDEN_CHARS for ch in path):
        return "contains a character Windows forbids in file names (<>:\"|?*)"
    if unicodedata.normalize("NFC", path) != path:
        return "is not in Unicode NFC form"
    for segment in path.split("/"):
        if segment == "":
            return "has an empty segment ('//' or a trailing '/')"
        if segment in (".", ".."):
            return f"has a {segment!r} segment"
        if segment.endswith((".", " ")):
            return "has a segment ending in '.' or ' ' (Windows strips them)"
        if _RESERVED.match(segment):
            return f"uses the Windows device name {segment!r}"
    return None


def validate_relative_path(path: str, where: str = "path") -> str:
    """Return ``path`` if safe, else raise :class:`UnsafePathError` naming it and the rule."""
    problem = path_problem(path)
    if problem:
        raise UnsafePathError(f"{where}: unsafe file path {path!r}: {problem}")
    return path


def case_collisions(paths: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs of paths that would be the same file on a case-insensitive file system."""
    seen: dict[str, str] = {}
    clashes = []
    for p in paths:
        key = unicodedata.normalize("NFC", p).casefold()
        if key in seen:
            clashes.append((seen[key], p))
        else:
            seen[key] = p
    return clashes


def safe_join(root: str | Path, relative: str) -> Path:
    """Join a validated relative path under ``root`` and prove the result stays inside it."""
    validate_relative_path(relative)
    base = Path(root).resolve()
    target = (base / relative).resolve()
    if os.path.commonpath([str(base), str(target)]) != str(base):
        raise UnsafePathError(f"{relative!r} resolves outside {base} (symlink?)")
    return target
