"""Fixtures shared by every test directory (pytest finds them here by name; tests never import them).

* ``fault_plan``, ``hub_server``, ``hub``: an adapterhub Hub-compatible server on 127.0.0.1 and the real
  ``huggingface_hub`` client aimed at it (``support/server_fixtures.py`` says why the client is
  configured the way it is).
* ``cache``, ``repo``, ``scripted``, ``scripted_other``: an isolated adapterhub cache, a toy Hub repo,
  scripted HTTP servers for transport faults.
* ``signed_repo``: a signed registry index served over HTTP (``support/index_signing_support.py``).

Plain helpers (tiny models, tolerances, sample manifests) are imported from the ``support`` package.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi, constants, file_download
from support.http_faults import ScriptedServer
from support.index_signing_support import NAMES, IndexServer, SignedRepo, add
from support.server_fixtures import ADMIN, ADMIN_TOKEN, HubClient, point_client_at
from support.store_support import HubRepo, put_repo, safetensors_bytes

from adapterhub.registry import init_index
from adapterhub.registry.keys import generate_keyring
from adapterhub.registry.signing import sign_index
from adapterhub.server import FaultPlan, HubServer

_CLIENT_URL_STATE = ((constants, "ENDPOINT"), (constants, "HUGGINGFACE_CO_URL_TEMPLATE"),
                     (file_download, "HUGGINGFACE_CO_URL_TEMPLATE"))


@pytest.fixture(autouse=True)
def client_url_state_unchanged() -> Iterator[None]:
    """A test that leaves the Hub client's URL constants changed fails, and they are put back: a leaked
    ``constants.ENDPOINT`` silently redirects every later test's downloads (a CI run found one)."""
    before = [getattr(module, name, None) for module, name in _CLIENT_URL_STATE]
    yield
    after = [getattr(module, name, None) for module, name in _CLIENT_URL_STATE]
    for (module, name), value in zip(_CLIENT_URL_STATE, before, strict=True):
        if value is not None:
            setattr(module, name, value)
    assert after == before, f"this test left huggingface_hub's URL constants changed: {before} -> {after}"


@pytest.fixture
def fault_plan() -> FaultPlan:
    return FaultPlan()


@pytest.fixture
def hub_server(tmp_path: Path, fault_plan: FaultPlan) -> Iterator[HubServer]:
    """A server over a fresh root, on 127.0.0.1 with a free port, knowing :data:`ADMIN_TOKEN`; faults only
    if the test adds some."""
    server = HubServer(tmp_path / "hub-root", tokens=[ADMIN], fault_plan=fault_plan, socket_timeout=10)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hub(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> HubClient:
    point_client_at(monkeypatch, hub_server.endpoint, tmp_path / "hf-home")
    return HubClient(hub_server, HfApi(endpoint=hub_server.endpoint, token=ADMIN_TOKEN), tmp_path / "hf-cache")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(root))
    for var in ("ADAPTERHUB_OFFLINE", "HF_HUB_OFFLINE", "HF_TOKEN", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    return root


@pytest.fixture
def repo(hub_server: HubServer) -> HubRepo:
    files = {"adapter.safetensors": safetensors_bytes(4096), "adapter_config.json": b'{"r": 4}\n'}
    return HubRepo(hub_server, "org/toy", put_repo(hub_server, "org/toy", files), files)


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    """A scripted, recording HTTP server on 127.0.0.1 (tests/support/http_faults.py)."""
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def scripted_other() -> Iterator[ScriptedServer]:
    """A second one, for tests that need two origins."""
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def signed_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SignedRepo]:
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ADAPTERHUB_TRUST_DIR", str(tmp_path / "trust"))
    monkeypatch.delenv("ADAPTERHUB_REQUIRE_SIGNED_INDEX", raising=False)
    monkeypatch.delenv("ADAPTERHUB_INDEX_KEYS", raising=False)
    root = tmp_path / "index"
    init_index(root, "signed")
    for name in NAMES:
        add(root, name, "1.0.0")
    keys = generate_keyring(tmp_path / "keys")
    sign_index(root, keys)
    server = IndexServer(root)
    try:
        yield SignedRepo(root, keys, server, tmp_path, tmp_path / "trust")
    finally:
        server.close()
