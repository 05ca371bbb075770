"""Strict JSON reading for everything that comes from outside: one loader, one set of rules.

Python's ``json`` accepts documents other parsers read differently or that crash code later, so every
untrusted JSON document (manifests, index entries, safetensors headers, server request bodies,
archive metadata, foreign configs) goes through :func:`loads_strict`, which refuses:

* duplicate keys (Python keeps the last of two equal keys, other parsers the first);
* nesting deeper than :data:`MAX_JSON_DEPTH`, measured *before* parsing and without recursion (the
  parser and everything that walks the result recurse, and would raise ``RecursionError``);
* lone UTF-16 surrogates (``"\\ud800"``), in keys and values: they parse but cannot be encoded as
  UTF-8, so writing the value out again would fail far from here;
* ``NaN``/``Infinity`` and numbers that overflow to them (``1e999``);
* invalid UTF-8, a byte-order mark, and documents larger than a size cap.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import DuplicateKeyError, JSONFormatError

MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays/objects accepted; our formats need under 20 levels."""

_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_SKELETON = bytes(sorted(set(range(256)) - set(b'[]{}"')))
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


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


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is too large for a 64-bit float")
    return value


def nesting_depth(data: bytes, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep arrays/objects nest in UTF-8 JSON ``data`` (brackets in strings ignored), without recursion.

    The bracket skeleton is cut out with byte-level C routines (escapes dropped, then everything but
    brackets and quotes, then strings). Each pass deletes every innermost ``[]`` pair, so the number
    of passes is the depth; brackets no pass can pair (truncated input) count as levels too. Stops
    past ``limit``. Brackets, quotes and backslashes are ASCII, never part of a multi-byte character.
    """
    if b"\\" in data:
        data = _ESCAPE.sub(b"", data)
    skeleton = data.translate(_BRACKETS, _NOT_SKELETON)
    if b'"' in skeleton:
        skeleton = b"".join(skeleton.split(b'"')[::2])  # what lies between the 1st and 2nd quote, ... is a string
    depth = 0
    while b"[]" in skeleton and depth <= limit:
        skeleton = skeleton.replace(b"[]", b"")
        depth += 1
    return depth + skeleton.count(b"[")


def _first_lone_surrogate(value: Any) -> str | None:
    """A string (key or value) in ``value`` that does not encode as UTF-8; iterative, not recursive."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            strings: Any = (item,)
        elif isinstance(item, dict):
            strings = item.keys()
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
            continue
        else:
            continue
        for s in strings:
            try:
                s.encode("utf-8")
            except UnicodeEncodeError:
                return s
    return None


def loads_strict(data: bytes | str, source: str = "<json>", *, max_bytes: int = MAX_JSON_BYTES,
                 max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse one untrusted JSON document under the rules of the module docstring."""
    if len(data) > max_bytes:
        raise JSONFormatError(f"{source}: larger than {max_bytes} bytes; refusing to parse")
    if isinstance(data, bytes):
        raw = data
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONFormatError(f"{source}: not valid UTF-8 (byte {exc.start})") from None
    else:
        text = data
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise JSONFormatError(f"{source}: not valid UTF-8 (character {exc.start} is a lone surrogate)") from None
    if text.startswith("\ufeff"):
        raise JSONFormatError(f"{source}: starts with a byte-order mark; save it as plain UTF-8")
    if nesting_depth(raw, max_depth) > max_depth:
        raise JSONFormatError(f"{source}: arrays/objects nested more than {max_depth} levels deep; refusing to parse")
    try:
        value = json.loads(text, object_pairs_hook=_reject_duplicates(source), parse_constant=_reject_constant,
                           parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise JSONFormatError(f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except DuplicateKeyError:
        raise
    except (ValueError, RecursionError) as exc:  # RecursionError: only if the caller's stack is already deep
        raise JSONFormatError(f"{source}: {exc}") from None
    if _SURROGATE_ESCAPE.search(raw):
        bad = _first_lone_surrogate(value)
        if bad is not None:
            raise JSONFormatError(f"{source}: string {bad.encode('utf-8', 'backslashreplace').decode()[:60]!r} "
                                  "holds a lone UTF-16 surrogate escape; it cannot be stored as UTF-8")
    return value


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
    return loads_strict(data, str(p), max_bytes=max_bytes)


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
