"""The HTTP layer: read a request, route it, call the endpoint, write the response.

This is the only module that touches sockets. It speaks HTTP/1.1 with keep-alive (clients reuse
connections), streams file bodies with ``socket.sendfile`` (zero-copy where the OS has it), bounds
and drains request bodies so a refused request never desynchronises a kept-alive connection, and
turns every ``HubApiError`` into the JSON + ``X-Error-*`` answer the client expects.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler
from typing import IO

from adapterhub._version import __version__

from . import download, info, model_list, routes, upload
from .context import BodyReader, RequestContext, ServerState
from .errors import BadRequest, HubApiError, LengthRequired, PayloadTooLarge
from .httpd import HubHTTPServer
from .responses import FileSlice, Literal, Pause, Response, error_response

logger = logging.getLogger("adapterhub.server")

Endpoint = Callable[[RequestContext, routes.Route], Response]

ENDPOINTS: dict[str, Endpoint] = {
    "resolve": download.resolve,
    "repo_info": info.repo_info,
    "tree": info.tree,
    "paths_info": info.paths_info,
    "refs": info.refs,
    "commits": info.commits,
    "whoami": info.whoami,
    "list_repos": model_list.list_repos,
    "create_repo": upload.create_repo,
    "validate_yaml": upload.validate_yaml,
    "preupload": upload.preupload,
    "commit": upload.commit,
}

_DRAIN_LIMIT = 256 << 20
"""Unread body bytes we still swallow to keep the connection usable; beyond this we close it."""

_HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?")


class HubRequestHandler(BaseHTTPRequestHandler):
    """One connection; ``http.server`` calls ``do_<METHOD>`` once per request on it."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    """TCP_NODELAY: the headers and a small body go out as two writes; with Nagle the body waited for
    the client's delayed ACK (~40 ms on Linux) on every request after the first on a kept-alive connection."""
    server_version = f"adapterhub-server/{__version__}"
    sys_version = ""
    server: HubHTTPServer

    def setup(self) -> None:
        self.timeout = self.server.state.config.socket_timeout
        super().setup()

    # One entry point for every method; the router answers 405 where a method does not fit.
    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    @property
    def state(self) -> ServerState:
        return self.server.state

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    # --- request ----------------------------------------------------------------------------

    def _handle(self) -> None:
        body: BodyReader | None = None
        try:
            body = self._body_reader()
            url = routes.split_url(self.path)
            route = routes.match(self.command, url.path)
            caller = self.state.config.auth.identify(self.headers.get("Authorization"))
            ctx = RequestContext(
                state=self.state,
                method=self.command,
                headers=self.headers,  # type: ignore[arg-type]  # email.message.Message reads like a Mapping
                query=url.query,
                base_url=self._base_url(),
                body=body,
                caller=caller,
            )
            self._authorize(ctx, route)
            response = ENDPOINTS[route.name](ctx, route)
        except HubApiError as error:
            response = error_response(error)
        except Exception:
            logger.exception("internal error while handling %s %s", self.command, self.path[:300])
            response = error_response(HubApiError("internal server error"))
        self._finish_body(body)
        self._send(response)

    def _body_reader(self) -> BodyReader:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise LengthRequired("chunked request bodies are not supported; send Content-Length")
        raw = self.headers.get("Content-Length", "0") or "0"
        try:
            length = int(raw)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise BadRequest(f"invalid Content-Length {raw!r}")
        if length > self.state.config.max_body_bytes:
            self.close_connection = True
            raise PayloadTooLarge(
                f"request body of {length} bytes exceeds {self.state.config.max_body_bytes}"
            )
        return BodyReader(self.rfile, length)

    def _finish_body(self, body: BodyReader | None) -> None:
        """Swallow what the endpoint did not read, or give up the connection if that is too much."""
        if body is None or body.remaining == 0:
            return
        if body.remaining > _DRAIN_LIMIT:
            self.close_connection = True
            return
        try:
            body.drain()
        except (HubApiError, OSError):
            self.close_connection = True

    def _authorize(self, ctx: RequestContext, route: routes.Route) -> None:
        """Refuse before the endpoint runs (and before any body is read) what the caller may not do.

        ``create`` is checked again by the endpoint once the body names the repository.
        """
        caller = ctx.caller
        if route.access == "user":
            caller.require_token()
        elif route.access == "create":
            caller.require_writer()
        elif route.repo is not None and route.access in ("read", "write"):
            private = ctx.storage.is_private(route.repo)
            if route.access == "read":
                caller.check_read(route.repo, bool(private))
            else:
                caller.check_write(route.repo, private)

    def _base_url(self) -> str:
        public = self.state.config.public_url
        if public:
            return public.rstrip("/")
        host = self.headers.get("Host", "")
        if not _HOST.fullmatch(host):
            address, port = self.server.server_address[:2]
            host = f"[{address}]:{port}" if ":" in str(address) else f"{address}:{port}"
        return f"http://{host}"

    # --- response ---------------------------------------------------------------------------

    def _send(self, response: Response) -> None:
        stop = self.state.stop_event
        if response.delay and stop.wait(response.delay):
            self.close_connection = True
            return
        with ExitStack() as files:
            try:
                # Open before the status line goes out, so a missing blob can still become a 500.
                opened = {
                    seg.path: files.enter_context(open(seg.path, "rb"))
                    for seg in response.body
                    if isinstance(seg, FileSlice) and self.command != "HEAD"
                }
            except OSError:
                logger.exception("stored blob unreadable for %s", self.path[:300])
                response, opened = error_response(HubApiError("stored file is unreadable")), {}
            self.send_response(response.status)
            for name, value in response.headers:
                self.send_header(name, value)
            if response.close or self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command == "HEAD":
                return
            try:
                for segment in response.body:
                    if not self._send_segment(segment, opened):
                        self.close_connection = True
                        return
            except (BrokenPipeError, ConnectionResetError, TimeoutError) as exc:
                logger.debug("client went away during %s %s: %s", self.command, self.path[:300], exc)
                self.close_connection = True
        if response.close:
            self.close_connection = True

    def _send_segment(self, segment: FileSlice | Literal | Pause, opened: dict[object, IO[bytes]]) -> bool:
        """Send one piece of the body; ``False`` if the connection must end here."""
        if isinstance(segment, Literal):
            self.wfile.write(segment.data)
            return True
        if isinstance(segment, Pause):
            return not self.state.stop_event.wait(segment.seconds)
        if segment.length == 0:
            return True
        sent = self.connection.sendfile(opened[segment.path], segment.offset, segment.length)
        return sent == segment.length
