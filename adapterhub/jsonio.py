"""Strict JSON reading: UTF-8 only, no duplicate keys, errors that name the file and position.

Python's ``json`` silently keeps the last of two equal keys; other parsers keep the first. A file
that two readers interpret differently is a security problem, so duplicates are refused here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import DuplicateKeyError, JSONFormatError

MAX_JSON_BYTES = 64 * 1024 * 1024


def _reject_duplicates(source: str):
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                raise DuplicateKeyError(f"{source}: duplicate key {key!r} in one JSON object")
            out[key] = value
        return out

    return hook


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def loads_strict(data: bytes | str, source: str = "<json>") -> Any:
    """Parse one JSON document strictly (duplicate keys, NaN/Infinity and bad UTF-8 are errors)."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONFormatError(f"{source}: not valid UTF-8 (byte {exc.start})") from None
    else:
        text = data
    if text.startswith("\ufeff"):
        raise JSONFormatError(f"{source}: starts with a byte-order mark; save it as plain UTF-8")
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicates(source), parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise JSONFormatError(f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except ValueError as exc:
        if isinstance(exc, DuplicateKeyError):
            raise
        raise JSONFormatError(f"{source}: {exc}") from None


def load_strict(path: str | Path, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Read and strictly parse a JSON file, refusing files larger than ``max_bytes``."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise JSONFormatError(f"{p}: file not found") from None
    except IsADirectoryError:
        raise JSONFormatError(f"{p}: is a directory, expected a JSON file") from None
    if len(data) > max_bytes:
        raise JSONFormatError(f"{p}: larger than {max_bytes} bytes; refusing to parse")
    return loads_strict(data, str(p))


def iter_json_lines(data: bytes, source: str) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` for each non-empty line of a JSON Lines document."""
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            yield number, loads_strict(raw, f"{source}:{number}")


def dumps_canonical(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces, ASCII-safe) for hashing and one-line entries."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def dumps_pretty(obj: Any) -> str:
    """Human-friendly JSON with a trailing newline, for files people read and diff."""
    return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
