"""adapterhub aimed at the test Hub server, for tests of an index held in a dataset repo (``hf:datasets/…``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapterhub.registry import init_index
from support.index_signing_support import add
from support.server_fixtures import ADMIN_TOKEN, HubClient

LOCATION = "hf:datasets/team/registry"


@pytest.fixture
def env(hub: HubClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubClient:
    """The ``hub`` client, with adapterhub aimed at its server (a fixture; import it into the test module).

    ``HF_ENDPOINT`` is the test server, ``HF_TOKEN`` its writer's token (reads of a public dataset repo
    need none); adapterhub's cache and trust store live under ``tmp_path``; no offline flag, default
    index or index keyring of this machine applies."""
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ADAPTERHUB_TRUST_DIR", str(tmp_path / "trust"))
    for var in ("ADAPTERHUB_OFFLINE", "HF_HUB_OFFLINE", "ADAPTERHUB_INDEX", "ADAPTERHUB_REQUIRE_SIGNED_INDEX",
                "ADAPTERHUB_INDEX_KEYS"):
        monkeypatch.delenv(var, raising=False)
    return hub


def team_index(tmp_path: Path, *names: str) -> Path:
    """A fresh index directory ``tmp_path/index`` listing version 1.0.0 of each of ``names``."""
    root = init_index(tmp_path / "index", "team")
    for name in names:
        add(root, name, "1.0.0")
    return root
