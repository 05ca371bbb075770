"""A scripted HTTP server on 127.0.0.1 for transport tests: it misbehaves exactly as told, and records.

The Hub server's :class:`~adapterhub.server.FaultPlan` reshapes Hub downloads (errors, cut bodies,
stalls, wrong ranges). This one covers what a Hub-shaped server cannot express: raw status lines and
headers (malformed ``Content-Length``, redirects anywhere), chunked bodies cut mid-way, bodies that
never end, and bytes trickled one at a time (also inside the headers). It writes the bytes itself,
so nothing in ``http.server`` tidies them up.

Usage::

    with ScriptedServer() as server:
        server.route("/f", Reply(503), Reply(body=b"ok"))   # first a 503, then "ok" for ever
        ...GET server.url("/f")...
        assert server.seen("/f")[0]["authorization"] is None
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    """One scripted answer."""

    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | Callable[[], Iterator[bytes]] = b""
    """Bytes, or a function returning an iterator of chunks (an endless body, a generated one)."""
    length: str | None = "auto"
    """``Content-Length`` value: ``"auto"`` (the body's length), ``None`` (none), or any raw text."""
    chunked: bool = False
    """Send the body with ``Transfer-Encoding: chunked``."""
    cut_chunked: bool = False
    """With ``chunked``: close the connection before the terminating zero-size chunk."""
    trickle: float = 0.0
    """Seconds between single bytes of the body."""
    header_trickle: float = 0.0
    """Seconds between single bytes of the status line and headers."""
    close: bool = True


def redirect(location: str, status: int = 302) -> Reply:
    return Reply(status, [("Location", location)])


def endless(chunk: bytes = b"x" * 65536) -> Callable[[], Iterator[bytes]]:
    def body() -> Iterator[bytes]:
        while True:
            yield chunk

    return body


class ScriptedServer:
    """Answers each path from its queue of replies (the last one repeats); 404 for unknown paths."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.log: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                server._answer(self)

            def do_HEAD(self) -> None:  # noqa: N802
                server._answer(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.origin + path

    def route(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self.routes[path] = list(replies)

    def seen(self, path: str | None = None) -> list[dict[str, str]]:
        """Headers (lower-cased names) of every request, or of those for ``path``."""
        with self._lock:
            return [h for p, h in self.log if path is None or p == path]

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- serving -----------------------------------------------------------------------------------

    def _next(self, path: str) -> Reply | None:
        with self._lock:
            queue = self.routes.get(path)
            if not queue:
                return None
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path
        with self._lock:
            self.log.append((path, {k.lower(): v for k, v in handler.headers.items()}))
        reply = self._next(path) or Reply(404, body=b"not found")
        body = reply.body if isinstance(reply.body, bytes) else None
        head = [f"HTTP/1.1 {reply.status} Scripted"]
        head += [f"{k}: {v}" for k, v in reply.headers]
        if reply.chunked:
            head.append("Transfer-Encoding: chunked")
        elif reply.length == "auto" and body is not None:
            head.append(f"Content-Length: {len(body)}")
        elif reply.length not in (None, "auto"):
            head.append(f"Content-Length: {reply.length}")
        if reply.close:
            head.append("Connection: close")
        raw_head = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        handler.close_connection = True
        try:
            self._send(handler, raw_head, reply.header_trickle)
            if handler.command == "HEAD":
                return
            chunks: Iterator[bytes] = iter([body]) if body is not None else reply.body()  # type: ignore[operator]
            for chunk in chunks:
                if not chunk:
                    continue
                if reply.chunked:
                    chunk = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
                if not self._send(handler, chunk, reply.trickle):
                    return
            if reply.chunked and not reply.cut_chunked:
                handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
        except OSError:
            return  # the client went away: expected for most faults
        finally:
            if reply.cut_chunked or reply.close:
                with contextlib.suppress(OSError):
                    handler.connection.shutdown(socket.SHUT_RDWR)

    def _send(self, handler: BaseHTTPRequestHandler, data: bytes, trickle: float) -> bool:
        if not trickle:
            handler.wfile.write(data)
            return not self._stop.is_set()
        for i in range(len(data)):
            handler.wfile.write(data[i:i + 1])
            handler.wfile.flush()
            if self._stop.is_set():
                return False
            time.sleep(trickle)
        return True


