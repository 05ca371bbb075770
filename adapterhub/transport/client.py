"""The one HTTP transport: every GET adapterhub makes (blobs, index files, publish checks) goes here.

What it guarantees, so callers do not each re-invent it:

- **Typed failures.** Every ``requests`` / ``urllib3`` / socket exception becomes a
  :class:`~adapterhub.errors.DownloadError`: :class:`RetryableError` for what may pass (connection
  lost, timeout, cut body, 429, 5xx), :class:`RedirectError` / :class:`TransferTimeoutError` / plain
  ``DownloadError`` for what will not. A caller that tries several sources just moves on.
- **Retries** (:meth:`Transport.call`) with exponential backoff (``Retry-After`` honoured up to the
  backoff cap), inside one overall deadline per URL.
- **Redirects** followed here, not by ``requests``: at most ``max_redirects``, only to http(s) URLs.
- **Tokens** decided by :class:`~adapterhub.transport.tokens.TokenScope` for the URL a request starts
  at, and kept only while redirects stay on that origin. Callers pass ``token=``; an
  ``Authorization`` header they pass themselves is dropped.
- **Watchdogs.** The status line and headers must arrive within connect + read timeout (a timer shuts
  the socket down otherwise, so a server trickling header bytes cannot hold us); a body must keep
  ``min_rate`` bytes/s over each ``rate_window`` and finish inside the deadline; silence longer than
  the read timeout fails the read.
- **Size caps while streaming** (:meth:`Opened.read`): stops one byte past the cap, accumulating
  in a ``bytearray`` (linear, not ``body += chunk``).
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

from .._version import __version__
from ..digits import plain_int
from ..errors import (
    AdapterHubError,
    DownloadError,
    RedirectError,
    RetryableError,
    SizeLimitError,
    TransferTimeoutError,
)
from .options import FetchOptions
from .tokens import TokenScope, origin_of

T = TypeVar("T")
CHUNK = 1 << 20
REDIRECTS = (301, 302, 303, 307, 308)
USER_AGENT = f"adapterhub/{__version__}"


class Deadline:
    """The moment one URL's transfer (all attempts) must be done by."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def passed(self, url: str) -> TransferTimeoutError:
        return TransferTimeoutError(f"{url}: not done after {self.seconds:g}s, the deadline for one download",
                                    hint="raise ADAPTERHUB_DEADLINE if the link is slow")


# --- header watchdog -----------------------------------------------------------------------------

_current = threading.local()


class _HeaderWatch:
    """Shut the request's socket down if the response headers have not arrived within ``seconds``.

    The connection classes below hand their socket to the watch of the request running on this
    thread; the process's :class:`_Watchdog` then cuts a server that sends its status line one byte
    at a time.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = max(seconds, 0.001)
        self.due = time.monotonic() + self.seconds
        self.fired = False
        self.done = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def attach(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            if self.fired and sock is not None:
                _shutdown(sock)

    def fire(self) -> None:
        with self._lock:
            if self.done:  # the headers arrived first
                return
            self.fired = True
            if self._sock is not None:
                _shutdown(self._sock)

    def __enter__(self) -> _HeaderWatch:
        _current.watch = self
        _WATCHDOG.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._sock = None
            self.done = True
        _current.watch = None


class _Watchdog:
    """One thread per process fires every :class:`_HeaderWatch` whose time is up.

    A timer thread per request would cost a thread start on every request's critical path, and
    ``Thread.start`` waits until the new thread holds the GIL: up to the interpreter's switch
    interval (5 ms) when another thread is running Python, as a download's hashing and its other
    files' streams do. Finished watches are dropped when they reach the front of the queue.
    """

    def __init__(self) -> None:
        self._pid: int | None = None
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, _HeaderWatch]] = []
        self._order = itertools.count()

    def add(self, watch: _HeaderWatch) -> None:
        if self._pid != os.getpid():  # first use, or a forked child: the parent's thread is not here
            self._start()
        with self._cond:
            heapq.heappush(self._queue, (watch.due, next(self._order), watch))
            if self._queue[0][2] is watch:
                self._cond.notify()

    def _start(self) -> None:
        with _WATCHDOG_START:
            if self._pid == os.getpid():
                return
            self._cond = threading.Condition()
            self._queue = []
            threading.Thread(target=self._run, name="adapterhub-header-watchdog", daemon=True).start()
            self._pid = os.getpid()

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._queue and self._queue[0][2].done:
                    heapq.heappop(self._queue)
                if not self._queue:
                    self._cond.wait()
                    continue
                wait = self._queue[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._queue)[2].fire()


_WATCHDOG_START = threading.Lock()
_WATCHDOG = _Watchdog()


def _shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _attach(sock: socket.socket | None) -> None:
    watch = getattr(_current, "watch", None)
    if watch is not None:
        watch.attach(sock)


def _session() -> Any:
    """A ``requests`` session (its own cookies and settings) over the process's connection pool."""
    import requests

    session = requests.Session()
    adapter = shared_adapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


_SHARED_ADAPTER: tuple[int, Any] | None = None
_SHARED_ADAPTER_LOCK = threading.Lock()


def shared_adapter() -> Any:
    """The process's connection pool: a ``requests`` adapter whose connections report to the header watchdog.

    Every transport mounts this one, so a pull reuses the keep-alive connection the previous pull (or the
    previous adapter of a composition) left open instead of paying a new TCP (and TLS) handshake each time.
    Only connections are shared: each transport keeps its own session, so cookies stay with it, and tokens
    are set per request (the scope rules). A forked child makes its own (the parent's sockets are not its).
    """
    global _SHARED_ADAPTER
    with _SHARED_ADAPTER_LOCK:
        if _SHARED_ADAPTER is None or _SHARED_ADAPTER[0] != os.getpid():
            _SHARED_ADAPTER = (os.getpid(), _watched_adapter()(pool_connections=8, pool_maxsize=16))
        return _SHARED_ADAPTER[1]


@functools.cache
def _watched_adapter() -> type:
    """The ``requests`` adapter class whose connections report to the watchdog (built once per process:
    six classes cost more than the session itself)."""
    import requests
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class Watched:
        def connect(self) -> None:
            super().connect()  # type: ignore[misc]
            _attach(self.sock)  # type: ignore[attr-defined]

        def getresponse(self, *args: Any, **kwargs: Any) -> Any:
            _attach(getattr(self, "sock", None))  # a reused keep-alive connection
            return super().getresponse(*args, **kwargs)  # type: ignore[misc]

    class WatchedHTTPConnection(Watched, HTTPConnection):
        pass

    class WatchedHTTPSConnection(Watched, HTTPSConnection):
        pass

    class WatchedHTTPPool(HTTPConnectionPool):
        ConnectionCls = WatchedHTTPConnection

    class WatchedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = WatchedHTTPSConnection

    class WatchedAdapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": WatchedHTTPPool, "https": WatchedHTTPSPool}

    return WatchedAdapter


# --- errors --------------------------------------------------------------------------------------


def transport_error(exc: BaseException, url: str, options: FetchOptions) -> AdapterHubError:
    """The typed error for an exception raised by ``requests``/``urllib3``/sockets during ``url``."""
    import http.client

    import requests
    from urllib3 import exceptions as u3

    if isinstance(exc, AdapterHubError):
        return exc
    detail = f"{type(exc).__name__}: {str(exc)[:300]}"
    if isinstance(exc, (requests.Timeout, u3.TimeoutError, TimeoutError)):
        return RetryableError(f"{url}: timed out: no data for {options.read_timeout:g}s (server stalled) [{detail}]")
    if isinstance(exc, requests.TooManyRedirects):
        return RedirectError(f"{url}: {detail}")
    if isinstance(exc, (requests.exceptions.SSLError, u3.SSLError)):
        return DownloadError(f"{url}: TLS failed: {detail}", hint="check the certificate (REQUESTS_CA_BUNDLE)")
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                        requests.exceptions.MissingSchema, requests.exceptions.InvalidHeader,
                        requests.exceptions.ContentDecodingError, u3.DecodeError, u3.LocationParseError)):
        return DownloadError(f"{url}: the server's answer is malformed or unusable: {detail}")
    if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, u3.HTTPError,
                        http.client.HTTPException, OSError)):
        return RetryableError(f"{url}: connection failed or broke off: {detail}")
    if isinstance(exc, (requests.RequestException, ValueError)):
        return DownloadError(f"{url}: {detail}")
    raise exc


def _retry_after(value: str | None, cap: float) -> float | None:
    try:
        return min(max(float(value), 0.0), cap) if value else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def header_int(value: str | None) -> int | None:
    """A byte count from a header (``Content-Length``, ``X-Linked-Size``): plain digits, at most 19 of them
    (below 2**63), else None. ``int()`` alone would accept signs, spaces and underscores, and raises
    ValueError past 4,300 digits: a hostile header must not become an exception we did not type."""
    return plain_int((value or "").strip())


def _within_server(location: str | None) -> bool:
    """A redirect to a path on the same server (no scheme, no host), as the Hub sends for a renamed repo."""
    return bool(location) and not urlsplit(location).netloc and not urlsplit(location).scheme


# --- one response ----------------------------------------------------------------------------------


class Opened:
    """A response whose headers arrived; the body is read through the watchdogs."""

    def __init__(self, response: Any, url: str, transport: Transport, deadline: Deadline) -> None:
        self._response = response
        self.url = url
        """The final URL, after redirects."""
        self.status: int = response.status_code
        self.reason: str = response.reason or ""
        self.headers: Mapping[str, str] = response.headers
        self._options = transport.options
        self._deadline = deadline

    def __enter__(self) -> Opened:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._response.close()

    def raise_for_retryable(self) -> None:
        """429 and 5xx: worth another attempt (after ``Retry-After`` when the server says so)."""
        if self.status == 429 or self.status >= 500:
            raise RetryableError(f"{self.url}: HTTP {self.status} {self.reason}".rstrip(),
                                 retry_after=_retry_after(self.headers.get("Retry-After"), self._options.max_backoff))

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The body as it arrives (``read1``: whatever came, up to ``size``), under the watchdogs.

        A body sent without a content coding (we ask for ``identity``) is read without urllib3's
        decoding layer, which would copy every chunk through its buffer for nothing."""
        opts = self._options
        raw = self._response.raw
        coding = (self.headers.get("Content-Encoding") or "").strip().lower()
        decode = coding not in ("", "identity")
        mark_time, mark_bytes, total = time.monotonic(), 0, 0
        while True:
            try:
                chunk = raw.read1(size, decode_content=decode)
            except Exception as exc:
                raise transport_error(exc, self.url, opts) from None
            if not chunk:
                return
            total += len(chunk)
            now = time.monotonic()
            if now > self._deadline.end:
                raise self._deadline.passed(self.url)
            if opts.min_rate > 0 and now - mark_time >= opts.rate_window:
                got, span = total - mark_bytes, now - mark_time
                if got < opts.min_rate * span:
                    raise TransferTimeoutError(
                        f"{self.url}: too slow: {got} bytes in the last {span:.1f}s, below the minimum "
                        f"{opts.min_rate:g} bytes/s", hint="ADAPTERHUB_MIN_RATE / ADAPTERHUB_RATE_WINDOW set the limit")
                mark_time, mark_bytes = now, total
            yield chunk

    def read(self, max_bytes: int) -> bytes:
        """The whole body; :class:`SizeLimitError` as soon as it passes ``max_bytes``."""
        body = bytearray()
        for chunk in self.chunks(min(CHUNK, max_bytes + 1)):
            body += chunk
            if len(body) > max_bytes:
                raise SizeLimitError(f"{self.url}: the body is larger than {max_bytes} bytes; refusing the rest")
        return bytes(body)


@dataclass(frozen=True)
class Fetched:
    """A small body read whole (index files, manifests)."""

    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes


# --- the transport -----------------------------------------------------------------------------------


class Transport:
    """One ``requests`` session plus the rules in the module docstring; share it across threads."""

    def __init__(self, options: FetchOptions | None = None, scope: TokenScope | None = None) -> None:
        self.options = options or FetchOptions.from_env()
        self._scope = scope
        self._session: Any = None
        self._lock = threading.Lock()

    @property
    def scope(self) -> TokenScope:
        if self._scope is None:
            self._scope = TokenScope.configured()
        return self._scope

    @property
    def session(self) -> Any:
        with self._lock:
            if self._session is None:
                self._session = _session()
            return self._session

    def close(self) -> None:
        """Drop this transport's session (its cookies); the process's connections stay for the next one
        (:func:`shared_adapter`: closing the session would close them for every transport)."""
        with self._lock:
            self._session = None

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one attempt -----------------------------------------------------------------------------

    def open(self, url: str, *, headers: Mapping[str, str] | None = None, token: str | bool | None = None,
             deadline: Deadline | None = None, on_answer: Callable[[Any], None] | None = None) -> Opened:
        """GET ``url`` once, following redirects; the caller reads (and closes) the response.

        ``on_answer`` sees the server's own answer before anything else happens to it: the first
        response that is not a redirect within the server (a relative ``Location``, e.g. a renamed
        repository), which is the response ``huggingface_hub``'s metadata call reads. It gets the
        ``requests`` response (headers in, body unread) before its redirect, if any, is followed (to a
        CDN); whatever it raises ends the request, with the response closed.
        """
        deadline = deadline or Deadline(self.options.deadline)
        base = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        base.update({k: v for k, v in (headers or {}).items() if k.lower() != "authorization"})
        start = origin_of(url)
        if start is None:
            raise DownloadError(f"{url!r}: only http(s) URLs can be downloaded")
        secret = self.scope.token_for(url, token)
        current = url
        for _ in range(self.options.max_redirects + 1):
            sent = dict(base)
            if secret and origin_of(current) == start:
                sent["Authorization"] = f"Bearer {secret}"
            response = self._get(current, sent, deadline)
            location = response.headers.get("Location")
            if on_answer is not None and not (response.status_code in REDIRECTS and _within_server(location)):
                try:
                    on_answer(response)
                except BaseException:
                    response.close()
                    raise
                on_answer = None
            if response.status_code not in REDIRECTS or not location:
                return Opened(response, current, self, deadline)
            response.close()
            target = urljoin(current, location)
            if origin_of(target) is None:
                raise RedirectError(f"{url}: redirected to {target[:200]!r}; only http(s) redirects are followed")
            current = target
        raise RedirectError(f"{url}: more than {self.options.max_redirects} redirects (last to {current})",
                            hint="a redirect loop on the server; ADAPTERHUB_MAX_REDIRECTS sets the limit")

    def _get(self, url: str, headers: dict[str, str], deadline: Deadline) -> Any:
        opts = self.options
        left = deadline.remaining()
        if left <= 0:
            raise deadline.passed(url)
        connect, read = min(opts.connect_timeout, left), min(opts.read_timeout, left)
        response = None
        with _HeaderWatch(min(connect + read, left)) as watch:
            try:
                response = self.session.get(url, headers=headers, stream=True, timeout=(connect, read),
                                            allow_redirects=False)
            except Exception as exc:
                if not watch.fired:
                    raise transport_error(exc, url, opts) from None
        if not watch.fired:
            return response
        if response is not None:  # cut mid-headers, http.client may have taken EOF as their end
            response.close()
        if watch.seconds >= left:
            raise deadline.passed(url)
        raise RetryableError(f"{url}: timed out: the response headers did not arrive within {watch.seconds:g}s")

    # -- retries -----------------------------------------------------------------------------------

    def call(self, attempt: Callable[[Deadline], T]) -> T:
        """Run ``attempt`` until it returns, retrying :class:`RetryableError` with backoff, all
        inside one deadline; other errors pass through at once."""
        opts = self.options
        deadline = Deadline(opts.deadline)
        tries = 0
        while True:
            try:
                return attempt(deadline)
            except RetryableError as exc:
                last = exc
            tries += 1
            wait = last.retry_after if last.retry_after is not None else opts.delay(tries)
            if tries > opts.retries or deadline.remaining() <= wait:
                raise DownloadError(f"giving up after {tries} attempt(s): {last.message}",
                                    hint="check the network or the server; raise ADAPTERHUB_RETRIES / "
                                         "ADAPTERHUB_READ_TIMEOUT if it is just slow") from None
            time.sleep(wait)

    def fetch(self, url: str, *, max_bytes: int, headers: Mapping[str, str] | None = None,
              token: str | bool | None = None, keep: tuple[int, ...] = ()) -> Fetched:
        """GET a small body with retries: 200 and the statuses in ``keep`` come back, 429/5xx are
        retried, anything else is a :class:`DownloadError`."""

        def attempt(deadline: Deadline) -> Fetched:
            with self.open(url, headers=headers, token=token, deadline=deadline) as resp:
                resp.raise_for_retryable()
                if resp.status != 200 and resp.status not in keep:
                    raise DownloadError(f"{resp.url}: HTTP {resp.status} {resp.reason}".rstrip())
                body = resp.read(max_bytes) if resp.status == 200 else b""
                return Fetched(resp.url, resp.status, resp.headers, body)

        return self.call(attempt)
