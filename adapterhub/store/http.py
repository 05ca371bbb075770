"""Streaming an HTTP body into a :class:`BlobWriter`, with safe resume, over the shared transport.

Retries, redirects, deadlines, the minimum rate, token scoping and error typing are the transport's
(:mod:`adapterhub.transport`); this module adds what only a blob download needs.

Resume rules (the reasons are in the registry-security notes, section 6): a retry after a broken
transfer asks for ``Range: bytes=<offset>-`` *into our own temp file*. A ``206`` whose
``Content-Range`` starts exactly at our offset continues the file; a ``200`` (the server ignored the
Range) or a ``206`` starting anywhere else resets the file to zero, and the next request asks for the
whole file. The final sha256 always covers every byte, so a resumed prefix is never trusted blindly.

Retried: connection errors, timeouts (a stalled server), broken streams, 429 and 5xx. Not retried:
404/410 (the file is not there: try the next source), other 4xx, redirects to non-http(s) URLs,
a transfer past its deadline or below the minimum rate, and anything the writer refuses (too many
bytes).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import DownloadError, IntegrityError, NotFoundError, RetryableError, SizeLimitError
from ..transport import Deadline, FetchOptions, TokenScope, Transport, header_int
from .writer import BlobWriter

_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d{1,19})-(\d{1,19})/(\d{1,19}|\*)\s*$", re.ASCII)


def _content_range_start(value: str | None) -> tuple[int, int | None] | None:
    m = _CONTENT_RANGE.match(value or "")
    if not m:
        return None
    total = None if m[3] == "*" else int(m[3])
    return int(m[1]), total


class HttpFetcher:
    """Blob downloads over one :class:`Transport` (one connection pool for a pull's parallel files)."""

    def __init__(self, options: FetchOptions | None = None, *, scope: TokenScope | None = None,
                 transport: Transport | None = None) -> None:
        self.transport = transport or Transport(options, scope)

    @property
    def options(self) -> FetchOptions:
        return self.transport.options

    def close(self) -> None:
        self.transport.close()

    def download(self, url: str, writer: BlobWriter, *, headers: Mapping[str, str] | None = None,
                 token: str | bool | None = None, on_answer: Callable[[Any], None] | None = None) -> None:
        """Fill ``writer`` with the body of ``url`` (resuming from ``writer.offset``).

        ``token``: the caller's token (None: the user's stored one); the transport sends it only
        where :class:`TokenScope` allows. ``on_answer``: shown the server's own answer of each attempt
        before any byte of the body reaches ``writer`` (:meth:`Transport.open`); whatever it raises
        ends the download (the Hub source checks the commit, size and storage the Hub names there,
        see :class:`~adapterhub.store.sources.HubSource`).
        """

        def attempt(deadline: Deadline) -> None:
            self._attempt(url, writer, headers or {}, token, deadline, on_answer)

        self.transport.call(attempt)

    def _attempt(self, url: str, writer: BlobWriter, headers: Mapping[str, str], token: str | bool | None,
                 deadline: Deadline, on_answer: Callable[[Any], None] | None = None) -> None:
        request_headers = dict(headers)
        offset = writer.offset
        if offset:
            request_headers["Range"] = f"bytes={offset}-"
        with self.transport.open(url, headers=request_headers, token=token, deadline=deadline,
                                 on_answer=on_answer) as resp:
            status = resp.status
            if status in (404, 410):
                raise NotFoundError(f"{resp.url}: HTTP {status}, not found on this source")
            resp.raise_for_retryable()
            if status == 416 and offset:
                writer.reset()
                raise RetryableError("the server refused our resume range (416)")
            if status not in (200, 206):
                raise DownloadError(f"{resp.url}: HTTP {status} {resp.reason}".rstrip())
            if status == 200 and offset:
                writer.reset()  # the server ignored Range: the body is the whole file
            elif status == 206:
                parsed = _content_range_start(resp.headers.get("Content-Range"))
                if not offset or parsed is None or parsed[0] != offset or (
                        parsed[1] is not None and writer.size is not None and parsed[1] != writer.size):
                    writer.reset()
                    raise RetryableError(f"wrong Content-Range {resp.headers.get('Content-Range')!r} for our "
                                         f"request from byte {offset}")
            declared = header_int(resp.headers.get("Content-Length"))
            if declared is not None and writer.offset + declared > writer.limit:
                raise SizeLimitError(f"{writer.where}: {url} announces {writer.offset + declared} bytes, "
                                     f"more than the {writer.limit} the manifest allows")
            start = writer.offset
            for chunk in resp.chunks():
                writer.write(chunk)
        if writer.size is not None and writer.offset < writer.size:
            if declared is not None and writer.offset - start == declared:
                # The server sent all it announced, and that is short: its file is not ours.
                raise IntegrityError(f"{writer.where}: {url} served {writer.offset} bytes, the manifest says "
                                     f"{writer.size} (truncated file on the server)")
            raise RetryableError(f"{url}: the connection ended early")
