"""Deriving a manifest for a saved foreign adapter directory as a Hub pull would, and laying out its view."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from adapterhub.manifest import FileEntry, Manifest, write_manifest
from adapterhub.manifest.derive import HubOrigin, derive_manifest
from adapterhub.store import check_safetensors

CONFIG_NAMES = ("adapter_config.json", "head_config.json", "adapter_fusion_config.json", "adapterhub.json")
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def listing(directory: Path) -> list[FileEntry]:
    """Every file of ``directory`` with its size and sha256, as the Hub's tree listing states them."""
    return [FileEntry(p.relative_to(directory).as_posix(), p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(directory.rglob("*")) if p.is_file()]


def config_files(directory: Path) -> dict[str, Any]:
    return {n: json.loads((directory / n).read_text()) for n in CONFIG_NAMES if (directory / n).is_file()}


def derive_dir(directory: Path, base_config: dict[str, Any] | None, *, repo_id: str = "someone/tiny-adapter",
               commit: str = COMMIT, card_data: dict[str, Any] | None = None, names: bool = True) -> Manifest:
    """``names``: give derivation the weights file's tensor names when it asks (a Hub pull reads them)."""
    return derive_manifest(config_files(directory), listing(directory),
                           HubOrigin(repo_id, commit, card_data=card_data), base_config,
                           (lambda: tensor_names(directory)) if names else None)


def tensor_names(directory: Path) -> list[str]:
    """The tensor names of a PEFT directory's ``adapter_model.safetensors``, from its checked header."""
    return [t.name for t in check_safetensors(directory / "adapter_model.safetensors").tensors]


def make_view(directory: Path, dest: Path, manifest: Manifest) -> Path:
    """The cache view a pull builds: the repo's files as they are, plus the derived ``adapterhub.json``."""
    shutil.copytree(directory, dest)
    write_manifest(manifest, dest)
    return dest


def base_config_of(model: Any) -> dict[str, Any]:
    """The parsed ``config.json`` of a transformers model, as it would be fetched from the base's repo."""
    return json.loads(model.config.to_json_string())
