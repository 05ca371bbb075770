"""Composition blocks on real tiny models: each block against an independent reference computation."""

from __future__ import annotations

import pytest
import torch
from support.runtime_helpers import cache_keyword, hidden, inputs_for, output_cache, tiny_config, tiny_model
from support.tolerances import assert_close, model_terms
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

from adapterhub.compose import Ensemble, Fuse, Mix, Parallel, Route, Stack, entropy
from adapterhub.errors import AdapterStateError, CompositionError
from adapterhub.runtime import AdapterModel
from adapterhub.runtime.sites import first_tensor, replace_output

TERMS = model_terms(tiny_config("bert"))


def _randomize(h: AdapterModel, name: str, std: float = 0.3, seed: int = 0) -> None:
    """Random weights everywhere (no zero-initialised up-projections), so every adapter has an effect."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in h.container[name].named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std + (1.0 if name.startswith("ia") else 0.0))


def _add(h: AdapterModel, name: str, method: str, seed: int, **config) -> None:
    h.add(name, method, activate=False, **config)
    _randomize(h, name, seed=seed)


def _out(h: AdapterModel, inputs, *blocks) -> torch.Tensor:
    h.activate(*blocks)
    return hidden(h.model, inputs)


def _maxdiff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    d = (a - b).abs()
    return (d[mask.bool()] if mask is not None else d).max().item()


def _close(got: torch.Tensor, want: torch.Tensor, mask: torch.Tensor | None = None) -> None:
    """A block's output vs its reference computed another way: equal up to rounding (tests/support/tolerances.py)."""
    assert_close(got, want, terms=TERMS, mask=mask)


@pytest.fixture
def bert():
    model = tiny_model("bert")
    h = AdapterModel(model)
    _add(h, "pf", "bottleneck", 1, variant="pfeiffer")
    _add(h, "pf2", "bottleneck", 2, variant="pfeiffer")
    _add(h, "ho", "bottleneck", 3, variant="houlsby")
    _add(h, "lo", "lora", 4, r=4, alpha=8, target_modules=["q", "v", "ffn_out"])
    _add(h, "lo2", "lora", 5, r=2, alpha=2, target_modules=["q", "k"])
    _add(h, "ia", "ia3", 6, target_modules=["k", "v", "ffn_out"], feedforward_modules=["ffn_out"])
    return h, inputs_for("bert")


# --- Stack -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pf", "ho", "lo", "ia"])
def test_stack_of_one_is_the_adapter(bert, name):
    h, inputs = bert
    alone = _out(h, inputs, name)
    assert _maxdiff(_out(h, inputs, Stack(name)), alone) == 0.0  # normalised to the same activation: same bytes
    assert _maxdiff(alone, _out(h, inputs)) > 1e-3  # the adapter does something


def test_stack_mixes_methods_houlsby_and_lora(bert):
    """LoRA lives on projections, Houlsby on sublayer outputs: Stack(ho, lo) == Houlsby on the LoRA-merged model."""
    h, inputs = bert
    stacked = _out(h, inputs, Stack("ho", "lo"))
    h.merge("lo")
    reference = _out(h, inputs, "ho")
    h.unmerge("lo")
    _close(stacked, reference)
    assert _maxdiff(stacked, _out(h, inputs, "ho")) > 1e-3


def test_stack_order_matters_and_equals_positional_activate(bert):
    h, inputs = bert
    ab = _out(h, inputs, Stack("pf", "pf2"))
    assert _maxdiff(ab, _out(h, inputs, "pf", "pf2")) == 0.0  # the same activation, computed the same way
    assert _maxdiff(ab, _out(h, inputs, Stack("pf2", "pf"))) > 1e-4
    # nested stacks flatten
    assert _maxdiff(_out(h, inputs, Stack(Stack("pf"), Stack("pf2", "lo"))), _out(h, inputs, "pf", "pf2", "lo")) == 0.0


# --- Fuse --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pf", "ho"])
def test_fuse_of_one_with_identity_value_is_the_adapter(bert, name):
    h, inputs = bert
    h.add_fusion("f", [name], activate=False)
    _randomize(h, "f", seed=9)  # random query/key: with one member the softmax is 1 anyway
    with torch.no_grad():
        for n, p in h.container["f"].named_parameters():
            if n.endswith("value.weight"):
                p.copy_(torch.eye(p.shape[0]))
    fused = _out(h, inputs, Fuse(name, fusion="f"))
    _close(fused, _out(h, inputs, name))
    assert _maxdiff(_out(h, inputs, "f"), fused) == 0.0  # a fusion name alone means Fuse(members)


def test_fuse_matches_a_hand_written_fusion(bert):
    """Fuse(pf, pf2) at the FFN site: query from the last member, keys/values from both up-projections."""
    h, inputs = bert
    h.add_fusion("f", ["pf", "pf2"], activate=False)
    _randomize(h, "f", std=0.2, seed=11)
    got = _out(h, inputs, Fuse("pf", "pf2", fusion="f"))
    h.deactivate()
    tree = {n: p.detach() for n, p in h.container["f"].named_parameters()}
    trees = {m: {n: p.detach() for n, p in h.container[m].named_parameters()} for m in ("pf", "pf2")}
    hooks = []
    for layer in h.binding.layers:
        cell = {}
        ln = layer.module.output.LayerNorm

        def save(mod, args, kwargs, cell=cell):
            cell["x"] = args[1] if len(args) > 1 else kwargs["input_tensor"]

        def out(mod, args, hh, cell=cell, i=layer.index, ln=ln):
            x = cell["x"]
            a = ln(hh + x)
            ups = []
            for m in ("pf", "pf2"):
                t = trees[m]
                d = torch.relu(a @ t[f"layers.{i}.ffn.down.weight"].T + t[f"layers.{i}.ffn.down.bias"])
                ups.append(d @ t[f"layers.{i}.ffn.up.weight"].T + t[f"layers.{i}.ffn.up.bias"])
            q = a @ tree[f"layers.{i}.ffn.query.weight"].T + tree[f"layers.{i}.ffn.query.bias"]
            ks = [u @ tree[f"layers.{i}.ffn.key.weight"].T + tree[f"layers.{i}.ffn.key.bias"] for u in ups]
            vs = [u @ tree[f"layers.{i}.ffn.value.weight"].T for u in ups]
            s = torch.stack([(q * k).sum(-1) for k in ks], -1).softmax(-1)
            return s[..., 0:1] * vs[0] + s[..., 1:2] * vs[1] + hh

        hooks.append(layer.module.output.register_forward_pre_hook(save, with_kwargs=True))
        hooks.append(layer.module.output.dropout.register_forward_hook(out))
    try:
        want = hidden(h.model, inputs)
    finally:
        for hk in hooks:
            hk.remove()
    _close(got, want)


def test_fuse_with_a_stack_member(bert):
    """A Stack member contributes its total output minus the residual; Fuse of Stack(pf) with V=I == pf."""
    h, inputs = bert
    h.add_fusion("f", ["pf"], activate=False)
    with torch.no_grad():
        for n, p in h.container["f"].named_parameters():
            if n.endswith("value.weight"):
                p.copy_(torch.eye(p.shape[0]))
    _close(_out(h, inputs, Fuse(Stack("pf"), fusion="f")), _out(h, inputs, "pf"))


def test_fusion_regularization_and_training_only_touches_fusion(bert):
    from adapterhub.compose import fusion_regularization

    h, inputs = bert
    h.add_fusion("f", ["pf", "pf2"], activate=False)
    assert fusion_regularization(h, "f").item() == pytest.approx(0.01 * 2 * (32 * 32 - 32) * 1e-12, rel=1e-3)
    names = h.train_adapter("f")
    assert names and all(".f." in n for n in names)
    assert isinstance(h.composition, Fuse)
    out = h.model(**inputs).last_hidden_state
    (out.pow(2).mean() + fusion_regularization(h, "f")).backward()
    assert h.container["f"].get("layers.0.ffn.query.weight").grad is not None
    assert h.container["pf"].get("layers.0.ffn.down.weight").grad is None


# --- Mix ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pf", "ho", "lo", "ia"])
def test_mix_with_a_copy_is_the_adapter(bert, name):
    h, inputs = bert
    h.load_package(h.package(name), name="copy", activate=False)
    mixed = _out(h, inputs, Mix(name, "copy", weights=[0.3, 0.7]))
    _close(mixed, _out(h, inputs, name))


def test_mix_weights_sum_to_one_and_per_layer():
    m = Mix("a", "b", weights=[1, 3])
    assert m.layer_weights(0) == (0.25, 0.75)
    per_layer = Mix("a", "b", "c", weights=[[1, 1, 2], [0, 0, 5]])
    for layer in (0, 1):
        assert sum(per_layer.layer_weights(layer)) == pytest.approx(1.0)
    assert per_layer.layer_weights(1) == (0.0, 0.0, 1.0)
    assert sum(Mix("a", "b", "c").layer_weights(5)) == pytest.approx(1.0)
    with pytest.raises(CompositionError, match="weights"):
        Mix("a", "b", weights=[1, -1])
    with pytest.raises(CompositionError, match="3 weights for 2"):
        Mix("a", "b", weights=[1, 1, 1])


def test_mix_is_the_weighted_sum_of_member_outputs_per_layer(bert):
    """One-hot per-layer weights pick one member per layer; bottleneck sites: residual + sum w_i f_i."""
    h, inputs = bert
    picked = _out(h, inputs, Mix("pf", "pf2", weights=[[1, 0], [0, 1]]))
    h.deactivate()
    # reference: layer 0 with pf only, layer 1 with pf2 only (hooks per layer from the adapters' own site functions)
    fns = {**{k: f for k, f in h.entry("pf").method.site_fns(h.container["pf"]).items() if k[1] == 0},
           **{k: f for k, f in h.entry("pf2").method.site_fns(h.container["pf2"]).items() if k[1] == 1}}
    from adapterhub.runtime.sites import install

    handles = install(h.binding, {k: (lambda v, aux, f=f: f(v, aux, False)) for k, f in fns.items()})
    try:
        want = hidden(h.model, inputs)
    finally:
        for hk in handles:
            hk.remove()
    _close(picked, want)
    half = _out(h, inputs, Mix("lo", "lo2"))
    h.deactivate()
    # LoRA mix = base + (delta_lo + delta_lo2) / 2: merge both with halves of their B
    with torch.no_grad():
        for n in ("lo", "lo2"):
            for k, p in h.container[n].named_parameters():
                if k.endswith("lora_B"):
                    p.mul_(0.5)
        h.activate("lo", "lo2")  # merging keeps what runs: make the two what runs, then fold them
        h.merge("lo")
        h.merge("lo2")
    want = _out(h, inputs)
    _close(half, want)


# --- EMEA --------------------------------------------------------------------------------------------
def _token_model():
    torch.manual_seed(0)
    from support.runtime_helpers import tiny_config

    model = AutoModelForTokenClassification.from_config(tiny_config("bert", num_labels=5)).eval()
    h = AdapterModel(model)
    for i, name in enumerate(("e1", "e2", "e3")):
        _add(h, name, "bottleneck", 20 + i, variant="pfeiffer")
    return h


def _reference_emea(h: AdapterModel, inputs, names, steps: int, lr: float):
    """Per example alone: logits w [1, L, N] from zeros, ``steps`` plain gradient steps on the masked mean entropy."""
    fns = [h.entry(n).method.site_fns(h.container[n]) for n in names]
    keys = sorted(fns[0])
    weights_out, logits_out = [], []
    h.deactivate()
    for i in range(inputs["input_ids"].shape[0]):
        one = {k: v[i:i + 1] for k, v in inputs.items()}
        cur = {"w": torch.zeros(1, len(h.binding.layers), len(names), requires_grad=True)}
        hooks = []
        for key in keys:
            layer = h.binding.layers[key[1]]
            site = layer.sites[key[2]]
            cell = {}

            def save(mod, args, kwargs, cell=cell, site=site):
                cell["x"] = first_tensor(args, kwargs, site.residual_arg, site.residual_kwarg)

            def mix(mod, args, out, cell=cell, key=key, cur=cur):
                def f(hh):
                    p = torch.softmax(cur["w"][0, key[1]], -1)
                    return sum(p[j] * fns[j][key](hh, cell["x"], False) for j in range(len(names)))
                return replace_output(out, f)

            hooks.append(layer.sub(site.residual).register_forward_pre_hook(save, with_kwargs=True))
            hooks.append(layer.sub(site.output).register_forward_hook(mix))
        try:
            for _ in range(steps):
                ent = entropy(h.model(**one).logits, one["attention_mask"]).sum()
                (g,) = torch.autograd.grad(ent, [cur["w"]])
                cur["w"] = (cur["w"] - lr * g).detach().requires_grad_(True)
            with torch.no_grad():
                logits_out.append(h.model(**one).logits)
        finally:
            for hk in hooks:
                hk.remove()
        weights_out.append(torch.softmax(cur["w"].detach(), -1))
    return torch.cat(weights_out), torch.cat(logits_out)


def test_emea_lowers_entropy_and_matches_per_example_reference():
    h = _token_model()
    inputs = inputs_for("bert", batch=3, seq=7, seed=4)
    inputs["attention_mask"][1, -3:] = 0
    names = ("e1", "e2", "e3")
    h.activate(Mix(*names))
    with torch.no_grad():
        uniform = h.model(**inputs).logits
    h.activate(Mix(*names, weights="emea", steps=3, lr=50.0))
    with torch.no_grad():
        got = h.model(**inputs).logits
    (weights,) = h.last_mix_weights
    assert weights.shape == (3, 2, 3)
    assert torch.allclose(weights.sum(-1), torch.ones(3, 2))
    assert (weights - 1 / 3).abs().max() > 1e-2  # the steps really moved the weights
    mask = inputs["attention_mask"]
    before, after = entropy(uniform, mask), entropy(got, mask)
    assert bool((after < before).all()), (before, after)
    ref_w, ref_logits = _reference_emea(h, inputs, names, steps=3, lr=50.0)
    _close(weights, ref_w)
    _close(got, ref_logits, mask)
    # zero steps: uniform weights, the plain uniform Mix
    h.activate(Mix(*names, weights="emea", steps=0))
    with torch.no_grad():
        _close(h.model(**inputs).logits, uniform)


def test_emea_padding_is_masked():
    """Changing what sits at padded positions changes neither the fitted weights nor the real tokens' logits."""
    h = _token_model()
    inputs = inputs_for("bert", batch=2, seq=7, seed=5)
    h.activate(Mix("e1", "e2", "e3", weights="emea", steps=2, lr=1.0))
    with torch.no_grad():
        first = h.model(**inputs).logits
    w1 = h.last_mix_weights[0].clone()
    other = {k: v.clone() for k, v in inputs.items()}
    other["input_ids"][-1, -2:] = 7
    with torch.no_grad():
        second = h.model(**other).logits
    _close(h.last_mix_weights[0], w1)
    _close(first, second, inputs["attention_mask"])


def test_emea_refuses_inference_mode():
    h = _token_model()
    h.activate(Mix("e1", "e2", weights="emea"))
    with torch.inference_mode(), pytest.raises(CompositionError, match="no_grad"):
        h.model(**inputs_for("bert"))


def test_emea_refuses_a_kv_cache_it_would_write_once_per_step():
    """EMEA re-runs the forward for each gradient step: a cache passed in (under this transformers
    version's name, ``cache`` from 5.24) would get the new tokens once per step, so it is refused."""
    from transformers import AutoModelForCausalLM

    model = tiny_model("llama", cls=AutoModelForCausalLM)
    h = AdapterModel(model)
    for i, name in enumerate(("e1", "e2")):
        _add(h, name, "bottleneck", 20 + i, variant="pfeiffer")
    ids = torch.randint(3, 99, (1, 5))
    with torch.no_grad():
        cache = output_cache(model(input_ids=ids, use_cache=True))
    h.activate(Mix("e1", "e2", weights="emea", steps=2))
    with torch.no_grad(), pytest.raises(CompositionError, match="KV cache"):
        model(input_ids=ids[:, -1:], use_cache=True, **{cache_keyword(model): cache})
    with torch.no_grad():
        model(input_ids=ids, use_cache=False)  # what the hint says works
    assert h.last_mix_weights[0].shape == (1, 2, 2)


# --- Ensemble ----------------------------------------------------------------------------------------
def _cls_model():
    torch.manual_seed(0)
    from support.runtime_helpers import tiny_config

    model = AutoModelForSequenceClassification.from_config(tiny_config("bert", num_labels=3)).eval()
    h = AdapterModel(model)
    _add(h, "c1", "bottleneck", 31, variant="pfeiffer")
    _add(h, "c2", "lora", 32, r=4, alpha=4, target_modules=["q", "v"])
    return h


def test_ensemble_averages_probabilities_or_logits():
    h = _cls_model()
    inputs = inputs_for("bert", batch=3)
    single = {}
    for n in ("c1", "c2"):
        h.activate(n)
        with torch.no_grad():
            single[n] = h.model(**inputs).logits
    ens = Ensemble("c1", "c2", weights=[1, 3])
    assert sum(ens.weights) == pytest.approx(1.0) and ens.weights == (0.25, 0.75)
    assert sum(Ensemble("a", "b", "c").weights) == pytest.approx(1.0)
    h.activate(ens)
    with torch.no_grad():
        got = h.model(**inputs).logits
    want = 0.25 * single["c1"].softmax(-1) + 0.75 * single["c2"].softmax(-1)
    assert got.shape == (3, 3)
    _close(got.softmax(-1), want)
    h.activate(Ensemble("c1", "c2", mode="logits"))
    with torch.no_grad():
        got = h.model(**inputs).logits
    _close(got, (single["c1"] + single["c2"]) / 2)


def test_ensemble_of_stacks_and_after_a_shared_stack():
    h = _cls_model()
    inputs = inputs_for("bert", batch=2)
    h.activate(Stack("c1", "c2"))
    with torch.no_grad():
        both = h.model(**inputs).logits
    h.activate("c1")
    with torch.no_grad():
        one = h.model(**inputs).logits
    h.activate(Ensemble(Stack("c1", "c2"), "c1", mode="logits"))
    with torch.no_grad():
        _close(h.model(**inputs).logits, (both + one) / 2)
    h.activate(Stack("c1", Ensemble("c2", "c2", mode="logits")))  # shared c1, then the branches
    with torch.no_grad():
        _close(h.model(**inputs).logits, both)


# --- Route and Parallel -----------------------------------------------------------------------------
def _each_alone(h: AdapterModel, inputs, entries) -> torch.Tensor:
    rows = []
    for i, entry in enumerate(entries):
        one = {k: v[i:i + 1] for k, v in inputs.items()}
        if entry is None:
            h.deactivate()
        else:
            h.activate(entry)
        rows.append(hidden(h.model, one))
    return torch.cat(rows)


@pytest.mark.parametrize("entries", [
    ["lo", "lo2", None, "lo", "lo2", None],                      # LoRA fast path (different ranks, None = base)
    ["pf", None, "ho", "pf2", "ho", "pf"],                       # bottlenecks: grouped rows
    ["lo", "ia", Stack("pf", "lo2"), None, Mix("pf", "ho"), "ho"],  # any mix of methods and site blocks
])
def test_route_equals_each_example_alone(bert, entries):
    h, _ = bert
    inputs = inputs_for("bert", batch=len(entries), seed=7)
    inputs["attention_mask"][2, -3:] = 0
    h.activate(Route(entries))
    got = hidden(h.model, inputs)
    want = _each_alone(h, inputs, entries)
    _close(got, want, inputs["attention_mask"])


@pytest.mark.parametrize("arch", ["gpt2", "llama", "t5", "distilbert"])
def test_route_lora_other_architectures(arch):
    model = tiny_model(arch)
    h = AdapterModel(model)
    _add(h, "x", "lora", 1, r=4, alpha=8, target_modules=["q", "v", "ffn_out"])
    _add(h, "y", "lora", 2, r=2, alpha=2, target_modules=["k", "o"])
    _add(h, "z", "bottleneck", 3, variant="houlsby")
    entries = ["x", None, "y", "z"]
    inputs = inputs_for(arch, batch=4, seed=3)
    h.activate(Route(entries))
    got = hidden(model, inputs)
    want = _each_alone(h, inputs, entries)
    mask = None if arch == "t5" else inputs["attention_mask"]
    _close(got, want, mask)


def test_route_with_gradients_trains_each_adapter_on_its_rows(bert):
    h, _ = bert
    inputs = inputs_for("bert", batch=2)
    for p in h.model.parameters():
        p.requires_grad_(False)
    for n in ("lo", "lo2"):
        for p in h.container[n].parameters():
            p.requires_grad_(True)
    # A fixed random readout: a plain sum of BERT's LayerNorm output has a zero gradient (rounding noise only).
    readout = torch.randn(32, generator=torch.Generator().manual_seed(3))
    h.activate(Route(["lo", None]))
    for _ in range(2):  # a second forward/backward must not reuse the first graph
        (h.model(**inputs).last_hidden_state * readout).sum().backward()
    assert h.container["lo"].get("layers.0.q.lora_B").grad.abs().max() > 1e-3
    assert h.container["lo2"].get("layers.0.q.lora_B").grad is None
    grad = h.container["lo"].get("layers.0.q.lora_B").grad.clone()
    h.container["lo"].get("layers.0.q.lora_B").grad = None
    h.activate("lo")
    (h.model(**{k: v[:1] for k, v in inputs.items()}).last_hidden_state * readout).sum().backward()
    assert_close(2 * h.container["lo"].get("layers.0.q.lora_B").grad, grad, terms=TERMS)


def test_route_batch_mismatch_is_a_typed_error(bert):
    h, inputs = bert
    h.activate(Route(["lo", "lo2", "lo"]))
    with pytest.raises(CompositionError, match="3 entries but the batch has 2"):
        hidden(h.model, inputs)


def test_parallel_is_the_concatenation_of_single_runs(bert):
    h, inputs = bert
    h.activate(Parallel("pf", Stack("ho", "lo")))
    got = hidden(h.model, inputs)
    assert got.shape[0] == 4
    a = _out(h, inputs, "pf")
    b = _out(h, inputs, Stack("ho", "lo"))
    mask = inputs["attention_mask"].repeat(2, 1)
    _close(got, torch.cat([a, b]), mask)
    assert inputs["attention_mask"].shape == (2, 7)  # the caller's tensors are not grown in place


# --- activation state and errors ---------------------------------------------------------------------
def test_bad_compositions_leave_the_previous_one_active(bert):
    h, inputs = bert
    before = _out(h, inputs, "pf")
    bad = [
        (lambda: h.activate(Fuse("pf", "lo", fusion="pf")), "is a bottleneck adapter"),
        (lambda: h.activate(Mix("pf", Parallel("pf2", "ho"))), "cannot be nested inside Mix"),
        (lambda: h.activate(Fuse(Ensemble("pf", "pf2"), fusion="x")), "cannot be nested inside Fuse"),
        (lambda: h.activate(Stack(Parallel("pf", "ho"), Parallel("pf", "ho"))), "at most one"),
        (lambda: h.activate(Route(["pf", Route(["pf"])])), "cannot be nested inside Route"),
        (lambda: h.activate(Mix("pf", "nope")), "no adapter named"),
    ]
    for fn, match in bad:
        with pytest.raises(Exception, match=match):
            fn()
        assert _maxdiff(hidden(h.model, inputs), before) == 0.0  # a refusal changes nothing: the same computation


def test_fuse_refuses_weight_space_members_and_mismatched_fusion(bert):
    h, inputs = bert
    with pytest.raises(CompositionError, match="lora adapter"):
        h.add_fusion("f", ["pf", "lo"])
    with pytest.raises(CompositionError, match="different sites"):
        h.add_fusion("f", ["pf", "ho"])
    h.add_fusion("f", ["pf", "pf2"], activate=False)
    with pytest.raises(CompositionError, match="does not match fusion member"):
        h.activate(Fuse("pf2", "pf", fusion="f"))
    with pytest.raises(CompositionError, match="made for 2 members"):
        h.activate(Fuse("pf", fusion="f"))


def test_merged_adapter_in_a_block_is_refused_but_skipped_in_a_stack(bert):
    h, inputs = bert
    h.merge("lo")
    with pytest.raises(CompositionError, match="merged"):
        h.activate(Mix("lo", "lo2"))
    merged = _out(h, inputs, "lo", "pf")
    h.unmerge("lo")
    _close(merged, _out(h, inputs, "lo", "pf"))


def test_remove_drops_blocks_that_use_the_adapter(bert):
    h, inputs = bert
    h.add_fusion("f", ["pf", "pf2"], activate=False)
    h.activate("ho", Fuse("pf", "pf2", fusion="f"), "lo")
    with pytest.raises(AdapterStateError, match="remove them first"):
        h.remove("pf2")
    h.remove("f")
    assert h.active == ("ho", "lo")
    h.activate("ho", Mix("pf2", "lo2"), "lo")
    h.remove("pf2")
    assert h.active == ("ho", "lo")
    assert _maxdiff(hidden(h.model, inputs), _out(h, inputs, "ho", "lo")) == 0.0  # the same activation: same bytes


def test_prefix_tuning_only_in_a_plain_stack():
    model = tiny_model("bert")
    h = AdapterModel(model)
    h.add("p", "prefix_tuning", prefix_length=3, bottleneck_size=8, activate=False)
    _add(h, "pf", "bottleneck", 1, variant="pfeiffer")
    inputs = inputs_for("bert")
    h.activate("p", "pf")
    stacked = hidden(model, inputs)
    assert stacked.shape == (2, 7, 32)
    # a Stack of prefixes concatenates them: order-independent, unlike either alone
    h.add("p2", "prefix_tuning", prefix_length=2, bottleneck_size=8, activate=False)
    both = _out(h, inputs, Stack("p", "p2"))
    _close(both, _out(h, inputs, Stack("p2", "p")))
    assert min(_maxdiff(both, _out(h, inputs, "p")), _maxdiff(both, _out(h, inputs, "p2"))) > 1e-4
    for block, where in ((Mix("p", "pf"), "Mix"), (Route(["p", "pf"]), "Route")):
        with pytest.raises(CompositionError, match=f"prefix_tuning adapter 'p' cannot be used inside {where}"):
            h.activate(block)
