"""HTTP ``Range`` parsing (RFC 9110 section 14) for single byte ranges.

Clients resume downloads with ``bytes=N-`` and fetch pieces with ``bytes=a-b``; that is all the Hub
clients send. A header this module does not understand (bad syntax, several ranges) is ignored and
the whole file is served, which RFC 9110 allows; a syntactically fine range that starts past the end
is unsatisfiable (416).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC = re.compile(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*")


@dataclass(frozen=True)
class ByteRange:
    """Inclusive ``start``..``end`` within a file of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


class Unsatisfiable(Exception):
    """The range lies outside the file; answer 416 with ``Content-Range: bytes */size``."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """``None`` means "serve the whole file"; raises ``Unsatisfiable`` for a range past the end."""
    if header is None:
        return None
    match = _SPEC.fullmatch(header)
    if match is None:
        return None  # unknown unit, several ranges, or garbage: ignore the header
    first, last = match.group(1), match.group(2)
    if first == "" and last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable
        return ByteRange(max(0, size - suffix), size - 1, size)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid syntax per RFC: ignore
    if start >= size:
        raise Unsatisfiable
    return ByteRange(start, min(end, size - 1), size)
