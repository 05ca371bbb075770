"""Adapter directory formats: one dispatcher, and one reader/writer module per format beside it.

:func:`detect_format` decides by marker file, in this order: ``adapterhub.json`` (ours; a manifest of
method ``composition`` is a published composition, not weights), ``adapter_fusion_config.json`` (an
``adapters``-library fusion layer), ``adapter_config.json`` with ``peft_type`` (PEFT), any other
``adapter_config.json`` (an ``adapters``-library adapter). Foreign formats name tensors by module path,
so converting them needs the target model's ``binding``; they are converted on ingest into an
:class:`~adapterhub.runtime.package.AdapterPackage`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from ...errors import NotFoundError
from ...jsonio import load_strict
from ...manifest.derive import FOREIGN_CONFIG as FOREIGN_CONFIG_FILE
from ...manifest.io import MANIFEST_FILENAME, load_manifest
from ...manifest.types import Manifest
from ..package import AdapterPackage
from .adapterhub_dir import read_ours, write_adapter_dir
from .adapters_fusion import FUSION_CONFIG_FILE, read_adapters_fusion_dir
from .adapters_lib import read_adapters_dir
from .foreign_view import foreign_config, read_foreign_view
from .peft import export_peft, read_peft_dir

Format = Literal["adapterhub", "composition", "adapters-fusion", "peft", "adapters"]


def detect_format(path: str | Path) -> Format:
    """Which format the directory (or ``adapterhub.json`` file) at ``path`` holds, decided by marker file.

    Only the marker is read (an ``adapterhub.json`` for its method, without schema validation): the
    reader of the format validates everything, once.
    """
    path = Path(path)
    if path.is_file() and path.name == MANIFEST_FILENAME:
        return _ours(path)
    if not path.is_dir():
        raise NotFoundError(f"{path}: not an adapter directory")
    if (path / MANIFEST_FILENAME).is_file():
        return _ours(path / MANIFEST_FILENAME)
    if (path / FUSION_CONFIG_FILE).is_file():
        return "adapters-fusion"
    config_path = path / FOREIGN_CONFIG_FILE
    if not config_path.is_file():
        raise NotFoundError(f"{path}: no {MANIFEST_FILENAME} and no {FOREIGN_CONFIG_FILE}; not an adapter directory")
    config = load_strict(config_path)
    return "peft" if isinstance(config, dict) and "peft_type" in config else "adapters"


def _ours(manifest_file: Path) -> Format:
    """``composition`` when the manifest's ``adapter.method`` says so, else ``adapterhub`` (validated later)."""
    data = load_strict(manifest_file)
    adapter = data.get("adapter") if isinstance(data, dict) else None
    method = adapter.get("method") if isinstance(adapter, dict) else None
    return "composition" if method == "composition" else "adapterhub"


def composition_manifest(path: str | Path) -> Manifest | None:
    """The manifest at ``path`` (a directory or ``adapterhub.json``) if it publishes a composition, else None."""
    path = Path(path)
    file = path / MANIFEST_FILENAME if path.is_dir() else path
    if file.name != MANIFEST_FILENAME or not file.is_file():
        return None
    manifest = load_manifest(file)
    return manifest if manifest.adapter.method == "composition" else None


def read_adapter_dir(path: str | Path, binding: Any = None) -> AdapterPackage:
    """Read an adapter directory in any supported format (ours, ``adapters`` library, PEFT)."""
    directory = Path(path)
    fmt = detect_format(directory)
    if fmt == "composition" or not directory.is_dir():
        raise NotFoundError(f"{directory}: a published composition has no weights",
                            hint="load it with AdapterModel.load, which activates it on attached adapters")
    if fmt == "adapterhub":
        manifest = load_manifest(directory)
        if foreign_config(manifest) is not None:  # a derived manifest over a PEFT / adapters-library payload
            return read_foreign_view(directory, manifest, binding, {
                "peft": read_peft_dir, "adapters": read_adapters_dir,
                "adapters-fusion": lambda d, _cfg, b: read_adapters_fusion_dir(d, b)})
        return read_ours(directory, manifest)
    if fmt == "adapters-fusion":
        return read_adapters_fusion_dir(directory, binding)
    config = load_strict(directory / FOREIGN_CONFIG_FILE)
    if fmt == "peft":
        return read_peft_dir(directory, config, binding)
    return read_adapters_dir(directory, config, binding)


__all__ = ["FUSION_CONFIG_FILE", "Format", "composition_manifest", "detect_format", "export_peft",
           "read_adapter_dir", "write_adapter_dir"]
