"""Checking one adapter config against the schema, outside a whole manifest.

The schema checks ``config_<method>`` only as part of a manifest, so a config given to
``AdapterModel.add`` or read from a foreign directory is checked inside the smallest manifest that
can hold it. Lives in the manifest layer so every caller above (the runtime's ``add``, a method
converting a foreign config) uses the one schema check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import SchemaError, SchemaProblem
from .io import manifest_problems


def probe_manifest(method: str, config: dict[str, Any], dependencies: Sequence[str] = ()) -> dict[str, Any]:
    """The smallest manifest around ``config`` (JSON types); ``dependencies`` are the adapters it names."""
    probe: dict[str, Any] = {
        "schema_version": "1.0", "name": "probe", "version": "0.0.0", "description": "probe",
        "license": "NOASSERTION", "authors": ["probe"], "task": {"type": "other", "name": "probe"},
        "base_model": {"id": "probe", "model_type": "probe", "hidden_size": 1, "num_hidden_layers": 4096},
        "adapter": {"method": method, "config": config}, "files": [],
    }
    if dependencies:
        probe["dependencies"] = [{"name": d} for d in dict.fromkeys(dependencies)]
    return probe


def config_problems(probe: dict[str, Any], source: str) -> list[SchemaProblem]:
    """The schema's problems with the ``adapter`` part of a probe manifest."""
    return [p for p in manifest_problems(probe, source) if p.pointer.startswith("/adapter")]


def check_stated_config(method: str, config: dict[str, Any], source: str = "<adapter config>",
                        dependencies: Sequence[str] = ()) -> None:
    """Raise :class:`SchemaError` unless ``config`` (JSON types) is a valid config of ``method``.

    ``dependencies``: the adapters the config names (a fusion layer's members), as a manifest lists them."""
    problems = config_problems(probe_manifest(method, config, dependencies), source)
    if problems:
        raise SchemaError(source, problems)
