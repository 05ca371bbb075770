"""Loading, validating and writing manifests.

``parse_manifest`` runs the JSON Schema and then the checks a schema cannot express (PEP 440
versions, path safety under POSIX and Windows rules, case collisions, dependency specifiers, layer
indices within the base model), collecting every problem before raising one :class:`SchemaError`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

from ..digits import plain_int
from ..errors import (
    CompositionError,
    InvalidNameError,
    InvalidVersionError,
    SchemaError,
    SchemaProblem,
    UnsupportedSchemaVersionError,
)
from ..fileio import atomic_write_text
from ..jsonio import dumps_canonical, dumps_pretty, load_strict, loads_strict
from ..names import normalize_name, parse_specifier, parse_version, pinned_hub_reference
from ..paths import case_collisions, path_problem
from ..schema import MANIFEST_SCHEMA, load_schema, validate_document
from .convert import manifest_from_json, to_json
from .types import HfSource, Manifest

MANIFEST_FILENAME = "adapterhub.json"
SIGNATURE_FILENAME = "model.sig"
"""The OpenSSF Model Signing signature of an adapter directory (OMS's own default name); never a payload file."""
SUPPORTED_MAJOR = 1
KNOWN_MINOR = 1
"""1.1 added dependencies on Hub repos (``dependencies[].hub``); everything else is 1.0."""
CURRENT_SCHEMA_VERSION = f"{SUPPORTED_MAJOR}.0"
"""What writers put on a manifest that uses nothing newer: the lowest version that describes it, so older
readers keep reading what they can (:func:`schema_version_for`)."""
HUB_DEPENDENCY_SCHEMA_VERSION = f"{SUPPORTED_MAJOR}.1"


def schema_version_for(dependencies: Any) -> str:
    """The format a manifest with these (JSON) dependencies declares: 1.1 when one names a Hub repo."""
    uses_hub = any(isinstance(d, dict) and "hub" in d for d in dependencies or ())
    return HUB_DEPENDENCY_SCHEMA_VERSION if uses_hub else CURRENT_SCHEMA_VERSION


def _known_top_level() -> set[str]:
    return set(load_schema(MANIFEST_SCHEMA)["properties"])


def _check_version_field(data: Any, source: str) -> int:
    """Fail loudly on an unknown major format; return the minor version (0 when unreadable)."""
    if not isinstance(data, dict):
        return 0
    raw = data.get("schema_version")
    if isinstance(raw, str) and "." in raw:
        major, _, minor = raw.partition(".")
        if major.isascii() and major.isdigit() and plain_int(major) != SUPPORTED_MAJOR:  # too long: not ours either
            raise UnsupportedSchemaVersionError(
                f"{source}: manifest format {raw[:40]} is not supported by this adapterhub "
                f"(it reads {SUPPORTED_MAJOR}.x)", hint="upgrade adapterhub")
        readable = plain_int(minor)
        if readable is not None:
            return readable
    if isinstance(raw, int) and raw != SUPPORTED_MAJOR:
        raise UnsupportedSchemaVersionError(
            f"{source}: manifest format {raw} is not supported (this adapterhub reads {SUPPORTED_MAJOR}.x)",
            hint="upgrade adapterhub")
    return 0


def _hub_dependency_problems(dep: dict[str, Any], i: int, minor: int) -> list[SchemaProblem]:
    """A ``hub`` dependency: a parseable reference pinned to a commit, in a manifest of format 1.1 or later."""
    problems = []
    try:
        pinned_hub_reference(dep["hub"])
    except InvalidNameError as exc:
        problems.append(SchemaProblem(f"/dependencies/{i}/hub", str(exc)))
    if "spec" in dep:
        problems.append(SchemaProblem(f"/dependencies/{i}/spec", "a Hub dependency takes no version spec: its "
                                                                 "commit pins it (drop 'spec')"))
    if minor < 1:
        problems.append(SchemaProblem("/schema_version", f"dependency {dep.get('name')!r} names a Hub repo, which "
                                                         f"format 1.0 cannot express: declare "
                                                         f"{HUB_DEPENDENCY_SCHEMA_VERSION!r}"))
    return problems


def _semantic_problems(data: dict[str, Any], minor: int = KNOWN_MINOR) -> list[SchemaProblem]:
    problems: list[SchemaProblem] = []
    version = data.get("version")
    if isinstance(version, str):
        try:
            parse_version(version)
        except InvalidVersionError:
            problems.append(SchemaProblem("/version", f"{version!r} is not a PEP 440 version (e.g. 1.0.0)"))
    name = data.get("name")
    if isinstance(name, str) and normalize_name(name) != name:
        problems.append(SchemaProblem("/name", f"{name!r} is not in normal form (use {normalize_name(name)!r})"))
    if isinstance(name, str) and ("--" in name or name.endswith("-")):
        problems.append(SchemaProblem("/name", f"{name!r}: no '--' and no trailing '-'"))
    files = data.get("files")
    if isinstance(files, list):
        paths = []
        for i, entry in enumerate(files):
            path = entry.get("path") if isinstance(entry, dict) else None
            if isinstance(path, str):
                problem = path_problem(path)
                if problem:
                    problems.append(SchemaProblem(f"/files/{i}/path", f"unsafe file path {path!r}: {problem}"))
                paths.append(path)
        seen: set[str] = set()
        for i, path in enumerate(paths):
            if path in seen:
                problems.append(SchemaProblem(f"/files/{i}/path", f"duplicate file path {path!r}"))
            seen.add(path)
        for first, second in case_collisions(sorted(set(paths))):
            problems.append(SchemaProblem("/files", f"paths {first!r} and {second!r} differ only in case"))
    deps = data.get("dependencies")
    dep_names: list[str] = []
    hubs: list[str] = []
    if isinstance(deps, list):
        for i, dep in enumerate(deps):
            if not isinstance(dep, dict):
                continue
            if isinstance(dep.get("name"), str):
                dep_names.append(dep["name"])
                if dep["name"] == name:
                    problems.append(SchemaProblem(f"/dependencies/{i}/name", "an adapter cannot depend on itself"))
            if isinstance(dep.get("hub"), str):
                problems += _hub_dependency_problems(dep, i, minor)
                hubs.append(dep["hub"].strip())
            spec = dep.get("spec")
            if isinstance(spec, str):
                try:
                    parse_specifier(spec)
                except InvalidVersionError:
                    problems.append(SchemaProblem(f"/dependencies/{i}/spec", f"{spec!r} is not a PEP 440 specifier"))
        for dup in sorted({n for n in dep_names if dep_names.count(n) > 1}):
            problems.append(SchemaProblem("/dependencies", f"{dup!r} is listed twice"))
        for dup in sorted({h for h in hubs if hubs.count(h) > 1}):
            problems.append(SchemaProblem("/dependencies", f"the Hub adapter {dup} is listed twice"))
    adapter = data.get("adapter")
    config = adapter.get("config") if isinstance(adapter, dict) else None
    if isinstance(adapter, dict) and adapter.get("method") == "fusion" and isinstance(config, dict):
        for j, member in enumerate(config.get("members") or []):
            if isinstance(member, str) and member not in dep_names:
                problems.append(SchemaProblem(f"/adapter/config/members/{j}",
                                              f"fusion member {member!r} must also be listed in /dependencies"))
    if isinstance(adapter, dict) and adapter.get("method") == "composition" and isinstance(config, dict):
        problems += _composition_problems(data, config, dep_names)
    base = data.get("base_model")
    layers = base.get("num_hidden_layers") if isinstance(base, dict) else None
    decoder = base.get("num_decoder_layers") if isinstance(base, dict) else None
    if isinstance(config, dict) and isinstance(layers, int):
        problems += layer_index_problems(config, layers, decoder if isinstance(decoder, int) else None)
    head = data.get("head")
    if (isinstance(head, dict) and isinstance(head.get("labels"), list) and isinstance(head.get("num_labels"), int)
            and len(head["labels"]) != head["num_labels"]):
        problems.append(SchemaProblem("/head/labels", f"{len(head['labels'])} labels but num_labels is {head['num_labels']}"))
    return problems


def layer_index_problems(config: dict[str, Any], num_hidden_layers: int,
                         num_decoder_layers: int | None = None) -> list[SchemaProblem]:
    """Layer indices in ``config`` (``leave_out``, per-layer ``reduction_factor`` keys) that do not exist.

    One numbering everywhere (manifest, runtime, importers): global indices, encoder layers
    ``0..num_hidden_layers-1`` then, for an encoder-decoder base, decoder layers after them (as the
    ``adapters`` library numbers them).
    """
    total = num_hidden_layers + (num_decoder_layers or 0)
    where = (f"base has {num_hidden_layers} encoder + {num_decoder_layers} decoder layers, numbered 0-{total - 1}"
             if num_decoder_layers else f"base has {total} layers")
    problems = []
    for j, layer in enumerate(config.get("leave_out") or []):
        if isinstance(layer, int) and layer >= total:
            problems.append(SchemaProblem(f"/adapter/config/leave_out/{j}", f"layer {layer} does not exist ({where})"))
    rf = config.get("reduction_factor")
    if isinstance(rf, dict):
        for key in rf:
            layer = plain_int(key)
            if layer is not None and layer >= total:
                problems.append(SchemaProblem(f"/adapter/config/reduction_factor/{key}",
                                              f"layer {key} does not exist ({where})"))
    return problems


def _composition_problems(data: dict[str, Any], config: dict[str, Any], dep_names: list[str]) -> list[SchemaProblem]:
    """A composition manifest: a well-formed block over its dependencies, and no weights of its own."""
    from ..blocks import from_json, used_names, validate  # deferred: only compositions need the block types

    problems: list[SchemaProblem] = []
    where = "/adapter/config/composition"
    try:
        block = from_json(config.get("composition"))
        validate(block)
    except (CompositionError, TypeError, ValueError) as exc:
        return [SchemaProblem(where, f"not a valid composition: {exc}")]
    for used_name in used_names(block):
        if used_name not in dep_names:
            problems.append(SchemaProblem(where, f"adapter {used_name!r} is used by the composition but not "
                                                 "listed in /dependencies (add it with the version it needs)"))
    for i, entry in enumerate(data.get("files") or []):
        if isinstance(entry, dict) and entry.get("role") in ("weights", "head"):
            problems.append(SchemaProblem(f"/files/{i}/role", "a composition has no weights of its own: publish "
                                                              "weights as the adapters it depends on"))
    if "head" in data:
        problems.append(SchemaProblem("/head", "a composition has no head of its own: its members carry heads"))
    return problems


def manifest_problems(data: Any, source: str = "<manifest>", *, memo: bool = False) -> list[SchemaProblem]:
    """All problems of a parsed manifest document (empty list = valid); ``memo``: see adapterhub/schema.py."""
    minor = _check_version_field(data, source)
    if isinstance(data, dict) and minor > KNOWN_MINOR:
        known = _known_top_level()
        data = {k: v for k, v in data.items() if k in known or k.startswith("x-")}
    problems = validate_document(data, MANIFEST_SCHEMA, memo=memo)
    if isinstance(data, dict):
        problems += _semantic_problems(data, minor)
    return problems


def parse_manifest(data: Any, source: str = "<manifest>", *, memo: bool = False) -> Manifest:
    """Validate a parsed JSON document and return the typed :class:`Manifest`.

    ``memo``: skip jsonschema when this exact document passed it before in this cache (adapterhub/schema.py).
    """
    problems = manifest_problems(data, source, memo=memo)
    if problems:
        raise SchemaError(source, problems)
    return manifest_from_json(data, _known_top_level())


def load_manifest(path: str | Path) -> Manifest:
    """Load ``path`` (a manifest file, or an adapter directory holding ``adapterhub.json``)."""
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST_FILENAME
    return parse_manifest(load_strict(p), str(p))


def loads_manifest(text: str | bytes, source: str = "<manifest>") -> Manifest:
    return parse_manifest(loads_strict(text, source), source)


def manifest_to_dict(manifest: Manifest) -> dict[str, Any]:
    return to_json(manifest)


def manifest_digest(manifest: Manifest) -> str:
    """sha256 of the canonical JSON form: the identity of the exact manifest content."""
    return hashlib.sha256(dumps_canonical(manifest_to_dict(manifest)).encode()).hexdigest()


def dependency_digest(manifest: Manifest) -> str:
    """The sha256 a Hub dependency pins (``manifest_sha256``): :func:`manifest_digest` of the manifest with its Hub
    sources' ``endpoint`` left out. A derived manifest records the endpoint it was pulled through; the publisher and
    a user may reach the same commit through different mirrors, and that does not change what the adapter is."""
    sources = tuple(dataclasses.replace(s, endpoint=None) if isinstance(s, HfSource) else s
                    for s in manifest.sources or ())
    return manifest_digest(dataclasses.replace(manifest, sources=sources or manifest.sources))


def write_manifest(manifest: Manifest, path: str | Path) -> Path:
    """Validate and atomically write a manifest (temp file in the same directory, fsync, replace)."""
    data = manifest_to_dict(manifest)
    parse_manifest(data, str(path))
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST_FILENAME
    atomic_write_text(p, dumps_pretty(data))
    return p
