"""Download-side fault injection, for testing clients against a misbehaving server.

Off unless a ``FaultPlan`` is passed to the server. The plan is a queue of rules; for each
``/resolve`` request (and each commit, as method ``POST`` and path ``:commit``, where only the
status of a rule is used) the server asks the plan for the first rule that matches (method, repo, path)
and still has uses left, spends one use, and lets it reshape the normal response. Rules are consumed
in the order they were added, so ``plan.fail(times=2); plan.truncate()`` means: two 500s, then one
cut-off body, then normal service.

Usage::

    plan = FaultPlan()
    plan.truncate(fraction=0.5, path="*.safetensors")
    with serve_in_thread(root, fault_plan=plan) as endpoint:
        ...  # first GET of a .safetensors file ends halfway; the next ones are fine
    assert plan.applied[0].kind is FaultKind.TRUNCATE
"""

from __future__ import annotations

import enum
import fnmatch
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from .errors import HubApiError
from .ranges import ByteRange
from .responses import FileSlice, Literal, Pause, Response, error_response
from .served import ServedFile

FileResponder = Callable[[ServedFile, "ByteRange | None"], Response]
"""How the server answers normally: ``(file, range or None) -> Response``."""


class FaultKind(enum.Enum):
    ERROR = "error"
    """Answer ``status`` (default 500) with a JSON error instead of the file."""
    IGNORE_RANGE = "ignore_range"
    """Answer 200 with the whole file even though a Range was asked for."""
    WRONG_CONTENT_RANGE = "wrong_content_range"
    """Answer 206 for a different range (``shift`` bytes later) than asked, labelled as such."""
    EXTRA_BYTES = "extra_bytes"
    """Send ``extra`` bytes of garbage after the file (Content-Length counts them), then close."""
    TRUNCATE = "truncate"
    """Announce the full length, send ``fraction`` of the body, then close the connection."""
    STALL_BEFORE = "stall_before"
    """Wait ``seconds`` before sending anything."""
    STALL_MID = "stall_mid"
    """Send ``fraction`` of the body, wait ``seconds``, send the rest."""
    FLIP_BYTE = "flip_byte"
    """Send the file with the byte at ``fraction`` of it changed (same length: only a hash check sees it)."""
    LISTED_HASH = "listed_hash"
    """In tree / paths-info / repo-info listings (method ``LIST``): list a wrong hash for the file (its
    LFS sha256 when it is LFS, else its git blob sha1)."""
    UNHASHED = "unhashed"
    """In listings (method ``LIST``): list the file with neither an ``lfs`` block nor an ``oid``."""
    REWRITE_LISTING = "rewrite_listing"
    """In tree / paths-info listings (method ``LIST``): list what ``rewrite(item)`` returns instead of the
    file's item (a list: none, the item changed, or several), as a hostile server would."""
    REWRITE_HEADERS = "rewrite_headers"
    """Answer a resolve request (HEAD or GET) normally but with ``headers`` set (e.g. another ``X-Repo-Commit``)."""
    REDIRECT = "redirect"
    """Answer a resolve request (HEAD or GET) with ``status`` (a 3xx) to ``location``, keeping the file's headers
    (``X-Repo-Commit``, ``X-Linked-Size``, ``X-Linked-Etag``) as the Hub's redirect to its CDN does."""


@dataclass
class Fault:
    """One rule: what goes wrong, how often, and for which requests."""

    kind: FaultKind
    times: int | None = 1
    """Requests this rule spoils; ``None`` means every matching request, forever."""
    methods: frozenset[str] = frozenset({"GET"})
    repo_id: str | None = None
    path: str | None = None
    """``fnmatch`` pattern on the file path in the repo; ``None`` matches every file."""
    status: int = 500
    seconds: float = 0.0
    fraction: float = 0.5
    extra: int = 16
    shift: int = 1
    rewrite: Callable[[dict[str, object]], list[dict[str, object]]] | None = None
    location: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    hits: int = 0
    """How many requests this rule has spoiled so far."""

    def matches(self, method: str, repo_id: str, path: str) -> bool:
        return (
            (self.times is None or self.hits < self.times)
            and method in self.methods
            and (self.repo_id is None or self.repo_id == repo_id)
            and (self.path is None or fnmatch.fnmatchcase(path, self.path))
        )

    def respond(self, file: ServedFile, byte_range: ByteRange | None, normal: FileResponder) -> Response:
        """The spoiled response for ``file`` (``normal`` builds the correct one)."""
        kind = self.kind
        if kind is FaultKind.ERROR:
            return error_response(HubApiError(f"injected fault: status {self.status}", status=self.status))
        if kind is FaultKind.IGNORE_RANGE:
            return normal(file, None)
        if kind is FaultKind.REWRITE_HEADERS:
            response = normal(file, byte_range)
            for name, value in self.headers:
                response.set_header(name, value)
            return response
        if kind is FaultKind.REDIRECT:  # with the file's headers (commit, linked size/etag), as the Hub's CDN redirect
            response = normal(file, None)
            response.status, response.body = self.status, []
            response.set_header("Location", self.location)
            response.set_header("Content-Length", "0")
            for name, value in self.headers:
                response.set_header(name, value)
            return response
        if kind is FaultKind.WRONG_CONTENT_RANGE:
            return normal(file, _shifted(byte_range, file.entry.size, self.shift))
        response = normal(file, byte_range)
        if kind is FaultKind.STALL_BEFORE:
            response.delay = self.seconds
            return response
        sent = byte_range.length if byte_range else file.entry.size
        cut = max(0, min(sent, int(sent * self.fraction)))
        start = byte_range.start if byte_range else 0
        if kind is FaultKind.TRUNCATE:
            response.body = [FileSlice(file.blob, start, cut)] if cut else []
            response.close = True
        elif kind is FaultKind.STALL_MID:
            response.body = [
                FileSlice(file.blob, start, cut),
                Pause(self.seconds),
                FileSlice(file.blob, start + cut, sent - cut),
            ]
        elif kind is FaultKind.FLIP_BYTE and sent:
            at = min(cut, sent - 1)
            with open(file.blob, "rb") as fh:
                fh.seek(start + at)
                flipped = bytes([fh.read(1)[0] ^ 0xFF])
            response.body = [FileSlice(file.blob, start, at), Literal(flipped),
                             FileSlice(file.blob, start + at + 1, sent - at - 1)]
        elif kind is FaultKind.EXTRA_BYTES:
            response.body = [*response.body, Literal(b"\xa5" * self.extra)]
            response.set_header("Content-Length", str(sent + self.extra))
            response.close = True
        return response


def _shifted(byte_range: ByteRange | None, size: int, shift: int) -> ByteRange | None:
    if size == 0:
        return byte_range
    wanted = byte_range or ByteRange(0, size - 1, size)
    start = wanted.start + shift if wanted.start + shift <= wanted.end else max(0, wanted.start - shift)
    return ByteRange(start, wanted.end, size)


@dataclass(frozen=True)
class AppliedFault:
    """A record of one spoiled request, for assertions."""

    kind: FaultKind
    method: str
    repo_id: str
    path: str
    range_header: str | None


@dataclass
class FaultPlan:
    """The rules a server consults per download request. Thread-safe."""

    faults: list[Fault] = field(default_factory=list)
    applied: list[AppliedFault] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def _rule(self, kind: FaultKind, times: int | None, methods: Collection[str], **fields: object) -> Fault:
        return self.add(Fault(kind, times=times, methods=frozenset(m.upper() for m in methods), **fields))  # type: ignore[arg-type]

    def fail(
        self,
        status: int = 500,
        *,
        times: int | None = 1,
        methods: Collection[str] = ("GET",),
        repo_id: str | None = None,
        path: str | None = None,
    ) -> Fault:
        """Answer ``status`` ``times`` times, then behave."""
        return self._rule(FaultKind.ERROR, times, methods, status=status, repo_id=repo_id, path=path)

    def ignore_range(
        self, *, times: int | None = 1, repo_id: str | None = None, path: str | None = None
    ) -> Fault:
        return self._rule(FaultKind.IGNORE_RANGE, times, ("GET",), repo_id=repo_id, path=path)

    def wrong_content_range(
        self, shift: int = 1, *, times: int | None = 1, repo_id: str | None = None, path: str | None = None
    ) -> Fault:
        return self._rule(
            FaultKind.WRONG_CONTENT_RANGE, times, ("GET",), shift=shift, repo_id=repo_id, path=path
        )

    def extra_bytes(
        self, count: int = 16, *, times: int | None = 1, repo_id: str | None = None, path: str | None = None
    ) -> Fault:
        return self._rule(FaultKind.EXTRA_BYTES, times, ("GET",), extra=count, repo_id=repo_id, path=path)

    def truncate(
        self,
        fraction: float = 0.5,
        *,
        times: int | None = 1,
        repo_id: str | None = None,
        path: str | None = None,
    ) -> Fault:
        return self._rule(FaultKind.TRUNCATE, times, ("GET",), fraction=fraction, repo_id=repo_id, path=path)

    def flip_byte(
        self, fraction: float = 0.5, *, times: int | None = 1, repo_id: str | None = None, path: str | None = None
    ) -> Fault:
        """Serve the file with one byte changed (at ``fraction`` of it), same length and headers."""
        return self._rule(FaultKind.FLIP_BYTE, times, ("GET",), fraction=fraction, repo_id=repo_id, path=path)

    def tamper_listing(
        self, *, unhashed: bool = False, times: int | None = None, repo_id: str | None = None, path: str | None = None
    ) -> Fault:
        """List a wrong hash for matching files in tree / paths-info / repo info (or, ``unhashed``, no
        hash at all); every listing by default (``times=None``), as a lying server would."""
        kind = FaultKind.UNHASHED if unhashed else FaultKind.LISTED_HASH
        return self._rule(kind, times, ("LIST",), repo_id=repo_id, path=path)

    def rewrite_listing(
        self, rewrite: Callable[[dict[str, object]], list[dict[str, object]]], *, times: int | None = None,
        repo_id: str | None = None, path: str | None = None
    ) -> Fault:
        """List ``rewrite(item)`` (a list of tree items) instead of each matching file's tree / paths-info
        item: hostile paths, sizes, hashes, duplicates or thousands of entries, without storing them."""
        return self._rule(FaultKind.REWRITE_LISTING, times, ("LIST",), rewrite=rewrite, repo_id=repo_id, path=path)

    def rewrite_headers(
        self, headers: dict[str, str], *, times: int | None = None, methods: Collection[str] = ("HEAD", "GET"),
        repo_id: str | None = None, path: str | None = None
    ) -> Fault:
        """Serve matching files with ``headers`` replaced (a lying ``X-Repo-Commit``, ``X-Linked-Size``...)."""
        return self._rule(FaultKind.REWRITE_HEADERS, times, methods, headers=tuple(headers.items()), repo_id=repo_id,
                          path=path)

    def rewrite_info(
        self, rewrite: Callable[[dict[str, object]], list[dict[str, object]]], *, times: int | None = None,
        repo_id: str | None = None
    ) -> Fault:
        """Answer repo info (method ``INFO``) with ``rewrite(payload)[0]``: a lying ``sha``, card or siblings."""
        return self._rule(FaultKind.REWRITE_LISTING, times, ("INFO",), rewrite=rewrite, repo_id=repo_id)

    def redirect(
        self, location: str, status: int = 302, *, times: int | None = None,
        methods: Collection[str] = ("HEAD", "GET"), repo_id: str | None = None, path: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Fault:
        """Answer matching resolve requests with a redirect to ``location`` (another host, port, scheme),
        with ``headers`` added (e.g. the ``X-Xet-Hash`` of the Hub's redirect to its Xet bridge)."""
        return self._rule(FaultKind.REDIRECT, times, methods, status=status, location=location, repo_id=repo_id,
                          path=path, headers=tuple((headers or {}).items()))

    def stall(
        self,
        seconds: float,
        *,
        at: str = "before",
        fraction: float = 0.5,
        times: int | None = 1,
        methods: Collection[str] = ("GET",),
        repo_id: str | None = None,
        path: str | None = None,
    ) -> Fault:
        """Pause ``seconds`` before the response (``at="before"``) or after ``fraction`` of the body."""
        if at not in ("before", "mid"):
            raise ValueError("at must be 'before' or 'mid'")
        kind = FaultKind.STALL_BEFORE if at == "before" else FaultKind.STALL_MID
        return self._rule(
            kind, times, methods, seconds=seconds, fraction=fraction, repo_id=repo_id, path=path
        )

    def take(self, method: str, repo_id: str, path: str, range_header: str | None = None) -> Fault | None:
        """The first rule matching this request, with one use spent; ``None`` if the request is clean."""
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, repo_id, path):
                    fault.hits += 1
                    self.applied.append(AppliedFault(fault.kind, method, repo_id, path, range_header))
                    return fault
        return None

    def pending(self) -> list[Fault]:
        """Rules that still have uses left."""
        with self._lock:
            return [f for f in self.faults if f.times is None or f.hits < f.times]

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.applied.clear()
