"""The JSON Schema is the truth: every schema property has a typed field and the other way round."""

from __future__ import annotations

import dataclasses

import pytest

from adapterhub.manifest import configs, types
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
    (DEFS["config_bottleneck"], configs.BottleneckConfig, set()),
    (DEFS["config_compacter"], configs.CompacterConfig, set()),
    (DEFS["config_lora"], configs.LoraConfig, set()),
    (DEFS["config_ia3"], configs.IA3Config, set()),
    (DEFS["config_prefix_tuning"], configs.PrefixTuningConfig, set()),
    (DEFS["config_bitdelta"], configs.BitDeltaConfig, set()),
    (DEFS["config_coda"], configs.CodaConfig, set()),
    (DEFS["config_fusion"], configs.FusionConfig, set()),
]


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


def test_every_method_has_a_config_type():
    methods = DEFS["adapter"]["properties"]["method"]["enum"]
    assert set(methods) == set(configs.METHOD_CONFIGS)


@pytest.mark.parametrize("name", [MANIFEST_SCHEMA, INDEX_CONFIG_SCHEMA, INDEX_ENTRY_SCHEMA])
def test_schemas_are_valid_2020_12_with_id(name):
    from jsonschema import Draft202012Validator

    doc = load_schema(name)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"].endswith(name)
    Draft202012Validator.check_schema(doc)
    assert validate_document({}, name)  # an empty object is never valid
