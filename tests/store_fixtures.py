"""pytest fixtures for the store tests (loaded with ``pytest_plugins = ["store_fixtures"]``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from store_support import HubRepo, put_repo, safetensors_bytes

from adapterhub.server import FaultPlan, HubServer


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(root))
    for var in ("ADAPTERHUB_OFFLINE", "HF_HUB_OFFLINE", "HF_TOKEN", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    return root


@pytest.fixture
def hub_server(tmp_path: Path) -> Iterator[HubServer]:
    server = HubServer(tmp_path / "hub-root", fault_plan=FaultPlan(), socket_timeout=10)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def repo(hub_server: HubServer) -> HubRepo:
    files = {"adapter.safetensors": safetensors_bytes(4096), "adapter_config.json": b'{"r": 4}\n'}
    return HubRepo(hub_server, "org/toy", put_repo(hub_server, "org/toy", files), files)
