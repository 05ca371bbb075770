"""Start and stop a server: in a background thread (tests, benchmarks) or in the foreground (CLI).

Binds 127.0.0.1 unless told otherwise; port 0 picks a free port, and ``endpoint`` tells which one.
Stopping closes the listening socket and also every open client connection, so a test's teardown
never waits on a kept-alive connection or a stalled fault.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from .auth import AuthPolicy, TokenGrant
from .context import DEFAULT_MAX_BODY_BYTES, ServerConfig, ServerState
from .faults import FaultPlan
from .handler import HubRequestHandler
from .httpd import HubHTTPServer
from .storage import HubStorage


class HubServer:
    """A Hub-compatible server over a storage root.

    ``start()`` runs it in a daemon thread and returns the endpoint URL; ``serve_forever()`` runs it
    in the calling thread; ``stop()`` ends either. Usable as a context manager (``with HubServer(..)
    as server: server.endpoint``).

    ``tokens`` are :class:`TokenGrant` objects (who may write or read what). Without any, and without
    ``allow_anonymous_writes=True``, the server only serves public repositories.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: Iterable[TokenGrant] = (),
        allow_anonymous_writes: bool = False,
        public_url: str | None = None,
        fault_plan: FaultPlan | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        tree_page_size: int = 1000,
        socket_timeout: float = 60.0,
    ) -> None:
        self.storage = HubStorage(root)
        grants = tuple(tokens)
        if not all(isinstance(g, TokenGrant) for g in grants):
            raise TypeError("tokens must be TokenGrant objects (e.g. TokenGrant(token, user, write={'acme'}) "
                            "or TokenGrant.admin_token(token)): a bare token string grants no namespace")
        self.config = ServerConfig(
            auth=AuthPolicy(grants, allow_anonymous_writes),
            public_url=public_url,
            fault_plan=fault_plan,
            max_body_bytes=max_body_bytes,
            tree_page_size=tree_page_size,
            socket_timeout=socket_timeout,
        )
        self.state = ServerState(self.storage, self.config)
        self.httpd = HubHTTPServer((host, port), self.state, HubRequestHandler)
        self._thread: threading.Thread | None = None
        self._serving = threading.Event()

    @property
    def fault_plan(self) -> FaultPlan | None:
        return self.config.fault_plan

    @property
    def endpoint(self) -> str:
        """``http://host:port`` as clients should use it (``HF_ENDPOINT`` / ``endpoint=``)."""
        host, port = self.httpd.server_address[:2]
        host = str(host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def start(self) -> str:
        """Serve in a background daemon thread; returns the endpoint URL."""
        if self._thread is None:
            self._serving.set()
            self._thread = threading.Thread(
                target=self.httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="adapterhub-server",
                daemon=True,
            )
            self._thread.start()
        return self.endpoint

    def serve_forever(self) -> None:
        """Serve in the calling thread until ``stop()`` (from another thread) or KeyboardInterrupt."""
        self._serving.set()
        try:
            self.httpd.serve_forever(poll_interval=0.2)
        finally:
            self._close()

    def stop(self) -> None:
        self.state.stop_event.set()
        if self._serving.is_set():
            self._serving.clear()
            self.httpd.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._close()

    def _close(self) -> None:
        self.state.stop_event.set()
        self.httpd.close_connections()
        self.httpd.server_close()

    def __enter__(self) -> HubServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextmanager
def serve_in_thread(
    root: Path | str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    tokens: Iterable[TokenGrant] = (),
    fault_plan: FaultPlan | None = None,
    **options: object,
) -> Iterator[str]:
    """Run a server over ``root`` for the duration of a ``with`` block; yields the endpoint URL."""
    server = HubServer(root, host=host, port=port, tokens=tokens, fault_plan=fault_plan, **options)  # type: ignore[arg-type]
    try:
        yield server.start()
    finally:
        server.stop()
