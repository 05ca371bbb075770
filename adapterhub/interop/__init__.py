"""Import/export of adapter directories in other tools' formats (``adapters`` library, PEFT)."""

from __future__ import annotations

from pathlib import Path

from ..errors import NotFoundError


def read_foreign_dir(directory: Path, binding=None):
    """Read a non-adapterhub adapter directory into an :class:`AdapterPackage` (converting on ingest)."""
    from ..jsonio import load_strict

    config_path = directory / "adapter_config.json"
    if not config_path.is_file():
        raise NotFoundError(f"{directory}: no adapterhub.json and no adapter_config.json; not an adapter directory")
    config = load_strict(config_path)
    if isinstance(config, dict) and "peft_type" in config:
        from .peft import read_peft_dir

        return read_peft_dir(directory, config, binding)
    from .adapters_lib import read_adapters_dir

    return read_adapters_dir(directory, config, binding)


__all__ = ["read_foreign_dir"]
