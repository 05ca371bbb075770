"""The process keeps its HTTP connections (transport/client.py ``shared_adapter``); nothing else is shared.

A pull used to open a new connection for every adapter (each transport had its own pool). Now every transport
mounts the process's pool: a second transport's request reuses the keep-alive connection the first one left.
Cookies stay with the transport that received them, and a forked child opens its own connections.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from adapterhub.transport import Transport
from adapterhub.transport.client import shared_adapter


class CountingServer:
    """HTTP/1.1 keep-alive on 127.0.0.1; counts accepted connections; ``/cookie`` sets a cookie."""

    def __init__(self) -> None:
        self.connections = 0
        self.cookies_seen: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                server.connections += 1
                super().setup()

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                server.cookies_seen.append(self.headers.get("Cookie"))
                body = b"hello"
                self.send_response(200)
                if self.path == "/cookie":
                    self.send_header("Set-Cookie", "session=secret; Path=/")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def counting() -> Iterator[CountingServer]:
    server = CountingServer()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def get(transport: Transport, url: str) -> bytes:
    opened = transport.open(url)
    try:
        return b"".join(opened.chunks())
    finally:
        opened.close()


def test_a_second_transport_reuses_the_first_ones_connection(counting):
    first, second = Transport(), Transport()
    assert get(first, counting.url("/a")) == b"hello"
    first.close()
    assert get(second, counting.url("/b")) == b"hello"
    assert get(Transport(), counting.url("/c")) == b"hello"
    assert counting.connections == 1


def test_cookies_stay_with_the_transport_that_received_them(counting):
    first, second = Transport(), Transport()
    get(first, counting.url("/cookie"))
    get(first, counting.url("/again"))
    get(second, counting.url("/other"))
    assert counting.cookies_seen == [None, "session=secret", None]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_a_forked_child_opens_its_own_connections(counting):
    get(Transport(), counting.url("/parent"))
    parent_pool = shared_adapter()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether it got a pool of its own and could download
        ok = shared_adapter() is not parent_pool and get(Transport(), counting.url("/child")) == b"hello"
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.close(write)
    assert os.read(read, 1) == b"1"
    os.waitpid(pid, 0)
    assert shared_adapter() is parent_pool
    assert counting.connections == 2  # the child's own
