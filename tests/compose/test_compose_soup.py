"""Greedy soups (Wortsman et al. Recipe 1) and ``Merge`` of soups, on real tiny models."""

from __future__ import annotations

import copy

import pytest
import torch
from support.runtime_helpers import assert_same_state, hidden, inputs_for, state_snapshot, tiny_model
from support.tolerances import assert_close, model_terms

from adapterhub.compose.average import Average, save_soup, soup_record
from adapterhub.compose.merge import Merge
from adapterhub.compose.soup import GreedySoup, attached
from adapterhub.errors import AdapterStateError, CompositionError
from adapterhub.runtime import read_adapter_dir, wrap
from adapterhub.runtime.fingerprint import CONTAINER


def _ia3(ah, name: str, value: float):
    ah.add(name, "ia3", target_modules=["v"], feedforward_modules=[], activate=False)
    with torch.no_grad():
        for p in ah.container[name].parameters():
            p.fill_(value)
    return ah.package(name)


def _toy_metric(calls: list):
    """Held-out 'score': closeness of the IA3 vectors to 1 (higher is better)."""
    def metric(pkg) -> float:
        calls.append(pkg)
        return -sum(((t.double() - 1.0) ** 2).mean().item() for t in pkg.tensors.values()) / len(pkg.tensors)
    return metric


def test_greedy_soup_follows_recipe_1_on_a_toy_metric():
    ah = wrap(tiny_model("bert"))
    values = [1.2, 0.9, 1.15, 2.0]  # scores: -.04, -.01 (best), -.0225, -1
    pkgs = [_ia3(ah, f"i{k}", v) for k, v in enumerate(values)]
    calls: list = []
    res = GreedySoup(*pkgs, metric=_toy_metric(calls))
    assert calls[:4] == pkgs  # every ingredient scored first, as given
    assert res.ingredient_scores == pytest.approx([-0.04, -0.01, -0.0225, -1.0])
    # sorted: i1, i2, i0, i3. {i1, i2} -> 1.025 (better, kept); + i0 -> 1.0833 (worse); + i3 -> 1.35 (worse)
    assert res.chosen == [1, 2]
    assert [h["ingredient"] for h in res.history] == [2, 0, 3]
    assert [h["accepted"] for h in res.history] == [True, False, False]
    assert res.score == pytest.approx(-(0.025 ** 2), rel=1e-4)
    assert res.score >= max(res.ingredient_scores)
    for t in res.package.tensors.values():
        assert torch.allclose(t, torch.full_like(t, 1.025))
    rec = res.package.soup
    assert rec["kind"] == "greedy" and rec["greedy"]["rule"] == ">="
    assert [i["name"] for i in rec["ingredients"]] == ["i1", "i2"]


def test_greedy_rule_ties():
    ah = wrap(tiny_model("bert"))
    best = _ia3(ah, "best", 0.9)
    twin = copy.deepcopy(best)
    twin.name = "twin"
    assert GreedySoup(best, twin, metric=_toy_metric([])).chosen == [0, 1]  # paper: >= keeps a tie
    assert GreedySoup(best, twin, metric=_toy_metric([]), rule=">").chosen == [0]  # official code: >
    with pytest.raises(CompositionError, match="rule"):
        GreedySoup(best, twin, metric=_toy_metric([]), rule="max")


def test_greedy_soup_with_a_real_held_out_metric(tmp_path):
    """LoRA ingredients scored by the model's own output distance to a target; attached() leaves no trace."""
    model = tiny_model("bert")
    ah = wrap(model)
    inputs = inputs_for("bert")
    ah.add("target", "lora", r=4, alpha=8, init_weights="bert", seed=0)
    target = hidden(model, inputs)
    ah.remove("target")
    pkgs = []
    for k, noise in enumerate([0.5, 0.05, 3.0]):
        ah.add(f"i{k}", "lora", r=4, alpha=8, init_weights="bert", seed=0, activate=False)
        with torch.no_grad():
            for p in ah.container[f"i{k}"].parameters():
                p.add_(noise * torch.randn(p.shape, generator=torch.Generator().manual_seed(k)) * p.std())
        pkgs.append(ah.package(f"i{k}"))
    ah.activate("i0")
    before = state_snapshot(model)

    def metric(pkg) -> float:
        with attached(ah, pkg):
            return -(hidden(model, inputs) - target).pow(2).mean().item()

    res = GreedySoup(*pkgs, metric=metric, name="greedy")
    assert ah.active == ("i0",) and ah.adapters == ("i0", "i1", "i2")
    assert_same_state(model, before)
    assert res.chosen[0] == 1 and 2 not in res.chosen
    assert res.score >= max(res.ingredient_scores)
    save_soup(res.package, tmp_path / "g")
    assert soup_record(read_adapter_dir(tmp_path / "g"))["greedy"]["held_out_score"] == pytest.approx(res.score)


def test_attached_restores_an_active_composition_block():
    """attached() used to drop an active Mix/Ensemble (only plain names were re-activated)."""
    from adapterhub.compose import Ensemble, Mix

    model = tiny_model("bert")
    ah = wrap(model)
    inputs = inputs_for("bert")
    for k in range(2):
        ah.add(f"m{k}", "lora", r=2, alpha=4, init_weights="bert", seed=k + 1, activate=False)
    probe = ah.package("m0")
    for block in (Mix("m0", "m1", weights=[0.3, 0.7]), Ensemble("m0", "m1", mode="logits")):
        ah.activate(block)
        expected = hidden(model, inputs)
        with attached(ah, probe):
            assert ah.active == ("_soup_probe",)
        assert ah.active == (block,) and ah.composition == block
        assert torch.equal(hidden(model, inputs), expected)  # the block restored: the same computation
    ah.activate("m1", Mix("m0", "m1"))  # names and blocks side by side (a Stack)
    with attached(ah, probe):
        pass
    assert ah.active == ("m1", Mix("m0", "m1"))


# --- Merge ------------------------------------------------------------------------------------------
def _noisy_soup(ah, method: str, **cfg):
    for k in range(3):
        ah.add(f"{method}{k}", method, seed=k, activate=False, **cfg)
        g = torch.Generator().manual_seed(10 + k)
        with torch.no_grad():
            for key, p in ah.container[f"{method}{k}"].named_parameters():
                noise = 0.3 * torch.randn(p.shape, generator=g)
                if key.endswith("magnitude"):  # a trained magnitude stays near the row norm
                    p.mul_(1 + noise / 3)
                else:
                    p.copy_(p + noise if key.endswith("ia3_l") else noise)
    return Average(*[ah.package(f"{method}{k}") for k in range(3)], weights=[0.2, 0.3, 0.5], model=ah)


@pytest.mark.parametrize("arch", ["bert", "gpt2", "t5"])
@pytest.mark.parametrize("method,cfg", [
    ("lora", dict(r=4, alpha=8, target_modules=["q", "v", "ffn_out"])),
    ("dora", dict(r=2, alpha=4, target_modules=["q", "v"])),
    ("ia3", dict(target_modules=["k", "v", "ffn_out"], feedforward_modules=["ffn_out"])),
])
def test_merged_soup_equals_unmerged_soup_and_unmerge_restores_the_base(arch, method, cfg):
    model = tiny_model(arch)
    ah = wrap(model)
    inputs = inputs_for(arch)
    soup = _noisy_soup(ah, method, **cfg)
    base = {k: v.clone() for k, v in model.state_dict().items() if CONTAINER not in k}
    plain = hidden(model, inputs)
    ah.load_package(soup, name="soup")
    unmerged = hidden(model, inputs)
    assert (unmerged - plain).abs().max().item() > 1e-3  # the soup does something
    with Merge(ah, "soup"):
        assert_close(hidden(model, inputs), unmerged, terms=model_terms(model))
        merged = {k: v.clone() for k, v in model.state_dict().items() if CONTAINER not in k}
    now = {k: v for k, v in model.state_dict().items() if CONTAINER not in k}
    _assert_restored(now, base, merged)
    assert_close(hidden(model, inputs), unmerged, terms=model_terms(model))


def _assert_restored(now: dict, before: dict, merged: dict) -> None:
    """Unmerging subtracts (or divides out) the merged delta: each weight is back to fp32 rounding of the
    larger of the two magnitudes it passed through."""
    for k, v in before.items():
        scale = max(v.abs().max().item(), merged[k].abs().max().item()) if v.numel() else 0.0
        assert_close(now[k], v, terms=4, scale=scale, what=f"{k}: ")


@pytest.mark.parametrize("setup", ["soup loaded inactive", "another adapter activated after it"])
def test_merge_runs_the_merged_soup_with_its_head(setup):
    """``Merge(ah, "soup")`` is ``activate("soup")`` folded into the weights: the soup runs, scored by its
    own (averaged) head. Before, the soup went into the weights under whatever was active, with that
    adapter's head (logits off by 0.075 here)."""
    from transformers import AutoModelForSequenceClassification

    model = tiny_model("bert", cls=AutoModelForSequenceClassification, num_labels=2)
    ah = wrap(model)
    inputs = inputs_for("bert")
    g = torch.Generator().manual_seed(7)
    for k in range(3):  # ingredients with heads of their own
        ah.add(f"run{k}", "lora", r=2, alpha=4, seed=k, init_weights="bert")
        with torch.no_grad():
            for p in [*ah.container[f"run{k}"].parameters(), *model.classifier.parameters()]:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    soup = Average(*[ah.package(f"run{k}") for k in range(3)])
    if setup == "soup loaded inactive":
        ah.load_package(soup, name="soup", activate=False)
    else:
        ah.load_package(soup, name="soup")
        ah.activate("run0")
    with torch.no_grad():
        ah.activate("soup")
        want = model(**inputs).logits
        ah.activate("run0")
        with Merge(ah, "soup"):
            got = model(**inputs).logits
            active = ah.active
        after = model(**inputs).logits
    assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())
    assert active == ("soup",)
    assert (after - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())  # unmerged, still the soup


def test_merge_is_all_or_nothing():
    model = tiny_model("bert")
    ah = wrap(model)
    ah.add("lo", "lora", r=2, alpha=4, init_weights="bert", activate=False)
    ah.add("ia", "ia3", activate=False)
    ah.add("bn", "bottleneck", variant="pfeiffer", activate=False)
    before = state_snapshot(model)
    with pytest.raises(AdapterStateError, match="cannot be merged"):
        Merge(ah, "lo", "ia", "bn")  # checked before anything is merged
    assert_same_state(model, before)
    m = Merge(ah, "lo", "ia")
    merged = state_snapshot(model)
    with pytest.raises(AdapterStateError, match="already merged"):
        Merge(ah, "ia")
    m.unmerge()
    ah.activate()
    _assert_restored(model.state_dict(), before, merged)
    with pytest.raises(AdapterStateError):
        Merge(ah)
