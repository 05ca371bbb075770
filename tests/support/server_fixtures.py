"""Shared fixtures: an adapterhub server on 127.0.0.1 and the real ``huggingface_hub`` client aimed at it.

``huggingface_hub`` reads ``HF_ENDPOINT`` (and ``HF_HUB_OFFLINE``, the token path...) once, at import,
into ``huggingface_hub.constants``. Setting the environment variable inside a test is therefore too
late; instead ``point_client_at`` sets the same constants the variable would have set (monkeypatched,
so they are restored after the test). Nothing of the client is replaced: every call below goes over
real HTTP to the real server.

Why not only ``HfApi(endpoint=...)``: hub 0.36 builds ``CommitInfo.repo_url`` from ``commitUrl``
against ``constants.ENDPOINT`` and fails with "Unable to retrieve user and repo ID" for any other
host, and ``hf_hub_url`` only swaps in ``endpoint=`` when the template starts with
``constants.ENDPOINT`` (otherwise the URL would silently stay on huggingface.co).

The server knows one admin token (:data:`ADMIN_TOKEN`, writes everywhere); the ``hub`` client sends it,
like a user with ``HF_TOKEN`` set. Downloads of public repositories need no token.

The fixtures themselves (``fault_plan``, ``hub_server``, ``hub``) live in ``tests/conftest.py``.
"""

from __future__ import annotations

import hashlib
import http.client
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import huggingface_hub
import huggingface_hub.file_download as file_download
import pytest
from huggingface_hub import HfApi, constants, hf_hub_download

from adapterhub.server import HubServer, TokenGrant

HUB_VERSION = tuple(int(p) for p in huggingface_hub.__version__.split(".")[:2])
ADMIN_TOKEN = "adapterhub-test-admin-token"
ADMIN = TokenGrant.admin_token(ADMIN_TOKEN, "test-admin")
_CLIENT_TOKEN = object()


def point_client_at(monkeypatch: pytest.MonkeyPatch, endpoint: str, home: Path) -> None:
    """Configure ``huggingface_hub`` for ``endpoint`` as ``HF_ENDPOINT`` would have at import time."""
    template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    if hasattr(file_download, "HUGGINGFACE_CO_URL_TEMPLATE"):  # 0.36 imported it by value
        monkeypatch.setattr(file_download, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    # No token from the developer's machine leaks into requests: tests pass token= explicitly.
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


def isolate_from_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No token, endpoint, offline flag, index or cache of this machine is used, by adapterhub or the client
    (whose endpoint constant stays the default)."""
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf-home" / "stored_tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT", "ADAPTERHUB_OFFLINE", "HF_HUB_OFFLINE",
                 "ADAPTERHUB_INDEX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


@dataclass
class HubClient:
    """The real client, configured for one test server, with its own cache directory."""

    server: HubServer
    api: HfApi
    cache_dir: Path

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    @property
    def root(self) -> Path:
        return self.server.storage.root

    def download(self, repo_id: str, filename: str, **kwargs: object) -> Path:
        kwargs.setdefault("cache_dir", self.cache_dir)
        return Path(hf_hub_download(repo_id, filename, endpoint=self.endpoint, **kwargs))  # type: ignore[arg-type]

    def raw(
        self, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None,
        token: object = _CLIENT_TOKEN,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request with the exact path given (no client-side normalisation), for protocol tests.

        It carries the client's token unless ``token`` says otherwise (``None``: anonymous).
        """
        token = self.api.token if token is _CLIENT_TOKEN else token
        if token:
            headers = {"Authorization": f"Bearer {token}", **(headers or {})}
        return raw_request(self.endpoint, method, path, body=body, headers=headers)


def raw_request(
    endpoint: str, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(endpoint)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
