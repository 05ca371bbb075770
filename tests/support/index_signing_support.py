"""A signed registry index served over HTTP on 127.0.0.1, and the means to attack it.

``signed_repo`` builds an index of a few adapters, signs it with a throwaway keyring and serves it from a
directory the test can swap (an older copy for rollback, a tampered copy for a malicious mirror) or
override per path (endless bodies). The client's trust store and caches live under ``tmp_path``.
The ``signed_repo`` fixture lives in ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from adapterhub.manifest import parse_manifest
from adapterhub.registry import add_release, open_index
from adapterhub.registry.entries import manifest_sha256
from adapterhub.registry.keys import Keyring
from adapterhub.registry.signing import sign_index
from adapterhub.registry.trust import pin_root
from support.manifest_samples import manifest_with

NAMES = ["adapter-00", "adapter-01", "adapter-02"]


class IndexServer:
    """A static file server whose root and per-path responses a test can change while it runs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.overrides: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                path = self.path.split("?")[0]
                server.requests.append(path)
                if path in server.overrides:
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        server.overrides[path](self)
                    return
                target = (server.root / path.lstrip("/")).resolve()
                if not target.is_file() or server.root.resolve() not in target.parents:
                    self.send_error(404)
                    return
                body = target.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def endless(handler: BaseHTTPRequestHandler) -> None:
    """A 200 response that never ends (no Content-Length): the endless-data attack."""
    handler.send_response(200)
    handler.end_headers()
    chunk = b" " * 65536
    for _ in range(100_000):  # ~6.5 GB: far more than any cap, and finite so a broken client cannot hang CI
        handler.wfile.write(chunk)


@dataclass
class SignedRepo:
    """The publisher's index directory and keys, the server in front of it, the client's directories."""

    root: Path
    keys: Keyring
    server: IndexServer
    tmp: Path
    trust_dir: Path
    states: dict[str, Path] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.url

    def sign(self, **kwargs: Any):
        return sign_index(self.root, self.keys, **kwargs)

    def snapshot(self, label: str) -> Path:
        """Copy the index as it is now (to serve it later: an old state, or a mirror to tamper with)."""
        dest = self.tmp / f"state-{label}"
        shutil.copytree(self.root, dest)
        self.states[label] = dest
        return dest

    def serve(self, directory: Path) -> None:
        self.server.root = directory

    def recreate(self, keys: Keyring, **kwargs: Any) -> None:
        """Sign the index from scratch with ``keys`` (other thresholds, more keys) and pin the new root."""
        shutil.rmtree(self.root / "metadata")
        self.keys = keys
        sign_index(self.root, keys, **kwargs)
        self.pin()

    def pin(self) -> None:
        pin_root(self.url, (self.root / "metadata" / "1.root.json").read_bytes(), trust_dir=self.trust_dir)

    def client(self, *, trusted: bool = True):
        """A fresh client (new process as far as state goes): reads the persisted trust state."""
        trust = self.trust_dir if trusted else self.tmp / "no-trust"
        return open_index(self.url, offline=False, cache_dir=self.tmp / "client-cache", trust_dir=trust)


def add(root: Path, name: str, version: str, **extra: Any) -> None:
    add_release(root, parse_manifest(manifest_with(name, version, **extra)))


def tamper_entry(directory: Path, name: str, new_sha: str) -> None:
    """Rewrite every line of ``name``'s entry file: new file sha256, manifest_sha256 recomputed to match.

    This is what a malicious mirror or a man in the middle does: the entry stays well-formed and
    self-consistent, so only the signed metadata can tell.
    """
    from adapterhub.registry.layout import entry_path

    path = directory / entry_path(name)
    lines = []
    for raw in path.read_text().splitlines():
        obj = json.loads(raw)
        obj["manifest"]["files"][0]["sha256"] = new_sha
        obj["manifest_sha256"] = manifest_sha256(obj["manifest"])
        lines.append(json.dumps(obj, sort_keys=True, separators=(",", ":")))
    path.write_text("\n".join(lines) + "\n")


def past(days: int) -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0) - timedelta(days=days)
