"""Every method on every architecture family: attaches, changes outputs, saves, reloads, removes cleanly."""

from __future__ import annotations

import pytest
import torch
from support.runtime_helpers import ARCHS, assert_same_state, hidden, inputs_for, state_snapshot, tiny_model
from support.tolerances import assert_close, model_terms

from adapterhub.manifest import load_manifest
from adapterhub.runtime import wrap

METHODS = {
    "houlsby": ("bottleneck", {"variant": "houlsby", "init_weights": "houlsby"}),
    "pfeiffer": ("bottleneck", {"variant": "pfeiffer", "reduction_factor": {"0": 8, "default": 16}}),
    "parallel": ("bottleneck", {"variant": "parallel", "init_weights": "bert"}),
    "compacter": ("compacter", {"variant": "compacter", "reduction_factor": 4}),
    "compacter++": ("compacter", {"variant": "compacter++", "reduction_factor": 4}),
    "lora": ("lora", {"r": 4, "alpha": 8, "init_weights": "bert", "target_modules": ["q", "v", "ffn_out"]}),
    "rslora": ("lora", {"r": 4, "alpha": 8, "use_rslora": True, "init_weights": "bert"}),
    "dora": ("dora", {"r": 4, "alpha": 8, "init_weights": "bert", "target_modules": ["q", "k", "v", "o"]}),
    "ia3": ("ia3", {"target_modules": ["k", "v", "ffn_out"], "feedforward_modules": ["ffn_out"]}),
}


def _perturb(handle, name):
    with torch.no_grad():
        for p in handle.container[name].parameters():
            p.add_(torch.randn_like(p) * 0.1)


@pytest.mark.parametrize("arch", ARCHS)
def test_every_method_roundtrips(arch, tmp_path):
    model = tiny_model(arch)
    inputs = inputs_for(arch)
    before = state_snapshot(model)
    base_out = hidden(model, inputs)
    h = wrap(model)
    for key, (method, config) in METHODS.items():
        h.add(key, method, **config)
        _perturb(h, key)
        out = hidden(model, inputs)
        assert (out - base_out).abs().max() > 1e-4, key
        assert h.num_parameters(key) > 0
        target = tmp_path / key
        h.save(key, target)
        manifest = load_manifest(target)
        assert manifest.adapter.method == method
        assert manifest.base_model.fingerprint == h.fingerprint
        assert {f.path for f in manifest.files} == {"adapter.safetensors"}
        h.remove(key)
        torch.testing.assert_close(hidden(model, inputs), base_out, atol=0, rtol=0)  # the base computation again
        h.load(target, name=key)
        assert_close(hidden(model, inputs), out, terms=model_terms(model), what=f"{key}: ")  # values in new memory
        h.remove(key)
    assert h.adapters == ()
    assert not list(h.container.parameters())
    assert_same_state(model, before)


def test_stack_and_activation():
    model = tiny_model("bert")
    inputs = inputs_for("bert")
    base_out = hidden(model, inputs)
    h = wrap(model)
    assert wrap(model) is h
    h.add("a", "bottleneck", variant="pfeiffer", init_weights="bert")
    h.add("b", "lora", r=2, alpha=4, init_weights="bert", activate=False)
    assert h.active == ("a",)
    only_a = hidden(model, inputs)
    h.activate("a", "b")
    both = hidden(model, inputs)
    assert (both - only_a).abs().max() > 1e-5
    h.deactivate()
    torch.testing.assert_close(hidden(model, inputs), base_out, atol=0, rtol=0)  # the base computation again
    counts = h.parameter_counts()
    assert counts["a"] == h.num_parameters("a") and counts["base"] == sum(
        p.numel() for n, p in model.named_parameters() if "adapterhub" not in n)


def test_houlsby_parameter_count_matches_reference_formula():
    # adapters library: one BERT adapter = H*d + d + d*H + H; Houlsby puts two per layer.
    model = tiny_model("bert", hidden_size=64, num_attention_heads=4)
    h = wrap(model)
    h.add("h", "bottleneck", variant="houlsby")
    hs, d = 64, 64 // 16
    assert h.num_parameters("h") == 2 * 2 * (hs * d + d + d * hs + hs)
