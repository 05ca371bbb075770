"""LoHa: PEFT parity (load, add, export), merge algebra, training-only dropouts, and what is refused.

Parity as in ``test_parity_live.py``: PEFT builds the adapter in this interpreter, we load its directory,
and outputs agree in fp32 within ``tests/tolerances.py`` and again in float64, where agreement to
rounding (~1e-13 relative) proves the same math. The configs cover both of our forward paths: the
rank-``r^2`` Khatri-Rao factors (r = 2, 3 on the tiny models) and the dense delta (r = 8).
"""

from __future__ import annotations

import json

import pytest
import torch
from support.runtime_helpers import assert_same_state, hidden, inputs_for, state_snapshot, tiny_model
from support.tolerances import assert_close, model_terms

from adapterhub.compose import Average, Stack, WeightedSum
from adapterhub.errors import CompositionError, MergeConflictError, SchemaError
from adapterhub.runtime import wrap
from adapterhub.runtime.formats.peft import export_peft

PEFT_TARGETS = {  # attention, ffn in, ffn out, every projection of a layer (for our neutral names below)
    "bert": (["query", "value"], ["intermediate.dense"], ["output.dense"]),
    "llama": (["q_proj", "v_proj"], ["up_proj"], ["down_proj"]),
    "t5": (["q", "v"], ["wi"], ["wo"]),
}
CASES = {  # (r, alpha, which PEFT targets, PEFT's layers_to_transform)
    "kr-attn-ffn_in": (2, 6, (0, 1), None),
    "dense-attn-ffn_out": (8, 4, (0, 2), None),
    "kr-all-one-layer": (3, 1.5, (0, 1, 2), [1]),
}


def _check(got, want, inputs, model) -> float:
    mask = None if "decoder_input_ids" in inputs else inputs["attention_mask"].bool()
    return assert_close(got, want, terms=model_terms(model), mask=mask)


def _random_factors(model, scale: float = 0.3, seed: int = 3) -> None:
    """Every LoHa factor random (PEFT's init zeroes ``hada_w2_b``: the adapter would do nothing)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "hada_" in n:
                p.copy_(scale * torch.randn(p.shape, generator=g))


def _peft_loha(peft, arch, case):
    r, alpha, which, layers = CASES[case]
    targets = [m for i in which for m in PEFT_TARGETS[arch][i]]
    pattern = {"bert": "layer", "llama": "layers", "t5": "block"}[arch] if layers else None
    cfg = peft.LoHaConfig(r=r, alpha=alpha, target_modules=targets, layers_to_transform=layers, layers_pattern=pattern)
    ref = peft.get_peft_model(tiny_model(arch), cfg)
    _random_factors(ref)
    return ref.eval()


@pytest.mark.parametrize("arch", list(PEFT_TARGETS))
@pytest.mark.parametrize("case", list(CASES))
def test_peft_loha_directory_loads_and_exports_with_peft_outputs(arch, case, tmp_path):
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    inputs = inputs_for(arch)
    ref = _peft_loha(peft, arch, case)
    want = hidden(ref, inputs)
    ref.save_pretrained(tmp_path / "peft")

    model = tiny_model(arch)
    h = wrap(model)
    name = h.load(tmp_path / "peft", name="p")
    assert h.method_name(name) == "loha"
    r, alpha, _, layers = CASES[case]
    config = h.package(name).config
    assert (config["r"], config["alpha"]) == (r, alpha)
    if layers is not None:  # PEFT's layers_to_transform is our leave_out of the other layers
        assert config["leave_out"]
    got = hidden(model, inputs)
    assert (got - hidden(tiny_model(arch), inputs)).abs().max() > 1e-3  # the adapter has an effect
    _check(got, want, inputs, model)
    model64 = tiny_model(arch).double()
    wrap(model64).load(tmp_path / "peft", force=True)  # force: the fingerprint is of the fp32 base
    _check(hidden(model64, inputs), hidden(ref.double(), inputs), inputs, model)

    export_peft(h, name, tmp_path / "export")
    exported = json.loads((tmp_path / "export" / "adapter_config.json").read_text())
    assert exported["peft_type"] == "LOHA" and (exported["r"], exported["alpha"]) == (r, alpha)
    assert "fan_in_fan_out" not in exported  # a LoRA key: PEFT's LoHaConfig warns "upgrade PEFT" on it
    again = peft.PeftModel.from_pretrained(tiny_model(arch), tmp_path / "export").eval()
    _check(hidden(again, inputs), got, inputs, model)
    again64 = peft.PeftModel.from_pretrained(tiny_model(arch).double(), tmp_path / "export").eval()
    _check(hidden(again64, inputs), hidden(model64, inputs), inputs, model)


@pytest.mark.parametrize("arch,targets", [("bert", ["q", "k", "v", "o", "ffn_in", "ffn_out"]),
                                          ("llama", ["q", "v", "ffn_gate", "ffn_out"]), ("t5", ["k", "o", "ffn_in"])])
def test_added_loha_exports_to_what_peft_computes(arch, targets, tmp_path):
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    inputs = inputs_for(arch)
    model = tiny_model(arch)
    h = wrap(model)
    h.add("x", "loha", r=2, alpha=5, target_modules=targets, init_weights=False, seed=4)
    got = hidden(model, inputs)
    assert (got - hidden(tiny_model(arch), inputs)).abs().max() > 1e-3
    export_peft(h, "x", tmp_path / "export")
    h.save("x", tmp_path / "ours")
    again = peft.PeftModel.from_pretrained(tiny_model(arch), tmp_path / "export").eval()
    _check(hidden(again, inputs), got, inputs, model)
    model64 = tiny_model(arch).double()
    wrap(model64).load(tmp_path / "ours", force=True)
    again64 = peft.PeftModel.from_pretrained(tiny_model(arch).double(), tmp_path / "export").eval()
    _check(hidden(model64, inputs), hidden(again64, inputs), inputs, model)


def test_fresh_loha_is_the_identity_with_peft_init_bounds():
    model = tiny_model("bert")
    inputs = inputs_for("bert")
    before = hidden(model, inputs)
    h = wrap(model)
    h.add("x", "loha", r=4, alpha=8, target_modules=["q", "ffn_in"])
    assert torch.equal(hidden(model, inputs), before)  # y + 0: the same bytes
    tensors = h.package("x").tensors
    assert set(tensors) == {f"layers.{i}.{s}.hada_w{k}_{ab}" for i in (0, 1) for s in ("q", "ffn_in")
                            for k in (1, 2) for ab in "ab"}
    for key, t in tensors.items():  # kaiming_uniform_(a=sqrt(5)): bound 1/sqrt(fan_in), hada_w2_b zero
        if key.endswith("hada_w2_b"):
            assert not t.any()
        else:
            assert 0 < t.abs().max() <= t.shape[1] ** -0.5
    assert h.num_parameters("x") == 2 * (2 * (32 * 4 + 4 * 32) + 2 * (37 * 4 + 4 * 32))  # 2 layers


PROJECTIONS = {  # our slot -> (module path in the backbone, third of a fused projection or None)
    "gpt2": {"q": ("h.{i}.attn.c_attn", 0), "v": ("h.{i}.attn.c_attn", 2), "k": ("h.{i}.attn.c_attn", 1),
             "ffn_in": ("h.{i}.mlp.c_fc", None), "ffn_out": ("h.{i}.mlp.c_proj", None)},
    "bert": {"q": ("encoder.layer.{i}.attention.self.query", None), "v": ("encoder.layer.{i}.attention.self.value", None),
             "ffn_out": ("encoder.layer.{i}.output.dense", None)},
    "llama": {"q": ("layers.{i}.self_attn.q_proj", None), "ffn_out": ("layers.{i}.mlp.down_proj", None)},
}


def _reference_delta(tensors, prefix, scaling):
    """An independent float64 statement of PEFT's ``make_weight``: ``((w1a @ w1b) * (w2a @ w2b)) * scale``."""
    w = {k: tensors[f"{prefix}.hada_{k}"].double() for k in ("w1_a", "w1_b", "w2_a", "w2_b")}
    return ((w["w1_a"] @ w["w1_b"]) * (w["w2_a"] @ w["w2_b"])) * scaling


@pytest.mark.parametrize("arch,targets,r", [("gpt2", ["q", "v", "ffn_in"], 2), ("gpt2", ["k", "ffn_out"], 8),
                                            ("bert", ["q", "v", "ffn_out"], 3), ("llama", ["q", "ffn_out"], 8)])
def test_merge_is_the_weight_delta_exactly_in_float64(arch, targets, r):
    """Merged weights are ``W + s (W1a W1b) ⊙ (W2a W2b)`` per slot and nothing else changes (GPT-2:
    Conv1D, and thirds of the fused ``c_attn``); merged outputs are the unmerged ones, unmerge restores."""
    model = tiny_model(arch).double()
    inputs = inputs_for(arch)
    base = state_snapshot(model)
    h = wrap(model)
    h.add("x", "loha", r=r, alpha=3, target_modules=targets, init_weights=False, seed=2)
    unmerged = hidden(model, inputs)
    h.merge("x")
    assert_close(hidden(model, inputs), unmerged, terms=model_terms(model))
    tensors = h.package("x").tensors
    want = {k: v.clone() for k, v in base.items()}
    for i in range(2):
        for slot in targets:
            path, third = PROJECTIONS[arch][slot]
            key = path.format(i=i) + ".weight"
            linear = want[key].t() if arch == "gpt2" else want[key]  # a view: Linear form [out, in]
            rows = slice(None) if third is None else slice(third * 32, (third + 1) * 32)
            linear[rows] += _reference_delta(tensors, f"layers.{i}.{slot}", 3 / r)
    now = model.state_dict()
    for k, v in want.items():
        assert_close(now[k], v, terms=r, scale=max(1.0, v.abs().max().item()), what=f"{k}: ")
    h.unmerge("x")
    for k, v in base.items():
        assert_close(model.state_dict()[k], v, terms=r, scale=max(1.0, v.abs().max().item()), what=f"{k}: ")
    assert_close(hidden(model, inputs), unmerged, terms=model_terms(model))


def test_loha_folds_as_an_add():
    """LoHa merges like LoRA: adds commute with adds, not with an IA3 scaling that acts before them."""
    h = wrap(tiny_model("bert"))
    inputs = inputs_for("bert")
    h.add("ia3", "ia3", target_modules=["v"], feedforward_modules=[], activate=False)
    h.add("lora", "lora", r=2, alpha=4, init_weights="bert", target_modules=["v"], activate=False)
    h.add("loha", "loha", r=2, alpha=4, init_weights=False, target_modules=["v"], activate=False)
    with torch.no_grad():
        for p in h.container["ia3"].parameters():
            p.add_(0.3)
    h.activate(Stack("ia3", "loha"))
    snap = state_snapshot(h.model)
    with pytest.raises(MergeConflictError, match="loha"):
        h.merge("loha")
    assert_same_state(h.model, snap)
    h.activate(Stack("lora", "loha", "ia3"))
    want = hidden(h.model, inputs)
    h.merge("loha")
    h.merge("lora")
    h.merge("ia3")
    assert_close(hidden(h.model, inputs), want, terms=model_terms(h.model))


def _bert_without_dropout():
    """Tiny BERT whose own dropouts are off, so train mode differs from eval only by the adapter."""
    return tiny_model("bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def test_rank_and_module_dropout_act_in_training_only():
    inputs = inputs_for("bert")
    outs = {}
    for key, extra in {"plain": {}, "dropped": {"rank_dropout": 0.5, "module_dropout": 0.3}}.items():
        model = _bert_without_dropout()
        h = wrap(model)
        h.add("x", "loha", r=2, alpha=4, target_modules=["q", "ffn_in"], init_weights=False, seed=1, **extra)
        outs[key] = (model, h, hidden(model, inputs))
    assert torch.equal(outs["plain"][2], outs["dropped"][2])  # eval: the same code path, the same bytes
    plain = outs["plain"][0].train()
    assert torch.equal(hidden(plain, inputs), outs["plain"][2])  # no dropout configured: train = eval
    model, h, _ = outs["dropped"]
    model.train()
    torch.manual_seed(0)
    assert (hidden(model, inputs) - outs["plain"][2]).abs().max() > 1e-4  # rows or modules dropped

    everything = _bert_without_dropout()
    wrap(everything).add("x", "loha", r=2, alpha=4, target_modules=["ffn_in"], init_weights=False, module_dropout=1.0)
    base = _bert_without_dropout()
    assert (hidden(everything, inputs) - hidden(base, inputs)).abs().max() > 1e-4  # eval: the update runs
    everything.train()
    assert torch.equal(hidden(everything, inputs), hidden(base.train(), inputs))  # train: always skipped

    plain_h = outs["plain"][1]
    plain_h.train_adapter("x")
    plain(**inputs).last_hidden_state.square().mean().backward()
    grads = {k: p.grad for k, p in plain_h.container["x"].named_parameters()}
    assert len(grads) == 16 and all(g is not None and g.abs().max() > 0 for g in grads.values())


def test_average_of_loha_is_refused_naming_why():
    pkgs = []
    for seed in (1, 2):
        h = wrap(tiny_model("bert"))
        h.add("x", "loha", r=2, alpha=4, target_modules=["q"], init_weights=False, seed=seed)
        pkgs.append(h.package("x"))
    for combine in (lambda: Average(*pkgs), lambda: WeightedSum(*pkgs, coefficients=[0.5, 0.5])):
        with pytest.raises(CompositionError, match="Hadamard|cross terms") as err:
            combine()
        assert "merge" in (err.value.hint or "")


def test_peft_loha_features_we_cannot_represent_are_refused(tmp_path):
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    ref = peft.get_peft_model(tiny_model("bert"), peft.LoHaConfig(r=2, alpha=4, target_modules=["query", "value"]))
    ref.save_pretrained(tmp_path / "p")
    cfg_path = tmp_path / "p" / "adapter_config.json"
    good = json.loads(cfg_path.read_text())

    cfg_path.write_text(json.dumps({**good, "rank_pattern": {"query": 4}}))
    h = wrap(tiny_model("bert"))
    with pytest.raises(SchemaError, match="rank_pattern"):
        h.load(tmp_path / "p")
    assert h.adapters == ()

    from safetensors.torch import load_file, save_file

    cfg_path.write_text(json.dumps(good))
    weights = tmp_path / "p" / "adapter_model.safetensors"
    tensors = load_file(weights)
    key = next(k for k in tensors if k.endswith("query.hada_w1_a"))
    tensors[key.replace("hada_w1_a", "hada_t1")] = torch.zeros(2, 2, 3, 3)
    save_file(tensors, weights)
    with pytest.raises(SchemaError, match="convolution"):
        wrap(tiny_model("bert")).load(tmp_path / "p")

    gpt2 = wrap(tiny_model("gpt2"))  # PEFT has no LoHa layer for transformers' Conv1D
    gpt2.add("x", "loha", r=2, alpha=4, target_modules=["q", "v"])
    with pytest.raises(SchemaError, match="Conv1D"):
        export_peft(gpt2, "x", tmp_path / "gpt2")
    assert not (tmp_path / "gpt2").exists()


@pytest.mark.parametrize("config,pointer", [({"r": 2}, "alpha"), ({"r": 0, "alpha": 1}, "r"),
                                            ({"r": 2, "alpha": 1, "dropout": 0.1}, "dropout"),
                                            ({"r": 2, "alpha": 1, "rank_dropout": 1.5}, "rank_dropout"),
                                            ({"r": 2, "alpha": 1, "target_modules": ["nope"]}, "target_modules")])
def test_bad_loha_configs_are_schema_errors(config, pointer):
    h = wrap(tiny_model("bert"))
    with pytest.raises(SchemaError, match=pointer):
        h.add("x", "loha", **config)
    assert h.active == ()


def test_loha_round_trips_through_our_format(tmp_path):
    from adapterhub.manifest import load_manifest

    model = tiny_model("llama")
    inputs = inputs_for("llama")
    h = wrap(model)
    h.add("x", "loha", r=3, alpha=2, target_modules=["q", "ffn_out"], rank_dropout=0.1, init_weights=False)
    want = hidden(model, inputs)
    h.save("x", tmp_path / "x")
    manifest = load_manifest(tmp_path / "x")
    assert manifest.adapter.method == "loha" and manifest.adapter.config.stated()["rank_dropout"] == 0.1
    fresh = tiny_model("llama")
    wrap(fresh).load(tmp_path / "x")
    assert_close(hidden(fresh, inputs), want, terms=model_terms(fresh))
