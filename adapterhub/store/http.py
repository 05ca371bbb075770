"""Streaming HTTP GET into a :class:`BlobWriter`, with retries, backoff and safe resume.

Resume rules (the reasons are in the registry-security notes, section 6): a retry after a broken
transfer asks for ``Range: bytes=<offset>-`` *into our own temp file*. A ``206`` whose
``Content-Range`` starts exactly at our offset continues the file; a ``200`` (the server ignored the
Range) or a ``206`` starting anywhere else resets the file to zero, and the next request asks for the
whole file. The final sha256 always covers every byte, so a resumed prefix is never trusted blindly.

Retried: connection errors, timeouts (a stalled server), broken streams, 429 and 5xx. Not retried:
404/410 (the file is not there: try the next source), other 4xx, and anything the writer refuses
(too many bytes).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from typing import Any

from ..errors import DownloadError, IntegrityError, NotFoundError, SizeLimitError
from .options import FetchOptions
from .writer import BlobWriter

CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$")


class _Restart(Exception):
    """The server answered a Range request wrongly; start over without Range."""


def _content_range_start(value: str | None) -> tuple[int, int | None] | None:
    m = _CONTENT_RANGE.match(value or "")
    if not m:
        return None
    total = None if m[3] == "*" else int(m[3])
    return int(m[1]), total


class HttpFetcher:
    """One ``requests`` session shared by every HTTP-based source of a pull."""

    def __init__(self, options: FetchOptions | None = None) -> None:
        self.options = options or FetchOptions.from_env()
        self._session: Any = None
        self._lock = threading.Lock()

    @property
    def session(self) -> Any:
        """One ``requests`` session (its connection pool is shared by parallel file downloads)."""
        with self._lock:
            if self._session is None:
                import requests

                self._session = requests.Session()
            return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def download(self, url: str, writer: BlobWriter, *, headers: Mapping[str, str] | None = None) -> None:
        """Fill ``writer`` with the body of ``url`` (resuming from ``writer.offset``)."""
        import requests
        from urllib3.exceptions import HTTPError as Urllib3Error

        transport_errors = (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                            Urllib3Error)
        opts = self.options
        attempt = 0
        last: str = ""
        while True:
            try:
                self._attempt(url, writer, headers or {})
                return
            except _Restart as exc:
                writer.reset()
                last = str(exc)
            except transport_errors as exc:
                last = _describe(exc, opts)
            except _Transient as exc:
                last = str(exc)
            attempt += 1
            if attempt > opts.retries:
                raise DownloadError(f"{url}: giving up after {attempt} attempt(s): {last}",
                                    hint="check the network or the server; raise ADAPTERHUB_RETRIES / "
                                         "ADAPTERHUB_READ_TIMEOUT if it is just slow")
            time.sleep(opts.delay(attempt))

    def _attempt(self, url: str, writer: BlobWriter, headers: Mapping[str, str]) -> None:
        request_headers = {**headers, "Accept-Encoding": "identity"}
        offset = writer.offset
        if offset:
            request_headers["Range"] = f"bytes={offset}-"
        resp = self.session.get(url, headers=request_headers, stream=True, timeout=self.options.timeout)
        with resp:
            status = resp.status_code
            if status in (404, 410):
                raise NotFoundError(f"{url}: HTTP {status}, not found on this source")
            if status == 429 or status >= 500:
                raise _Transient(f"HTTP {status}")
            if status == 416 and offset:
                raise _Restart("the server refused our resume range (416)")
            if status not in (200, 206):
                raise DownloadError(f"{url}: HTTP {status} {resp.reason or ''}".rstrip())
            if status == 200 and offset:
                writer.reset()  # the server ignored Range: the body is the whole file
            elif status == 206:
                parsed = _content_range_start(resp.headers.get("Content-Range"))
                if not offset or parsed is None or parsed[0] != offset or (
                        parsed[1] is not None and writer.size is not None and parsed[1] != writer.size):
                    raise _Restart(f"wrong Content-Range {resp.headers.get('Content-Range')!r} for our "
                                   f"request from byte {offset}")
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and writer.offset + int(declared) > writer.limit:
                raise SizeLimitError(f"{writer.where}: {url} announces {writer.offset + int(declared)} bytes, "
                                     f"more than the {writer.limit} the manifest allows")
            start = writer.offset
            _stream(resp, writer)
        if writer.size is not None and writer.offset < writer.size:
            if declared and declared.isdigit() and writer.offset - start == int(declared):
                # The server sent all it announced, and that is short: its file is not ours.
                raise IntegrityError(f"{writer.where}: {url} served {writer.offset} bytes, the manifest says "
                                     f"{writer.size} (truncated file on the server)")
            raise _Transient("the connection ended early")


def _stream(resp: Any, writer: BlobWriter) -> None:
    """Copy the body into the writer as data arrives (``read1``), so a cut keeps what came."""
    raw = resp.raw
    read1 = getattr(raw, "read1", None)
    if read1 is None:  # pragma: no cover - urllib3 < 2
        for chunk in resp.iter_content(CHUNK):
            writer.write(chunk)
        return
    while True:
        chunk = read1(CHUNK, decode_content=True)
        if not chunk:
            return
        writer.write(chunk)


class _Transient(Exception):
    """A failure worth retrying (5xx, 429, a short read)."""


def _describe(exc: BaseException, opts: FetchOptions) -> str:
    text = str(exc)
    if "timed out" in text.lower() or "timeout" in type(exc).__name__.lower():
        return (f"timed out: no data for {opts.read_timeout:g}s (server stalled) "
                f"[{type(exc).__name__}]")
    return f"{type(exc).__name__}: {text[:300]}"
