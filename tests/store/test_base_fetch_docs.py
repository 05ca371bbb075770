"""The "Base models" example of docs/pull-and-cache.md runs as written (real server, real client, real model)."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import constants
from support.doc_examples import python_blocks
from support.paths import DOCS
from support.server_fixtures import isolate_from_machine

pytestmark = pytest.mark.network_local


def test_base_models_doc_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    isolate_from_machine(monkeypatch, tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("ADAPTERHUB_BASES", str(tmp_path / "no-bases.json"))
    [block] = [b for b in python_blocks("pull-and-cache.md") if "obtain_base" in b]
    namespace: dict = {}
    exec(compile(block, str(DOCS / "pull-and-cache.md"), "exec"), namespace)  # noqa: S102 - our own docs
    fetched, again = namespace["fetched"], namespace["again"]
    assert fetched.files == ("config.json", "model.safetensors") and fetched.downloaded > 0
    assert again.path == fetched.location.path == tmp_path / "hf-cache" / "models--team--tiny-bert" / "snapshots" / \
        namespace["commit"]
    assert namespace["refetched"] is None and "Hugging Face cache" in again.how
