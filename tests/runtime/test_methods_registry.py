"""One registration line makes a method known everywhere; configs are stated data in the manifest."""

from __future__ import annotations

import copy
import json

import pytest
from support.manifest_samples import VALID_MANIFEST

from adapterhub.errors import SchemaError
from adapterhub.manifest import StatedConfig, manifest_to_dict, parse_manifest
from adapterhub.runtime import methods
from adapterhub.runtime.config import typed_config
from adapterhub.runtime.formats.peft import peft_method
from adapterhub.runtime.methods import REGISTRY, method_names
from adapterhub.runtime.methods.config import reduction_factor_for_layer
from adapterhub.runtime.methods.ia3 import IA3


class ScaledIA3(IA3):
    """A method that exists only in this test: IA3 under another name and another PEFT type."""

    name = "scaled_ia3"
    peft_type = "SCALED_IA3"


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(methods.REGISTRY, ScaledIA3.name, ScaledIA3)
    return ScaledIA3


def test_a_registered_method_is_known_to_the_peft_driver_and_the_messages(registered):
    assert peft_method({"peft_type": "SCALED_IA3"}) is registered
    assert peft_method({"peft_type": "LORA"}).name == "lora"
    assert peft_method({"peft_type": "LORA", "use_dora": True}).name == "dora"
    with pytest.raises(SchemaError, match="scaled_ia3 are"):
        peft_method({"peft_type": "LOKR"})
    assert "scaled_ia3" in method_names(weight_space=True)


def test_peft_types_come_from_the_registry():
    with pytest.raises(SchemaError) as err:
        peft_method({"peft_type": "LOKR"})
    listed = str(err.value).split("(", 1)[1]
    assert all(name in listed for name, cls in REGISTRY.items() if cls.peft_type)
    assert "bottleneck" not in listed


def test_a_missing_per_layer_reduction_factor_is_a_schema_error():
    """Was a bare ``KeyError`` (manifest/configs.py) that each method had to translate itself."""
    assert reduction_factor_for_layer({"3": 8, "default": 16}, 3) == 8.0
    assert reduction_factor_for_layer({"3": 8, "default": 16}, 1) == 16.0
    with pytest.raises(SchemaError) as err:
        reduction_factor_for_layer({"3": 8}, 1)
    assert err.value.problems[0].pointer == "/adapter/config/reduction_factor"
    assert "layer 1" in str(err.value) and "default" in str(err.value)


def test_a_stated_config_is_written_in_one_order_whatever_order_it_was_stated_in():
    """The manifest keeps exactly the stated keys (no defaults filled in) and writes them in the schema's
    order, nested objects sorted: the same content gives the same bytes, so a pulled manifest (read from an
    index that stores sorted JSON) matches the signed file byte for byte."""
    doc = copy.deepcopy(VALID_MANIFEST)
    doc["adapter"]["config"] = {"non_linearity": "relu", "variant": "pfeiffer", "leave_out": [0, 1],
                                "reduction_factor": {"default": 16, "1": 8}}
    shuffled = copy.deepcopy(doc)
    shuffled["adapter"]["config"] = dict(sorted(doc["adapter"]["config"].items(), reverse=True))
    m = parse_manifest(copy.deepcopy(doc))
    written = json.dumps(manifest_to_dict(m)["adapter"])
    assert written == json.dumps(manifest_to_dict(parse_manifest(shuffled))["adapter"])
    assert written == json.dumps(manifest_to_dict(parse_manifest(json.loads(json.dumps(manifest_to_dict(m)))))["adapter"])
    assert list(m.adapter.config) == ["variant", "reduction_factor", "non_linearity", "leave_out"]  # the schema's order
    assert list(m.adapter.config["reduction_factor"]) == ["1", "default"]
    config = m.adapter.config
    assert isinstance(config, StatedConfig) and config.leave_out == (0, 1) and config["variant"] == "pfeiffer"
    assert getattr(config, "ln_after", None) is None and "ln_after" not in config  # not stated: no default here
    with pytest.raises(AttributeError):
        config.ln_after  # noqa: B018
    effective = typed_config(m.adapter).effective()
    assert effective["ln_after"] is False and effective["locations"] == ("ffn",)  # the method's preset


def test_a_method_without_a_foreign_mapping_refuses_with_a_typed_error():
    """The contract's foreign-format hooks default to a typed refusal, not a bare NotImplementedError."""
    from adapterhub.errors import SchemaError
    from adapterhub.runtime.methods import REGISTRY

    bottleneck = REGISTRY["bottleneck"]
    assert bottleneck.peft_type is None
    with pytest.raises(SchemaError, match="no PEFT directories of method 'bottleneck'"):
        bottleneck.from_peft({}, [])
    coda = REGISTRY["coda"]
    assert coda.adapters_architecture is None
    with pytest.raises(SchemaError, match="no adapters-library directories of method 'coda'"):
        coda.from_adapters({}, {}, {}, "x", None)
