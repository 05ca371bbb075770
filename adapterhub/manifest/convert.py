"""Mechanical conversion between JSON objects and the manifest dataclasses.

Relies on field names equal to JSON keys; nested types are found from the annotations. Input is
assumed schema-valid (validate first): this module only shapes data.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from functools import cache
from typing import Any, Union

from ..schema import MANIFEST_SCHEMA, load_schema
from .configs import CompositionConfig, StatedConfig
from .types import SOURCE_TYPES, Adapter, Manifest


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _convert(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        for arg in args:
            if dataclasses.is_dataclass(arg) and isinstance(value, dict):
                return from_json(arg, value)
            if typing.get_origin(arg) is tuple and isinstance(value, list):
                return _convert(arg, value)
        return value
    if origin is tuple and isinstance(value, list):
        (item_tp, _ellipsis) = typing.get_args(tp)
        return tuple(_convert(item_tp, v) for v in value)
    if dataclasses.is_dataclass(tp) and isinstance(value, dict):
        return from_json(tp, value)
    return value


@cache
def config_key_order(method: str) -> tuple[str, ...]:
    """The order of ``method``'s config keys in the schema's ``config_<...>`` definition (the written order)."""
    defs = load_schema(MANIFEST_SCHEMA)["$defs"]
    for branch in defs["adapter"].get("allOf", ()):
        if branch.get("if", {}).get("properties", {}).get("method", {}).get("const") == method:
            ref = branch["then"]["properties"]["config"]["$ref"].removeprefix("#/$defs/")
            return tuple(defs[ref].get("properties", ()))
    return ()


def canonical(method: str, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with its keys in one order that depends only on its content: the schema's, then the rest
    sorted, and nested objects sorted by key.

    Manifests reach us in any key order (a user's file, an index that stores sorted JSON), but a published
    manifest is checked byte for byte against its signature, so every writer must produce the same bytes
    for the same content.
    """
    order = {k: i for i, k in enumerate(config_key_order(method))}
    keys = sorted(config, key=lambda k: (order.get(k, len(order)), k))
    return {k: _sorted_objects(config[k]) for k in keys}


def _sorted_objects(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_objects(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_sorted_objects(v) for v in value]
    return value


def from_json(cls: type, data: dict[str, Any]) -> Any:
    """Build dataclass ``cls`` from a schema-valid JSON object."""
    if cls is Adapter:
        if data["method"] == "composition":
            config = CompositionConfig(**data["config"])
        else:
            config = StatedConfig(canonical(data["method"], data["config"]))
        return Adapter(method=data["method"], config=config, dtype=data.get("dtype"))
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name == "extensions" or f.name not in data:
            continue
        tp = hints[f.name]
        if f.name == "sources" and cls is Manifest:
            kwargs[f.name] = tuple(from_json(SOURCE_TYPES[s["type"]], s) for s in data[f.name])
        else:
            kwargs[f.name] = _convert(tp, data[f.name])
    return cls(**kwargs)


def manifest_from_json(data: dict[str, Any], known: set[str]) -> Manifest:
    """Build a :class:`Manifest`; keys outside ``known`` (``x-*`` or newer-minor fields) become extensions."""
    core = {k: v for k, v in data.items() if k in known}
    manifest = from_json(Manifest, core)
    extra = {k: v for k, v in data.items() if k not in known}
    return dataclasses.replace(manifest, extensions=extra)


def to_json(obj: Any) -> Any:
    """The JSON form of a manifest dataclass tree, omitting unset (None) optional fields."""
    if isinstance(obj, Manifest):
        out = {}
        for f in dataclasses.fields(obj):
            if f.name == "extensions":
                continue
            value = getattr(obj, f.name)
            if value is not None:
                out[f.name] = to_json(value)
        out.update(obj.extensions)
        return out
    if isinstance(obj, StatedConfig | CompositionConfig):
        return {k: to_json(v) for k, v in obj.stated().items()}
    if dataclasses.is_dataclass(obj):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj) if getattr(obj, f.name) is not None}
    if isinstance(obj, tuple | list):
        return [to_json(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    return obj
