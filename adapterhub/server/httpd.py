"""The listening socket: a threading HTTP server that carries the shared state and its live connections.

Apart from :mod:`.app` so the request handler can name the server type it runs under without
importing the module that starts servers (the handler class is passed in).
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .context import ServerState

logger = logging.getLogger("adapterhub.server")


class HubHTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` that carries the shared state and tracks live connections."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], state: ServerState,
                 handler: type[BaseHTTPRequestHandler]) -> None:
        self.state = state
        self._live: set[socket.socket] = set()
        self._live_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        with self._live_lock:
            self._live.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self._live_lock:
            self._live.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hangs up mid-request is routine; anything else is logged with its traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            logger.debug("connection from %s ended: %s", client_address, error)
        else:
            logger.exception("error while serving %s", client_address)

    def close_connections(self) -> None:
        with self._live_lock:
            live, self._live = list(self._live), set()
        for sock in live:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
