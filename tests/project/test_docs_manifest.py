"""docs/manifest.md mentions every property of the manifest schema (so the docs cannot fall behind it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from support.paths import REPO

ROOT = REPO
SCHEMA = json.loads((ROOT / "schemas" / "adapter-manifest.v1.json").read_text())
DOC = (ROOT / "docs" / "manifest.md").read_text()


def property_names(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """(JSON pointer of the object, property name) for every ``properties`` entry, recursively."""
    if isinstance(node, dict):
        for name in node.get("properties") or {}:
            yield where, name
        for key, value in node.items():
            yield from property_names(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from property_names(value, f"{where}/{i}")


def test_the_walk_finds_nested_properties() -> None:
    names = {n for _, n in property_names(SCHEMA)}
    assert {"schema_version", "phm_c_init", "repo_id", "value_before_softmax", "scale_distilled"} <= names
    assert len(names) > 90


def test_every_schema_property_is_mentioned_in_docs_manifest_md() -> None:
    missing = sorted({f"{where}: {name}" for where, name in property_names(SCHEMA) if f"`{name}`" not in DOC})
    assert not missing, f"docs/manifest.md does not mention: {missing}"


def test_every_method_and_enum_of_the_method_and_source_types_is_mentioned() -> None:
    for method in SCHEMA["$defs"]["adapter"]["properties"]["method"]["enum"]:
        assert f"`{method}`" in DOC or method in DOC, method
    for kind in SCHEMA["$defs"]["source"]["properties"]["type"]["enum"]:
        assert f"`{kind}`" in DOC, kind
