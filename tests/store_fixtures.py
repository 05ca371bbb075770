"""pytest fixtures for the store tests (loaded with ``pytest_plugins = ["store_fixtures"]``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import server_fixtures
from http_faults import ScriptedServer
from store_support import HubRepo, put_repo, safetensors_bytes

from adapterhub.server import HubServer


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(root))
    for var in ("ADAPTERHUB_OFFLINE", "HF_HUB_OFFLINE", "HF_TOKEN", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    return root


# One way to start the test server: the server tests' fixture (a fresh root and FaultPlan each test).
hub_server = server_fixtures.hub_server
fault_plan = server_fixtures.fault_plan


@pytest.fixture
def repo(hub_server: HubServer) -> HubRepo:
    files = {"adapter.safetensors": safetensors_bytes(4096), "adapter_config.json": b'{"r": 4}\n'}
    return HubRepo(hub_server, "org/toy", put_repo(hub_server, "org/toy", files), files)


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    """A scripted, recording HTTP server on 127.0.0.1 (tests/http_faults.py)."""
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def scripted_other() -> Iterator[ScriptedServer]:
    """A second one, for tests that need two origins."""
    with ScriptedServer() as server:
        yield server
