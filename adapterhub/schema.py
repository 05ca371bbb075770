"""Validation against the JSON Schemas in ``schemas/`` (the single source of truth of our formats).

All problems are collected in one pass and reported with the JSON pointer of the bad field and what
was expected, so a user fixes a manifest in one round instead of one error at a time.

Validation memo (``memo=True``, used by the read path of a pull): importing jsonschema and building
its validator costs ~0.1 s per process, more than the rest of a warm ``adapterhub pull``. Whether a
document is valid is a pure function of its value, the schemas and the validator library, so a
successful validation is remembered under the sha256 of exactly those (the document as canonical
JSON: two documents share a key only if they are the same JSON value). A later process that meets the
same bytes skips jsonschema; any other bytes (a changed index, a new manifest, tampered input) miss the
memo and are validated in full. Failures are never remembered. The memo lives in the cache
(``validated/``, empty marker files); writing there needs the same access as rewriting the cache's
view records, which a warm pull already trusts.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from . import settings
from .errors import SchemaProblem
from .jsonio import dumps_canonical, load_strict
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


@cache
def _validator_identity() -> bytes:
    """What a verdict depends on besides the document: our schemas' bytes and the installed jsonschema
    (its location and its files' size and mtime, without importing it)."""
    h = hashlib.sha256(b"adapterhub-schema-memo-1\0")
    for path in sorted(schemas_dir().glob("*.json")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    for package in ("jsonschema", "referencing"):
        spec = importlib.util.find_spec(package)
        origin = Path(spec.origin) if spec is not None and spec.origin else None
        for path in sorted(origin.parent.glob("*.py")) if origin is not None else ():
            st = path.stat()
            h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return h.digest()


def memo_key(document: bytes, schema_filename: str) -> str:
    """The memo key of ``document`` (exact bytes, e.g. canonical JSON) validated against ``schema_filename``."""
    h = hashlib.sha256(_validator_identity())
    h.update(schema_filename.encode() + b"\0" + document)
    return h.hexdigest()


MEMO_DIRNAME = "validated"
"""The memo's directory under the cache root (``cache gc`` empties it: only speed depends on it)."""


def memo_dir() -> Path:
    """Where successful validations are remembered (one empty file per key)."""
    return settings.cache_dir() / MEMO_DIRNAME


def known_valid(key: str) -> bool:
    """True when a document with this memo key was validated in full before (see the module docstring)."""
    return os.path.isfile(memo_dir() / key[:2] / key)


def remember_valid(key: str) -> None:
    """Record a successful validation; best effort (a read-only cache only costs speed)."""
    folder = memo_dir() / key[:2]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        os.close(os.open(folder / key, os.O_CREAT | os.O_WRONLY, 0o666))  # empty: nothing to tear; umask modes
    except OSError:
        pass


def _document_key(instance: Any, schema_filename: str) -> str | None:
    try:
        text = dumps_canonical(instance)
    except (TypeError, ValueError):  # not a JSON value (e.g. NaN): validate it, do not remember it
        return None
    return memo_key(text.encode(), schema_filename)


def validate_document(instance: Any, schema_filename: str, *, memo: bool = False) -> list[SchemaProblem]:
    """Every schema problem of ``instance``, sorted by pointer, without stopping at the first.

    ``memo``: skip jsonschema for a document this cache has seen pass before, and remember a pass.
    """
    key = _document_key(instance, schema_filename) if memo else None
    if key is not None and known_valid(key):
        return []
    problems: dict[tuple[str, str], SchemaProblem] = {}
    for error in _validator(schema_filename).iter_errors(instance):
        for leaf in _leaf_errors(error):
            pointer = _pointer(leaf.absolute_path)
            message = _describe(leaf)
            problems.setdefault((pointer, message), SchemaProblem(pointer, message))
    if key is not None and not problems:
        remember_valid(key)
    return sorted(problems.values(), key=lambda p: (p.pointer, p.message))
