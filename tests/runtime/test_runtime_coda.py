"""CoDA: the soft top-k router, the conditional layer math, padding, training, and the adapter lifecycle."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from support.runtime_helpers import cache_keyword, hidden, output_cache, tiny_model
from support.tolerances import assert_close, model_terms
from torch.nn import functional as F

from adapterhub import families as arch_table
from adapterhub.errors import (
    AdapterStateError,
    CompositionError,
    InvalidArgumentError,
    SchemaError,
    UnsupportedArchitectureError,
)
from adapterhub.manifest import load_manifest
from adapterhub.runtime import wrap
from adapterhub.runtime.kv_cache import CACHE_KEYWORDS, cached_length
from adapterhub.runtime.methods.coda import routing
from adapterhub.runtime.safetensors_io import read_safetensors
from adapterhub.runtime.soft_topk import budgets, soft_top_k

ARCHS = ("bert", "llama")


# --- soft top-k -----------------------------------------------------------------------------------
def exact_soft_top_k(s: torch.Tensor, k: float, eps: float) -> torch.Tensor:
    """Independent solution of the entropic problem: lambda = min(1, exp((s + a) / eps)), bisection on a."""
    s = s.double()
    lo, hi = -s.max().item() - 60 * eps, -s.min().item() + 60 * eps
    for _ in range(200):
        a = (lo + hi) / 2
        total = torch.clamp(torch.exp((s + a) / eps), max=1.0).sum().item()
        lo, hi = (a, hi) if total < k else (lo, a)
    return torch.clamp(torch.exp((s + (lo + hi) / 2) / eps), max=1.0)


def test_soft_top_k_refuses_zero_iterations():
    with pytest.raises(InvalidArgumentError, match="iterations=0.*iterations >= 1"):
        soft_top_k(torch.zeros(1, 3), torch.tensor([1.0]), epsilon=0.1, iterations=0)


def test_soft_top_k_sums_to_k_in_unit_box_and_ignores_pads():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(3, 10, generator=g)
    valid = torch.ones(3, 10, dtype=torch.bool)
    valid[2, 6:] = False
    k = torch.tensor([3, 2, 5])
    lam = soft_top_k(s, k, epsilon=0.1, iterations=20, valid=valid)
    assert lam.dtype == torch.float32
    torch.testing.assert_close(lam.sum(-1), k.float(), atol=1e-3, rtol=0)  # 20 solver iterations, not rounding
    assert lam.min() >= 0 and lam.max() <= 1
    assert torch.all(lam[2, 6:] == 0)


@pytest.mark.parametrize("eps", [0.5, 0.1, 0.03])
def test_soft_top_k_matches_exact_entropic_solution(eps):
    g = torch.Generator().manual_seed(1)
    s = torch.randn(12, generator=g)
    lam = soft_top_k(s[None], torch.tensor([4]), epsilon=eps, iterations=20)[0]
    torch.testing.assert_close(lam.double(), exact_soft_top_k(s, 4, eps), atol=1e-4, rtol=0)


def test_soft_top_k_approaches_hard_top_k():
    g = torch.Generator().manual_seed(2)
    s = torch.randn(2, 16, generator=g)
    hard = torch.zeros_like(s).scatter(1, s.topk(5, dim=-1).indices, 1.0)
    gaps = [(soft_top_k(s, torch.tensor([5, 5]), epsilon=e, iterations=60) - hard).abs().max().item()
            for e in (1.0, 0.1, 0.003)]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 1e-3


def test_soft_top_k_gradient_reaches_scores_not_pads():
    g = torch.Generator().manual_seed(3)
    s = torch.randn(2, 8, generator=g, requires_grad=True)
    valid = torch.ones(2, 8, dtype=torch.bool)
    valid[1, 5:] = False
    lam = soft_top_k(s, torch.tensor([3, 2]), epsilon=0.3, iterations=20, valid=valid)
    (lam * torch.arange(8.0)).sum().backward()
    assert torch.isfinite(s.grad).all()
    assert s.grad[0].abs().sum() > 1e-3 and s.grad[1, :5].abs().sum() > 1e-3
    assert torch.all(s.grad[1, 5:] == 0)


@pytest.mark.parametrize(("scale", "eps"), [(1.0, 0.1), (30.0, 0.1), (1000.0, 0.02)])
def test_soft_top_k_gradient_stays_finite_when_tokens_clamp_or_budget_covers_the_row(scale, eps):
    """Regression: exp overflowing for clamped tokens (inf * 0) and a row with nothing left to weigh
    (k = its valid count) made the backward pass NaN, which AdamW then spread into every weight."""
    g = torch.Generator().manual_seed(0)
    s = (torch.randn(4, 40, generator=g) * scale).requires_grad_()
    valid = torch.ones(4, 40, dtype=torch.bool)
    valid[1, 30:] = False
    valid[2, 5:] = False
    k = torch.tensor([20, 10, 5, 1])  # row 2: the budget covers every valid token
    lam = soft_top_k(s, k, epsilon=eps, iterations=20, valid=valid)
    (lam * torch.randn(4, 40, generator=g)).sum().backward()
    assert torch.isfinite(lam).all() and torch.isfinite(s.grad).all()
    torch.testing.assert_close(lam.sum(-1), k.float(), atol=1e-3, rtol=0)


def test_budgets_count_and_fraction():
    valid = torch.tensor([[1] * 10, [1] * 3 + [0] * 7]).bool()
    assert budgets(0.3, valid).tolist() == [3, 1]
    assert budgets(0.25, valid).tolist() == [3, 1]
    assert budgets(4, valid).tolist() == [4, 3]
    assert budgets(1.0, valid).tolist() == [1, 1]  # k >= 1 is a count (schema), so 1.0 routes one token


# --- helpers --------------------------------------------------------------------------------------
def _model(arch: str, **kw):
    return tiny_model(arch, **kw)


def _inputs(arch: str, lengths: list[int], seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = max(lengths)
    ids = torch.randint(3, 99, (len(lengths), n), generator=g)
    mask = torch.zeros(len(lengths), n, dtype=torch.long)
    for i, length in enumerate(lengths):
        mask[i, :length] = 1
    out = {"input_ids": ids, "attention_mask": mask}
    if arch != "bert":
        out["use_cache"] = False
    return out


def _perturb(h, name, scale=0.3):
    with torch.no_grad():
        g = torch.Generator().manual_seed(7)
        for p in h.container[name].parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def _record_layer(layer):
    seen: dict[str, torch.Tensor] = {}

    def pre(module, args, kwargs):
        seen["x"] = args[0] if args else kwargs["hidden_states"]

    def post(module, args, kwargs, out):
        seen["y"] = out if isinstance(out, torch.Tensor) else out[0]

    return seen, [layer.register_forward_pre_hook(pre, with_kwargs=True),
                  layer.register_forward_hook(post, with_kwargs=True)]


# --- layer math -----------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", [*ARCHS, "mistral"])
def test_all_tokens_and_zero_adapter_equals_base(arch):
    model = _model(arch)
    inputs = _inputs(arch, [9, 6])
    base = hidden(model, inputs)
    h = wrap(model)
    h.add("c", "coda", k=1000)  # a count above every length: all valid tokens, lambda == 1
    out = hidden(model, inputs)
    valid = inputs["attention_mask"].bool()
    assert_close(out, base, terms=model_terms(model), mask=valid)  # the layer via CoDA's sub-call vs directly
    route = routing(h, "c")[0]
    assert torch.all(route.weights[valid] == 1) and torch.all(route.weights[~valid] == 0)


@pytest.mark.parametrize("arch", ARCHS)
def test_unselected_get_adapter_only_selected_get_heavy_update_on_subsequence(arch):
    model = _model(arch)
    inputs = _inputs(arch, [10, 10])
    h = wrap(model)
    h.add("c", "coda", k=0.4, non_linearity="relu")
    _perturb(h, "c")
    layer = h.binding.layers[1].module
    seen, hooks = _record_layer(layer)
    with torch.no_grad():
        model(**inputs)
    for hk in hooks:
        hk.remove()
    x, y = seen["x"], seen["y"]
    t = {n: p.detach() for n, p in h.container["c"].named_parameters()}
    pre = "layers.1.adapter."
    z = F.linear(F.relu(F.linear(x, t[pre + "down.weight"], t[pre + "down.bias"])), t[pre + "up.weight"],
                 t[pre + "up.bias"])
    route = routing(h, "c")[1]
    assert route.indices.shape == (2, 4) and route.selected.all()
    chosen = torch.zeros(2, 10, dtype=torch.bool).scatter(1, route.indices, True)
    assert torch.equal(y[~chosen], (x + z)[~chosen])  # exactly X + adapter(X): the same ops on the same tensors
    # the chosen tokens: the original layer on the gathered sub-sequence, computed here in plain torch
    for b in range(2):
        idx = route.indices[b]
        xs = x[b, idx][None]
        with torch.no_grad():
            if arch == "bert":
                fs = type(layer).forward(layer, xs)
            else:
                pos = idx[None]
                causal = torch.full((len(idx), len(idx)), torch.finfo(xs.dtype).min).triu(1)[None, None]
                fs = type(layer).forward(layer, xs, attention_mask=causal, position_ids=pos,
                                         position_embeddings=model.rotary_emb(xs, pos))
        fs = fs if isinstance(fs, torch.Tensor) else fs[0]
        lam = route.weights[b, idx][:, None]
        expect = x[b, idx] + z[b, idx] + lam * (fs[0] - x[b, idx])
        assert_close(y[b, idx], expect, terms=model_terms(model))
        assert lam.min() < 0.999  # a real soft weight, not a trivial 1


@pytest.mark.parametrize("arch", ARCHS)
def test_heavy_layer_sees_only_routed_tokens(arch):
    model = _model(arch)
    h = wrap(model)
    h.add("c", "coda", k=3)
    lengths: list[int] = []
    subs = [layer.module.attention if arch == "bert" else layer.module.self_attn for layer in h.binding.layers]
    subs += [layer.module.intermediate if arch == "bert" else layer.module.mlp for layer in h.binding.layers]
    hooks = [m.register_forward_pre_hook(
        lambda m, a, kw: lengths.append((a[0] if a else kw["hidden_states"]).shape[1]), with_kwargs=True)
        for m in subs]
    hidden(model, _inputs(arch, [11, 11]))
    assert lengths == [3] * len(subs)
    lengths.clear()
    h.deactivate()
    hidden(model, _inputs(arch, [11, 11]))
    assert lengths == [11] * len(subs)
    for hk in hooks:
        hk.remove()


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", ARCHS)
def test_padded_batch_equals_single_runs(arch, kernel):
    model = _model(arch, attn_implementation=kernel)
    assert model.config._attn_implementation == kernel
    h = wrap(model)
    h.add("c", "coda", k=0.5)
    _perturb(h, "c")
    lengths = [9, 5, 7]
    batch = _inputs(arch, lengths)
    out = hidden(model, batch)
    weights = routing(h, "c")[0].weights
    assert torch.all(weights[~batch["attention_mask"].bool()] == 0)
    assert routing(h, "c")[0].budgets.tolist() == [5, 3, 4]
    for i, n in enumerate(lengths):
        single = {"input_ids": batch["input_ids"][i:i + 1, :n], "attention_mask": batch["attention_mask"][i:i + 1, :n]}
        if arch != "bert":
            single["use_cache"] = False
        assert_close(out[i, :n], hidden(model, single)[0], terms=model_terms(model), what=f"row {i}: ")


# --- training, lifecycle, refusals -----------------------------------------------------------------
def test_training_lowers_loss_and_moves_router():
    from transformers import AutoModelForSequenceClassification

    model = tiny_model("bert", cls=AutoModelForSequenceClassification, num_labels=2)
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    h = wrap(model)
    h.add("c", "coda", k=0.5, reduction_factor=4, router_epsilon=0.3)
    names = h.train_adapter("c")
    assert any("router" in n for n in names) and any("adapter.up" in n for n in names)
    batch = _inputs("bert", [8, 8, 6, 8, 7, 8, 8, 5], seed=4)
    labels = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    router = {n: p.detach().clone() for n, p in h.container["c"].named_parameters() if "router" in n}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for step in range(25):
        loss = model(**batch, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        if step == 0:  # the gradient reaches the router through lambda (the last layer's only matters once
            # the pooled first token is routed there, so layer 0 is the one checked here)
            grad = h.container["c"].get("layers.0.router.weight").grad
            assert grad is not None and grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    now = dict(h.container["c"].named_parameters())
    assert all((now[n] - v).abs().max() > 1e-4 for n, v in router.items())
    for k, v in model.state_dict().items():
        if "adapterhub" not in k and "classifier" not in k:
            assert torch.equal(v, base_state[k]), k


@pytest.mark.parametrize("kernel", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", ARCHS)
def test_padded_batch_gradients_are_finite(arch, kernel):
    """Every adapter and router gradient is finite on a ragged batch (filler positions included)."""
    model = _model(arch, attn_implementation=kernel)
    h = wrap(model)
    h.add("c", "coda", k=0.5)
    _perturb(h, "c")
    h.train_adapter("c")
    batch = _inputs(arch, [9, 5, 7, 2])
    if arch != "bert":
        batch["use_cache"] = False
    model(**batch).last_hidden_state.pow(2).mean().backward()
    grads = {n: p.grad for n, p in h.container["c"].named_parameters() if p.requires_grad}
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads.values()), [
        n for n, g in grads.items() if g is None or not torch.isfinite(g).all()]


@pytest.mark.parametrize("arch", ARCHS)
def test_deactivate_restores_base_and_save_load_round_trips(arch, tmp_path):
    model = _model(arch)
    inputs = _inputs(arch, [8, 6])
    layer = model.base_model.get_submodule("encoder.layer.0" if arch == "bert" else "layers.0")
    forward_before = layer.forward
    base = hidden(model, inputs)
    h = wrap(model)
    h.add("c", "coda", k=0.5, router_iterations=10)
    _perturb(h, "c")
    out = hidden(model, inputs)
    assert (out - base).abs().max() > 1e-3
    h.deactivate()
    assert "forward" not in layer.__dict__ and layer.forward == forward_before
    assert torch.equal(hidden(model, inputs), base)  # the original forward again: the same computation
    h.activate("c")
    assert torch.equal(hidden(model, inputs), out)
    h.save("c", tmp_path / "c")
    manifest = load_manifest(tmp_path / "c")
    assert manifest.adapter.method == "coda" and manifest.adapter.config.router_iterations == 10
    tensors = read_safetensors(tmp_path / "c" / "adapter.safetensors")
    assert "layers.1.router.weight" in tensors and tensors["layers.0.adapter.down.weight"].shape[1] == 32
    h.remove("c")
    assert torch.equal(hidden(model, inputs), base)
    h.load(tmp_path / "c", name="c2")
    assert_close(hidden(model, inputs), out, terms=model_terms(model))  # the same values, in new memory


def _coda_prefill():
    """A Llama with CoDA on layer 1 (layer 0 left out) and the cache its prefill returned."""
    from transformers import AutoModelForCausalLM

    model = tiny_model("llama", cls=AutoModelForCausalLM)
    wrap(model).add("c", "coda", k=0.5, leave_out=[0])
    ids = torch.randint(3, 99, (1, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cache = output_cache(model(input_ids=ids, use_cache=True))  # the prefill itself works
    return model, ids, cache


def test_prefill_writes_nothing_to_the_cache_for_coda_layers():
    """transformers 5.24 passes the cache as ``cache=``: the routed sub-forward must not write into it."""
    _, _, cache = _coda_prefill()
    assert cached_length(cache, 0) == 6  # the left-out layer is a plain layer
    assert cached_length(cache, 1) == 0  # the CoDA layer ran on its routed tokens without the cache


@pytest.mark.parametrize("name", ["model's own keyword", *CACHE_KEYWORDS])
def test_continuing_a_cache_is_refused_under_every_keyword(name):
    model, ids, cache = _coda_prefill()
    keyword = cache_keyword(model) if name == "model's own keyword" else name
    layer = model.model.layers[1]
    with torch.no_grad(), pytest.raises(AdapterStateError, match="KV cache"):
        if keyword == cache_keyword(model):  # the model passes it on to every layer under its own name
            model(input_ids=ids[:, -1:], use_cache=True, **{keyword: cache})
        else:  # a name this version does not use: straight to the layer, as another caller would
            layer(torch.zeros(1, 1, 32), **{keyword: cache})


@pytest.mark.parametrize("how", ["positional", "unknown keyword"])
def test_a_cache_object_is_refused_wherever_it_sits(how):
    model, _, cache = _coda_prefill()
    layer = model.model.layers[1]
    x = torch.zeros(1, 1, 32)
    with torch.no_grad(), pytest.raises(AdapterStateError, match="KV cache"):
        if how == "positional":  # (hidden_states, attention_mask, position_ids, <cache>) in 4.57 and 5.x
            layer(x, None, None, cache)
        else:  # a future rename: recognised by type
            layer(x, kv_cache_of_the_future=cache)


def test_a_cache_filled_without_coda_is_refused():
    from transformers import AutoModelForCausalLM

    model = tiny_model("llama", cls=AutoModelForCausalLM)
    ids = torch.randint(3, 99, (1, 6))
    with torch.no_grad():
        cache = output_cache(model(input_ids=ids, use_cache=True))
    wrap(model).add("c", "coda", k=0.5)
    with torch.no_grad(), pytest.raises(AdapterStateError, match="use_cache=False"):
        model(input_ids=ids[:, -1:], use_cache=True, **{cache_keyword(model): cache})
    with torch.no_grad():  # what the hint says works
        model(input_ids=ids, use_cache=False)


def test_refusals():
    with pytest.raises(UnsupportedArchitectureError, match="bert, roberta, xlm-roberta, electra, camembert, llama, mistral, qwen2"):
        wrap(tiny_model("gpt2")).add("c", "coda")
    with pytest.raises(UnsupportedArchitectureError, match="is_decoder"):
        wrap(tiny_model("bert", is_decoder=True)).add("c", "coda")
    flash = tiny_model("bert")
    flash.config._attn_implementation = "flash_attention_2"  # the name is all CoDA checks (no kernel needed)
    with pytest.raises(UnsupportedArchitectureError, match="flash_attention_2"):
        wrap(flash).add("c", "coda")
    model = _model("llama")
    h = wrap(model)
    with pytest.raises(SchemaError):
        h.add("c", "coda", k=2.5)
    with pytest.raises(SchemaError):
        h.add("c", "coda", leave_out=[0, 1])
    h.add("c", "coda", k=0.5, leave_out=[0])
    h.add("d", "coda", activate=False)
    with pytest.raises(CompositionError):
        h.activate("c", "d")
    assert h.active == ("c",)


def test_coda_takes_its_family_facts_from_the_table(monkeypatch):
    """Support, the decoder-config refusal and causality are ``Family`` fields: renaming every table entry
    changes nothing (code testing a family's name would refuse or mask differently)."""
    def run() -> torch.Tensor:
        model = _model("llama", attn_implementation="sdpa")
        h = wrap(model)
        h.add("c", "coda", k=0.5)
        _perturb(h, "c")
        return hidden(model, batch)

    batch = _inputs("llama", [9, 5, 7])
    want = run()
    renamed = tuple(dataclasses.replace(f, name=f"{f.name}-renamed") for f in arch_table.FAMILIES)
    monkeypatch.setattr(arch_table, "FAMILIES", renamed)
    assert_close(run(), want, terms=model_terms(_model("llama")), mask=batch["attention_mask"].bool())
    with pytest.raises(UnsupportedArchitectureError, match="gpt2-renamed"):
        wrap(tiny_model("gpt2")).add("c", "coda")
    with pytest.raises(UnsupportedArchitectureError, match="is_decoder"):
        wrap(tiny_model("bert", is_decoder=True)).add("c", "coda")
