"""Adapter repos on the local Hub server, built from the committed reference fixtures: the base's
``config.json``, a PEFT LoRA repo with a model card, an ``adapters``-library repo in a subfolder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from adapterhub.server import HubServer
from support.paths import REFERENCE
from support.store_support import put_repo

BASE_ID = "adapterhub-fixtures/tiny-random-bert"
BASE_DIR = REFERENCE / "bases" / "bert"
PEFT_DIR = REFERENCE / "peft" / "bert" / "lora" / "saved"
LIBRARY_DIR = REFERENCE / "adapters" / "bert" / "seq_bn" / "safetensors" / "ref"
CARD = (b"---\nlibrary_name: peft\nlicense: apache-2.0\nbase_model: adapterhub-fixtures/tiny-random-bert\n---\n"
        b"# LoRA\n")


def files_of(directory: Path, prefix: str = "") -> dict[str, bytes]:
    return {prefix + p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


@dataclass(frozen=True)
class FixtureRepos:
    endpoint: str
    peft: str
    """Commit of ``org/peft-lora``."""
    library: str
    """Commit of ``org/library`` (the adapter is under ``adapters/seq_bn``)."""


def put_fixture_repos(server: HubServer) -> FixtureRepos:
    for needed in (BASE_DIR, PEFT_DIR, LIBRARY_DIR):
        if not needed.is_dir():
            pytest.skip(f"reference fixtures missing: {needed}")
    put_repo(server, BASE_ID, {"config.json": (BASE_DIR / "config.json").read_bytes()})
    peft = put_repo(server, "org/peft-lora", {**files_of(PEFT_DIR), "README.md": CARD})
    library = put_repo(server, "org/library", files_of(LIBRARY_DIR, "adapters/seq_bn/"))
    return FixtureRepos(server.endpoint, peft, library)
