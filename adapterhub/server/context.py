"""Server settings and the per-request view that endpoints receive.

Endpoints are plain functions ``(RequestContext, Route) -> Response``; everything they may read (the
storage, settings, headers, query, a bounded body reader) is in the context, so they can be called
and tested without sockets and the HTTP handler stays the only place that does socket I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from adapterhub.errors import AdapterHubError
from adapterhub.jsonio import loads_strict

from .auth import AuthPolicy, Caller
from .errors import BadRequest, PayloadTooLarge
from .faults import FaultPlan
from .storage import HubStorage

DEFAULT_MAX_BODY_BYTES = 2 << 30
"""Largest request body accepted (a commit carries file contents base64-encoded inline)."""


@dataclass
class ServerConfig:
    """How a server behaves; everything has a safe default (read-only for anonymous callers, no faults)."""

    auth: AuthPolicy = field(default_factory=AuthPolicy)
    """Known tokens and what they may do (see ``adapterhub.server.auth``); by default nobody writes."""
    public_url: str | None = None
    """Base URL put into ``commitUrl``/``url`` answers; default: ``http://<Host header>``."""
    fault_plan: FaultPlan | None = None
    """Download-side fault injection for tests (see ``adapterhub.server.faults``); off when None."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    tree_page_size: int = 1000
    """Entries per tree page; more are linked with ``Link: <...>; rel="next"`` like the Hub."""
    socket_timeout: float = 60.0
    """Seconds a connection may sit idle (or a client stall) before the server drops it."""


@dataclass
class ServerState:
    """What all requests of one running server share."""

    storage: HubStorage
    config: ServerConfig
    stop_event: threading.Event = field(default_factory=threading.Event)


class BodyReader:
    """The request body, bounded by ``Content-Length``; never reads past it."""

    def __init__(self, stream: IO[bytes], length: int) -> None:
        self._stream = stream
        self.remaining = length
        self.length = length

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > self.remaining:
            size = self.remaining
        data = self._stream.read(size) if size else b""
        self.remaining -= len(data)
        if size and not data:
            raise BadRequest("request body ended before Content-Length bytes arrived")
        return data

    def readline(self) -> bytes:
        """One line including its newline (the last line may have none); ``b""`` at the end."""
        if self.remaining <= 0:
            return b""
        line = self._stream.readline(self.remaining)
        self.remaining -= len(line)
        if not line:
            raise BadRequest("request body ended before Content-Length bytes arrived")
        return line

    def drain(self, chunk: int = 1 << 20) -> None:
        while self.remaining > 0:
            self.read(min(chunk, self.remaining))


@dataclass
class RequestContext:
    """One request as endpoints see it."""

    state: ServerState
    method: str
    headers: Mapping[str, str]
    query: dict[str, list[str]]
    base_url: str
    body: BodyReader
    caller: Caller = field(default_factory=lambda: Caller(None))

    @property
    def storage(self) -> HubStorage:
        return self.state.storage

    @property
    def config(self) -> ServerConfig:
        return self.state.config

    def query_value(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None

    def query_flag(self, name: str) -> bool:
        """``True``/``true``/``1``/``yes`` (requests sends ``True``, httpx sends ``true``)."""
        return (self.query_value(name) or "").strip().lower() in ("1", "true", "yes")

    def json_body(self, limit: int = 16 << 20) -> Any:
        if self.body.length > limit:
            raise PayloadTooLarge(f"JSON body larger than {limit} bytes")
        raw = self.body.read()
        return parse_json(raw, "request body") if raw else {}


def parse_json(raw: bytes, what: str) -> Any:
    """Untrusted JSON from a client, through the package's strict loader; any refusal is a 400."""
    try:
        return loads_strict(raw, what)
    except AdapterHubError as exc:
        raise BadRequest(f"{what} is not valid JSON: {exc.message}") from None
