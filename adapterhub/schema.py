"""Validation against the JSON Schemas in ``schemas/`` (the single source of truth of our formats).

All problems are collected in one pass and reported with the JSON pointer of the bad field and what
was expected, so a user fixes a manifest in one round instead of one error at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from .errors import SchemaProblem
from .jsonio import load_strict
from .resources import schemas_dir

MANIFEST_SCHEMA = "adapter-manifest.v1.json"
INDEX_CONFIG_SCHEMA = "index-config.v1.json"
INDEX_ENTRY_SCHEMA = "index-entry.v1.json"
LOCKFILE_SCHEMA = "lockfile.v1.json"


@cache
def load_schema(filename: str) -> dict[str, Any]:
    """The parsed schema document ``schemas/<filename>``."""
    return load_strict(schemas_dir() / filename)


@cache
def _validator(filename: str):
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    resources = []
    for path in sorted(schemas_dir().glob("*.json")):
        doc = load_strict(path)
        resources.append((doc["$id"], Resource.from_contents(doc)))
    registry = Registry().with_resources(resources)
    # The schemas are ours and checked against the meta-schema by tests/manifest/test_schema_types.py; checking
    # them again here cost ~0.2 s per process, on every command (e.g. a warm `adapterhub pull`).
    return Draft202012Validator(load_schema(filename), registry=registry)


def _pointer(path: Iterable[Any]) -> str:
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in path]
    return "/" + "/".join(parts) if parts else ""


def _leaf_errors(error) -> list:
    """Descend into oneOf/anyOf/if-then wrappers to the errors a person can act on."""
    if not error.context:
        return [error]
    # Prefer the branch that got furthest into the instance (deepest path), like jsonschema.best_match.
    from jsonschema.exceptions import best_match

    best = best_match(error.context)
    return _leaf_errors(best) if best is not None else [error]


def _describe(error) -> str:
    if error.validator == "additionalProperties":
        import re

        known = set(error.schema.get("properties", {}))
        patterns = list(error.schema.get("patternProperties", {}))
        extras = sorted(k for k in error.instance if k not in known and not any(re.search(p, k) for p in patterns))
        listed = ", ".join(repr(k) for k in extras)
        hint = "; extension fields must start with 'x-'" if patterns else ""
        return f"unknown field(s) ({listed} was unexpected){hint}"
    if error.validator == "required":
        return error.message.replace("is a required property", "is required")
    if error.validator == "pattern":
        desc = error.schema.get("description")
        return f"{error.instance!r} does not match {error.validator_value!r}" + (f" ({desc})" if desc else "")
    if error.validator == "enum":
        return f"{error.instance!r} is not one of {error.validator_value}"
    return error.message


def validate_document(instance: Any, schema_filename: str) -> list[SchemaProblem]:
    """Every schema problem of ``instance``, sorted by pointer, without stopping at the first."""
    problems: dict[tuple[str, str], SchemaProblem] = {}
    for error in _validator(schema_filename).iter_errors(instance):
        for leaf in _leaf_errors(error):
            pointer = _pointer(leaf.absolute_path)
            message = _describe(leaf)
            problems.setdefault((pointer, message), SchemaProblem(pointer, message))
    return sorted(problems.values(), key=lambda p: (p.pointer, p.message))
