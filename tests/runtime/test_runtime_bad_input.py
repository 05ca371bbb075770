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
    from transformers import AutoModel, BloomConfig

    model = AutoModel.from_config(BloomConfig(hidden_size=32, n_layer=1, n_head=4, vocab_size=99))
    with pytest.raises(UnsupportedArchitectureError) as info:
        wrap(model)
    assert "bert" in str(info.value) and "gpt2" in str(info.value) and "t5" in str(info.value)
    assert "register_family" in info.value.hint
    assert not hasattr(model, "adapterhub_adapters")


def test_merge_errors_leave_state():
    model = tiny_model("bert")
    h = wrap(model)
    h.add("bn", "bottleneck", variant="pfeiffer")
    _unchanged(model, h, lambda: h.merge("bn"), AdapterStateError)
    _unchanged(model, h, lambda: h.unmerge("bn"), AdapterStateError)
    _unchanged(model, h, lambda: h.merge("nope"), AdapterStateError)


# --- calls the runtime cannot serve: typed errors that say what and what to do -----------------------
class _InlineAttention(torch.nn.Module):
    """Attention computed inline (no transformers attention interface), with its own k/v projections."""

    def __init__(self) -> None:
        super().__init__()
        self.k, self.v = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x @ self.k(x).transpose(-1, -2), -1) @ self.v(x)


def _prefix(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros(batch, 1, 2, 4), torch.zeros(batch, 1, 2, 4)


def test_inline_attention_without_projections_or_input_is_an_architecture_error():
    from adapterhub.runtime.prefix_attention import add_prefix

    attn = _InlineAttention()
    with pytest.raises(UnsupportedArchitectureError, match="_InlineAttention computes attention inline.*k_module"):
        add_prefix(attn, _prefix, causal=False)
    handle = add_prefix(attn, _prefix, causal=False, k_module=attn.k, v_module=attn.v)
    with pytest.raises(UnsupportedArchitectureError, match="_InlineAttention was called without its input tensor"):
        attn(x=torch.randn(1, 3, 4))  # by a keyword the hook does not know
    handle.remove()
    assert not attn._forward_pre_hooks and not attn.k._forward_hooks


def test_attention_kernel_changed_after_attaching_a_prefix_is_an_architecture_error():
    model = tiny_model("gpt2", attn_implementation="eager")
    h = wrap(model)
    h.add("p", "prefix_tuning", prefix_length=2, bottleneck_size=8)
    model.config._attn_implementation = "flash_attention_2"  # the name is all that is read before the refusal
    with pytest.raises(UnsupportedArchitectureError, match="GPT2Attention now uses 'flash_attention_2'.*'sdpa'"):
        hidden(model, {"input_ids": torch.tensor([[5, 6, 7]])})


def test_site_hooks_refuse_calls_they_cannot_read():
    from adapterhub.errors import CompositionError
    from adapterhub.runtime.arch import bind
    from adapterhub.runtime.sites import install, replace_output

    model = tiny_model("bert")
    h = wrap(model)
    h.add("b", "bottleneck", variant="pfeiffer")
    residual = model.encoder.layer[0].output  # the ffn site's residual source (BertOutput)
    with pytest.raises(UnsupportedArchitectureError, match="BertOutput was called without a floating-point tensor"):
        residual()
    with pytest.raises(UnsupportedArchitectureError, match="Dropout returned a dict"):
        replace_output({"h": torch.zeros(1)}, lambda t: t, torch.nn.Dropout())
    with pytest.raises(CompositionError, match="unknown kind 'zz'"):
        install(bind(model), {("zz", 0): lambda value, aux: value})


def test_reduction_factor_mapping_without_the_layer_is_a_schema_error():
    from adapterhub.runtime.methods.config import reduction_factor_for_layer

    with pytest.raises(SchemaError, match="reduction_factor.*has no entry for layer 1 and no 'default'"):
        reduction_factor_for_layer({"0": 4}, 1)
    model = tiny_model("bert")
    with pytest.raises(SchemaError, match="layer 1"):
        wrap(model).add("b", "bottleneck", variant="pfeiffer", reduction_factor={"0": 4})
    assert wrap(model).adapters == ()
