"""Bad input raises a typed error and leaves the model exactly as it was (validate first, then attach)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from support.runtime_helpers import assert_same_state, hidden, inputs_for, state_snapshot, tiny_model

from adapterhub.errors import (
    AdapterStateError,
    IncompatibleBaseError,
    InvalidNameError,
    SchemaError,
    UnsupportedArchitectureError,
    WeightMismatchError,
)
from adapterhub.runtime import wrap


@pytest.fixture()
def saved(tmp_path):
    model = tiny_model("bert")
    h = wrap(model)
    h.add("src", "lora", r=2, alpha=4, init_weights="bert")
    return h.save("src", tmp_path / "src").parent


def _edit_manifest(src, dst, fn):
    shutil.copytree(src, dst)
    data = json.loads((dst / "adapterhub.json").read_text())
    fn(data)
    (dst / "adapterhub.json").write_text(json.dumps(data))
    return dst


def _rewrite_weights(src, dst, fn):
    shutil.copytree(src, dst)
    tensors = fn(load_file(str(dst / "adapter.safetensors")))
    save_file(tensors, str(dst / "adapter.safetensors"))
    data = json.loads((dst / "adapterhub.json").read_text())
    import hashlib

    raw = (dst / "adapter.safetensors").read_bytes()
    data["files"][0].update(size=len(raw), sha256=hashlib.sha256(raw).hexdigest())
    (dst / "adapterhub.json").write_text(json.dumps(data))
    return dst


def _unchanged(model, h, fn, error):
    inputs = inputs_for(model.config.model_type)
    snap, out, adapters, active = state_snapshot(model), hidden(model, inputs), h.adapters, h.active
    with pytest.raises(error) as info:
        fn()
    assert_same_state(model, snap)
    torch.testing.assert_close(hidden(model, inputs), out, atol=0, rtol=0)  # nothing changed: the same computation
    assert h.adapters == adapters and h.active == active
    return info.value


def test_other_architecture(saved):
    model = tiny_model("distilbert")
    h = wrap(model)
    err = _unchanged(model, h, lambda: h.load(saved), IncompatibleBaseError)
    assert "model_type=bert" in str(err) and "model_type=distilbert" in str(err)


@pytest.mark.parametrize("overrides", [{"hidden_size": 48}, {"num_hidden_layers": 3}])
def test_other_hidden_size_or_layer_count(saved, overrides):
    model = tiny_model("bert", **overrides)
    h = wrap(model)
    _unchanged(model, h, lambda: h.load(saved), IncompatibleBaseError)


def test_fingerprint_mismatch_and_override(saved):
    model = tiny_model("bert", seed=1)  # same shapes, other weights
    h = wrap(model)
    err = _unchanged(model, h, lambda: h.load(saved), IncompatibleBaseError)
    assert "fingerprint" in str(err) and h.fingerprint in str(err) and "force=True" in str(err)
    h.load(saved, force=True)
    assert h.active == ("src",)


def test_unknown_method(tmp_path, saved):
    model = tiny_model("bert")
    h = wrap(model)
    _unchanged(model, h, lambda: h.add("x", "no-such-method"), SchemaError)
    _unchanged(model, h, lambda: h.add("x", "fusion", members=["a"]), SchemaError)
    bad = _edit_manifest(saved, tmp_path / "bad", lambda d: d["adapter"].update(method="magic"))
    _unchanged(model, h, lambda: h.load(bad), SchemaError)


def test_bad_config_values():
    model = tiny_model("bert")
    h = wrap(model)
    _unchanged(model, h, lambda: h.add("x", "lora", r=0, alpha=1), SchemaError)
    _unchanged(model, h, lambda: h.add("x", "lora", r=2, alpha=1, target_modules=["ffn_gate"]), SchemaError)
    _unchanged(model, h, lambda: h.add("x", "bottleneck", variant="houlsby", bogus=1), SchemaError)


def test_missing_unexpected_and_misshaped_tensors(tmp_path, saved):
    model = tiny_model("bert")
    h = wrap(model)

    def drop(t):
        t.pop(sorted(t)[0])
        return t

    def extra(t):
        t["layers.0.q.lora_C"] = torch.zeros(2)
        return t

    def reshape(t):
        k = sorted(t)[0]
        t[k] = torch.zeros(t[k].shape[0] + 1, t[k].shape[1])
        return t

    for label, fn in (("missing", drop), ("unexpected", extra), ("wrong shape", reshape)):
        bad = _rewrite_weights(saved, tmp_path / label.replace(" ", "_"), fn)
        err = _unchanged(model, h, lambda b=bad: h.load(b), WeightMismatchError)
        assert label in str(err)


def test_duplicate_name_and_bad_names(saved):
    model = tiny_model("bert")
    h = wrap(model)
    h.load(saved, name="one")
    _unchanged(model, h, lambda: h.load(saved, name="one"), AdapterStateError)
    _unchanged(model, h, lambda: h.add("one", "ia3"), AdapterStateError)
    _unchanged(model, h, lambda: h.add("a.b", "ia3"), InvalidNameError)


def test_unsupported_architecture_names_supported_ones():
    from transformers import AutoModel, ElectraConfig

    model = AutoModel.from_config(ElectraConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                                intermediate_size=37, embedding_size=32))
    with pytest.raises(UnsupportedArchitectureError) as info:
        wrap(model)
    assert "bert" in str(info.value) and "gpt2" in str(info.value) and "t5" in str(info.value)
    assert not hasattr(model, "adapterhub_adapters")


def test_merge_errors_leave_state():
    model = tiny_model("bert")
    h = wrap(model)
    h.add("bn", "bottleneck", variant="pfeiffer")
    _unchanged(model, h, lambda: h.merge("bn"), AdapterStateError)
    _unchanged(model, h, lambda: h.unmerge("bn"), AdapterStateError)
    _unchanged(model, h, lambda: h.merge("nope"), AdapterStateError)
