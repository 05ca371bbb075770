"""What an endpoint returns: status, headers, and a body described as segments, not bytes.

Describing the body (a slice of a blob file, literal bytes, a pause) instead of producing it lets the
HTTP handler stream files with ``sendfile`` without loading them, and lets the fault plan reshape a
download (cut it short, stall in the middle, add bytes) without touching the handler.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import HubApiError


@dataclass(frozen=True)
class FileSlice:
    """``length`` bytes of ``path`` starting at ``offset``, sent with ``socket.sendfile``."""

    path: Path
    offset: int
    length: int


@dataclass(frozen=True)
class Literal:
    """Bytes sent as they are."""

    data: bytes


@dataclass(frozen=True)
class Pause:
    """Stop sending for ``seconds`` (cut short when the server shuts down)."""

    seconds: float


Segment = FileSlice | Literal | Pause


@dataclass
class Response:
    """A response the handler writes: headers first, then the body segments in order.

    ``delay`` seconds pass before anything is sent; ``close`` ends the connection afterwards (needed
    whenever the body does not match ``Content-Length``).
    """

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: list[Segment] = field(default_factory=list)
    delay: float = 0.0
    close: bool = False

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    def set_header(self, name: str, value: str) -> None:
        lowered = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != lowered] + [(name, value)]


def json_response(
    payload: object, status: int = 200, headers: list[tuple[str, str]] | None = None
) -> Response:
    data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return Response(
        status,
        [
            ("Content-Type", "application/json; charset=utf-8"),
            ("Content-Length", str(len(data))),
            *(headers or []),
        ],
        [Literal(data)],
    )


def header_safe(text: str, limit: int = 500) -> str:
    """Header values must be one line of latin-1; keep the message readable and short."""
    flat = " ".join(text.split())[:limit]
    return flat.encode("latin-1", "replace").decode("latin-1")


def error_response(error: HubApiError) -> Response:
    """JSON ``{"error": ...}`` plus ``X-Error-Code``/``X-Error-Message`` as the Hub sends them."""
    headers = [("X-Error-Message", header_safe(error.message))]
    if error.error_code:
        headers.append(("X-Error-Code", error.error_code))
    headers.extend(error.headers.items())
    if error.status == 401:
        headers.append(("WWW-Authenticate", 'Bearer realm="adapterhub"'))
    return json_response({**error.extra, "error": error.message}, error.status, headers)
