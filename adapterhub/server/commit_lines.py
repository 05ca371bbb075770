"""The commit body (ndjson: a header line, then one line per operation), parsed without storage.

Every line goes through the strict JSON loader and is checked field by field here, so what reaches
storage is typed and valid (a path that passed ``check_path``, decoded content, a sha256 oid). Kept
apart from the endpoint so it can be fuzzed on its own (``benchmarks/fuzz.py``); any refusal is a
``BadRequest`` (HTTP 400).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .context import parse_json
from .errors import BadRequest
from .names import check_path
from .storage import DeleteFile, DeleteFolder

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class CommitHeader:
    summary: str
    description: str
    parent_commit: str | None


@dataclass(frozen=True)
class AddContent:
    """``file``: content sent inline (base64 or UTF-8)."""

    path: str
    content: bytes


@dataclass(frozen=True)
class AddStored:
    """``lfsFile``: a blob the server already has, named by its sha256."""

    path: str
    sha256: str
    size: int | None


CommitLine = CommitHeader | AddContent | AddStored | DeleteFile | DeleteFolder
"""A parsed line; deletions are already the storage operations they become."""


def _optional_str(value: dict[str, object], key: str) -> str | None:
    item = value.get(key)
    if item is not None and not isinstance(item, str):
        raise BadRequest(f"header field {key!r} must be a string")
    return item


def _header(value: dict[str, object]) -> CommitHeader:
    summary = value.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        raise BadRequest("a commit needs a non-empty 'summary'")
    return CommitHeader(summary, _optional_str(value, "description") or "", _optional_str(value, "parentCommit"))


def _content(value: dict[str, object]) -> bytes:
    content = value.get("content")
    if not isinstance(content, str):
        raise BadRequest("file line without string 'content'")
    encoding = value.get("encoding", "base64")
    if encoding == "base64":
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"content of {value.get('path')!r} is not valid base64") from None
    if encoding in ("utf-8", "utf8"):
        return content.encode("utf-8")  # the strict loader already refused lone surrogates
    raise BadRequest(f"unknown content encoding {encoding!r}")


def parse_commit_line(line: bytes) -> CommitLine:
    """One non-empty line of the body: ``{"key": ..., "value": {...}}``."""
    item = parse_json(line, "commit line (the body is ndjson: one JSON object per line)")
    if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
        raise BadRequest("each commit line must be {'key': ..., 'value': {...}}")
    key, value = item.get("key"), item["value"]
    if key == "header":
        return _header(value)
    if key not in ("file", "lfsFile", "deletedFile", "deletedFolder"):
        raise BadRequest(f"unknown commit line key {key!r}")
    path = check_path(value.get("path"))  # type: ignore[arg-type]  # check_path refuses non-strings
    if key == "file":
        return AddContent(path, _content(value))
    if key == "lfsFile":
        oid, size = value.get("oid"), value.get("size")
        if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str) or not _SHA256.fullmatch(oid):
            raise BadRequest("lfsFile lines need a sha256 'oid' (64 hex digits)")
        if size is not None and (type(size) is not int or size < 0):
            raise BadRequest("lfsFile 'size' must be a non-negative integer")
        return AddStored(path, oid.lower(), size)
    return DeleteFolder(path) if key == "deletedFolder" else DeleteFile(path)


def read_commit(lines: Iterable[bytes]) -> Iterator[CommitLine]:
    """The header first, then each operation, as lines arrive (blank lines skipped).

    Raises ``BadRequest`` for a body without a header, a first line that is not one, or a second one.
    """
    header_seen = False
    for line in lines:
        if not line.strip():
            continue
        parsed = parse_commit_line(line)
        if isinstance(parsed, CommitHeader) == header_seen:
            raise BadRequest("only the first commit line may be the header" if header_seen
                             else "the first commit line must be the header")
        header_seen = True
        yield parsed
    if not header_seen:
        raise BadRequest("empty commit body: a header line is required")
