"""Adapter configs at the runtime boundary: validated by the manifest schema, then typed by their method.

``add(name, method, **config)`` takes exactly the manifest's config keys; the schema (the single
source of truth) validates them, and the method's own config type (``REGISTRY[method].config_type``)
supplies the documented defaults. A manifest keeps the config as stated data
(:class:`adapterhub.manifest.StatedConfig`); :func:`typed_config` turns it into the typed form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import SchemaError, SchemaProblem
from ..manifest.config_check import check_stated_config, config_problems, probe_manifest
from ..manifest.types import Adapter
from ..schema import MANIFEST_SCHEMA, load_schema
from .methods import REGISTRY
from .methods.config import MethodConfig


def check_config(method: str, config: dict[str, Any], supported: tuple[str, ...],
                 dependencies: Sequence[str] = ()) -> MethodConfig:
    """Validate ``config`` for ``method`` against the schema and return the method's typed config.

    ``dependencies``: the adapters the config names (a fusion layer's members), as a manifest lists them."""
    if method not in supported:
        known = method in load_schema(MANIFEST_SCHEMA)["$defs"]["adapter"]["properties"]["method"]["enum"]
        reason = "is not an adapter the runtime attaches" if known else "is not a known adapter method"
        raise SchemaError("<adapter>", [SchemaProblem("/adapter/method", f"{method!r} {reason} (runtime supports: {', '.join(supported)})")])
    check_stated_config(method, jsonable(config), dependencies=dependencies)
    return REGISTRY[method].config_type.from_stated(config)


def typed_config(adapter: Adapter) -> MethodConfig:
    """The typed config of a (schema-valid) manifest's ``adapter``, by its method's registered config type."""
    if adapter.method not in REGISTRY:
        raise SchemaError("<adapter>", [SchemaProblem(
            "/adapter/method", f"{adapter.method!r} has no typed config in the runtime "
            f"(runtime methods: {', '.join(REGISTRY)})")])
    return REGISTRY[adapter.method].config_type.from_stated(adapter.config.stated())


def jsonable(value: Any) -> Any:
    """JSON types for a config value (tuples become lists, mapping keys strings)."""
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


__all__ = ["check_config", "config_problems", "jsonable", "probe_manifest", "stated_json", "typed_config"]


def stated_json(config: MethodConfig) -> dict[str, Any]:
    """The config as the manifest stores it (only stated keys, JSON types)."""
    return jsonable(config.stated())
