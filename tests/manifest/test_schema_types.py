"""The JSON Schema is the truth: every schema property has a typed field and the other way round."""

from __future__ import annotations

import dataclasses

import pytest

from adapterhub.manifest import configs, types
from adapterhub.runtime.methods import REGISTRY
from adapterhub.schema import (
    INDEX_CONFIG_SCHEMA,
    INDEX_ENTRY_SCHEMA,
    MANIFEST_SCHEMA,
    load_schema,
    validate_document,
)

SCHEMA = load_schema(MANIFEST_SCHEMA)
DEFS = SCHEMA["$defs"]

PAIRS = [
    (SCHEMA, types.Manifest, {"extensions"}),
    (DEFS["task"], types.Task, set()),
    (DEFS["base_model"], types.BaseModel, set()),
    (DEFS["adapter"], types.Adapter, set()),
    (DEFS["head"], types.Head, set()),
    (DEFS["file"], types.FileEntry, set()),
    (DEFS["dependency"], types.Dependency, set()),
    (DEFS["metric"], types.Metric, set()),
    (DEFS["config_composition"], configs.CompositionConfig, set()),
]


def schema_methods() -> list[str]:
    """The schema's ``adapter.method`` list."""
    return list(DEFS["adapter"]["properties"]["method"]["enum"])


def config_definition(method: str) -> dict:
    """The ``config_<...>`` definition the schema applies to ``method``'s config (``dora`` uses ``config_lora``)."""
    refs = [branch["then"]["properties"]["config"]["$ref"] for branch in DEFS["adapter"]["allOf"]
            if branch["if"]["properties"]["method"].get("const") == method]
    assert len(refs) == 1, f"the schema has {len(refs)} config definitions for method {method!r}"
    return DEFS[refs[0].removeprefix("#/$defs/")]


MANIFEST_LEVEL = {"composition": configs.CompositionConfig}
"""Methods whose config is typed in the manifest layer (block trees are base-level data), not registered."""


def _source_properties(kind: str) -> set[str]:
    for branch in DEFS["source"]["allOf"]:
        if branch["if"]["properties"]["type"]["const"] == kind:
            return set(branch["then"].get("properties", {})) | {"type"}
    raise AssertionError(kind)


@pytest.mark.parametrize(("schema", "cls", "extra"), PAIRS, ids=[p[1].__name__ for p in PAIRS])
def test_schema_properties_match_typed_fields(schema, cls, extra):
    fields = {f.name for f in dataclasses.fields(cls)} - extra
    assert set(schema["properties"]) == fields


@pytest.mark.parametrize("kind", ["hf", "https", "bundled", "archive"])
def test_source_variants_match(kind):
    cls = types.SOURCE_TYPES[kind]
    assert {f.name for f in dataclasses.fields(cls)} == _source_properties(kind)


def test_required_schema_fields_are_required_in_types():
    for schema, cls, _ in PAIRS:
        required = set(schema.get("required", []))
        no_default = {f.name for f in dataclasses.fields(cls)
                      if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        assert required == no_default, cls.__name__


def typed_pairs(schema_list: list[str], registry: dict) -> list[str]:
    """Every disagreement between the schema's methods and their configs, and the registered methods'
    typed configs (empty when they agree). ``registry`` maps a method name to its class."""
    problems = []
    for method in sorted(set(schema_list) - set(registry) - set(MANIFEST_LEVEL)):
        problems.append(f"{method}: in the schema but not registered in runtime.methods.REGISTRY")
    for method in sorted(set(registry) - set(schema_list)):
        problems.append(f"{method}: registered but not in the schema's adapter.method list")
    for method in sorted(set(schema_list) & (set(registry) | set(MANIFEST_LEVEL))):
        cls = MANIFEST_LEVEL.get(method) or registry[method].config_type
        definition = config_definition(method)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for prop in sorted(set(definition["properties"]) - set(fields)):
            problems.append(f"{method}: schema property {prop!r} has no field in {cls.__name__}")
        for name in sorted(set(fields) - set(definition["properties"])):
            problems.append(f"{method}: {cls.__name__}.{name} is not a property of the schema's config")
        required = set(definition.get("required", []))
        no_default = {n for n, f in fields.items()
                      if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        if required != no_default:
            problems.append(f"{method}: schema requires {sorted(required)}, {cls.__name__} requires {sorted(no_default)}")
    return problems


def test_schema_methods_configs_and_registry_agree():
    """The schema's method list, each ``config_<method>`` definition, the typed configs and REGISTRY are one table."""
    assert typed_pairs(schema_methods(), REGISTRY) == []
    for method, cls in REGISTRY.items():
        assert cls.name == method, f"REGISTRY[{method!r}] is {cls.__name__}, whose name is {cls.name!r}"


def test_a_disagreement_is_found():
    """The check above can fail: a method missing on either side, or a field missing on either side."""
    from adapterhub.runtime.methods.config import MethodConfig

    assert typed_pairs([*schema_methods(), "lokr"], REGISTRY) == [
        "lokr: in the schema but not registered in runtime.methods.REGISTRY"]
    registry = {k: v for k, v in REGISTRY.items() if k != "ia3"}
    assert typed_pairs(schema_methods(), {**registry, "vera": REGISTRY["ia3"]}) == [
        "ia3: in the schema but not registered in runtime.methods.REGISTRY",
        "vera: registered but not in the schema's adapter.method list"]

    @dataclasses.dataclass(frozen=True)
    class Short(MethodConfig):  # IA3's config without feedforward_modules, plus a field the schema lacks
        target_modules: tuple[str, ...] | None = None
        leave_out: tuple[int, ...] | None = None
        scale: float | None = None

    fake = type("FakeIA3", (REGISTRY["ia3"],), {"config_type": Short})
    assert typed_pairs(schema_methods(), {**REGISTRY, "ia3": fake}) == [
        "ia3: schema property 'feedforward_modules' has no field in Short",
        "ia3: Short.scale is not a property of the schema's config"]


@pytest.mark.parametrize("name", [MANIFEST_SCHEMA, INDEX_CONFIG_SCHEMA, INDEX_ENTRY_SCHEMA])
def test_schemas_are_valid_2020_12_with_id(name):
    from jsonschema import Draft202012Validator

    doc = load_schema(name)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"].endswith(name)
    Draft202012Validator.check_schema(doc)
    assert validate_document({}, name)  # an empty object is never valid
