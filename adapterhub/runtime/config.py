"""Adapter configs at the runtime boundary: validated by the manifest schema, then made effective.

``add(name, method, **config)`` takes exactly the manifest's config keys; the schema (the single
source of truth) validates them, and the manifest config types supply the documented defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import SchemaError, SchemaProblem
from ..manifest.configs import METHOD_CONFIGS, MethodConfig
from ..manifest.io import layer_index_problems, manifest_problems


def _probe_manifest(method: str, config: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": "1.0", "name": "probe", "version": "0.0.0", "description": "probe",
        "license": "NOASSERTION", "authors": ["probe"], "task": {"type": "other", "name": "probe"},
        "base_model": {"id": "probe", "model_type": "probe", "hidden_size": 1, "num_hidden_layers": 4096},
        "adapter": {"method": method, "config": config}, "files": [],
    }


def check_config(method: str, config: dict[str, Any], supported: tuple[str, ...],
                 dependencies: Sequence[str] = ()) -> MethodConfig:
    """Validate ``config`` for ``method`` against the schema and return the typed config.

    ``dependencies``: the adapters the config names (a fusion layer's members), as a manifest lists them."""
    if method not in supported:
        known = method in METHOD_CONFIGS
        reason = "is not an adapter the runtime attaches" if known else "is not a known adapter method"
        raise SchemaError("<adapter>", [SchemaProblem("/adapter/method", f"{method!r} {reason} (runtime supports: {', '.join(supported)})")])
    probe = _probe_manifest(method, _jsonable(config))
    if dependencies:
        probe["dependencies"] = [{"name": d} for d in dict.fromkeys(dependencies)]
    problems = [p for p in manifest_problems(probe, "<adapter config>") if p.pointer.startswith("/adapter")]
    if problems:
        raise SchemaError("<adapter config>", problems)
    cls = METHOD_CONFIGS[method]
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})


def check_layer_indices(config: dict[str, Any], binding: Any) -> None:
    """Refuse layer indices the bound model does not have (the manifest's check, at add/load time)."""
    problems = layer_index_problems(config, binding.num_hidden_layers, binding.num_decoder_layers)
    if problems:
        raise SchemaError("<adapter config>", problems)


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def effective(config: MethodConfig) -> dict[str, Any]:
    return config.effective()


def stated_json(config: MethodConfig) -> dict[str, Any]:
    """The config as the manifest stores it (only stated keys, JSON types)."""
    return _jsonable(config.stated())
