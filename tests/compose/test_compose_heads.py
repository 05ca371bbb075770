"""Members that bring their own prediction heads keep them inside Parallel, Ensemble and Route.

Two adapters are packaged with different classifier heads (as two published task adapters would be),
loaded into one model (the second one's head is the model's head), and each block's rows are checked
against the adapter run alone on a fresh model with only its own package loaded.
"""

from __future__ import annotations

import torch
from support.runtime_helpers import inputs_for, tiny_config
from support.tolerances import assert_close, model_terms
from transformers import AutoModelForSequenceClassification

from adapterhub.compose import Ensemble, Parallel, Route, Stack
from adapterhub.runtime import AdapterModel

TERMS = model_terms(tiny_config("bert"))  # a composed forward vs the adapter alone on another model instance


def _model() -> AutoModelForSequenceClassification:
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(tiny_config("bert", num_labels=3)).eval()


def _packages():
    """``a`` (LoRA) and ``b`` (bottleneck), each packaged with its own random classifier head."""
    h = AdapterModel(_model())
    pkgs = {}
    for i, (name, method, cfg) in enumerate([("a", "lora", {"r": 4, "alpha": 4, "target_modules": ["q", "v"]}),
                                             ("b", "bottleneck", {"variant": "pfeiffer"})]):
        h.add(name, method, activate=False, **cfg)
        g = torch.Generator().manual_seed(10 + i)
        with torch.no_grad():
            for p in h.container[name].parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
            for p in h.model.classifier.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        pkgs[name] = h.package(name)
    assert not torch.equal(pkgs["a"].head["classifier.weight"], pkgs["b"].head["classifier.weight"])
    return pkgs


def _alone(pkg, name, inputs) -> torch.Tensor:
    h = AdapterModel(_model())
    h.load_package(pkg, name=name)
    with torch.no_grad():
        return h.model(**inputs).logits


def _both(pkgs) -> AdapterModel:
    h = AdapterModel(_model())
    h.load_package(pkgs["a"], name="a", activate=False)
    h.load_package(pkgs["b"], name="b", activate=False)  # nothing runs yet: the model keeps its own head
    return h


def _run(block, batch: int):
    """``block`` over a and b loaded together, and each adapter's logits alone (the references)."""
    pkgs = _packages()
    inputs = inputs_for("bert", batch=batch)
    ref = {n: _alone(pkgs[n], n, inputs) for n in ("a", "b")}
    h = _both(pkgs)
    h.activate(block)
    with torch.no_grad():
        got = h.model(**inputs).logits
    return got, ref, pkgs, h


def test_parallel_rows_use_each_members_own_head():
    own = _model().classifier.weight.detach().clone()  # the same seed: the model's own head
    got, ref, pkgs, h = _run(Parallel("a", "b"), batch=3)
    assert_close(got[:3], ref["a"], terms=TERMS)
    assert_close(got[3:], ref["b"], terms=TERMS)
    h.deactivate()  # the hooks go with the composition; the model's own head is untouched (same bytes)
    assert torch.equal(h.model.classifier.weight, own)


def test_ensemble_averages_members_scored_by_their_own_heads():
    got, ref, _, _ = _run(Ensemble("a", "b"), batch=3)
    want = (ref["a"].softmax(-1) + ref["b"].softmax(-1)) / 2
    assert_close(got.softmax(-1), want, terms=TERMS)


def test_route_rows_use_their_adapters_head():
    got, ref, _, _ = _run(Route(["a", "b", "a", "b"]), batch=4)
    for i, n in enumerate(["a", "b", "a", "b"]):
        assert_close(got[i], ref[n][i], terms=TERMS, what=f"row {i} ({n}): ")


def test_a_member_without_a_head_keeps_the_models_head():
    pkgs = _packages()
    inputs = inputs_for("bert", batch=2)
    h = _both(pkgs)
    h.add("c", "ia3", activate=False)  # no head of its own
    h.activate("c")
    with torch.no_grad():
        c_alone = h.model(**inputs).logits  # c with the model's current head (its own)
    h.activate(Parallel("a", "c"))
    with torch.no_grad():
        got = h.model(**inputs).logits
    assert_close(got[:2], _alone(pkgs["a"], "a", inputs), terms=TERMS)
    assert_close(got[2:], c_alone, terms=TERMS)


def test_an_adapter_stacked_after_the_split_brings_the_head_for_all_rows():
    pkgs = _packages()
    inputs = inputs_for("bert", batch=2)
    h = _both(pkgs)
    h.activate(Stack(Parallel("a", "a"), "b"))  # b (and its head, the model's) applies to both branches
    with torch.no_grad():
        got = h.model(**inputs).logits
    h.activate(Stack("a", "b"))
    with torch.no_grad():
        want = h.model(**inputs).logits
    assert_close(got[:2], want, terms=TERMS)
    assert_close(got[2:], want, terms=TERMS)


# --- one head module, several task adapters: the head follows the active adapter ---------------------
def test_activating_an_adapter_scores_with_its_own_head():
    pkgs = _packages()
    inputs = inputs_for("bert", batch=2)
    h = _both(pkgs)
    for n in ("a", "b", "a"):
        h.activate(n)
        with torch.no_grad():
            got = h.model(**inputs).logits
        assert_close(got, _alone(pkgs[n], n, inputs), terms=TERMS, what=f"{n}: ")


def test_a_trained_head_survives_switching_and_is_what_package_saves():
    pkgs = _packages()
    h = _both(pkgs)
    h.activate("a")
    with torch.no_grad():
        h.model.classifier.weight.add_(1.0)  # stands in for training a's head
    trained = h.model.classifier.weight.detach().clone()
    h.activate("b")  # heads are copied in and out, never computed: bit-equality below
    assert torch.equal(h.model.classifier.weight, pkgs["b"].head["classifier.weight"].float())
    assert torch.equal(h.package("a").head["classifier.weight"], trained)  # a's head while b's is in the model
    h.activate("a")
    assert torch.equal(h.model.classifier.weight, trained)
    assert torch.equal(h.package("a").head["classifier.weight"], trained)


def test_removing_an_adapter_leaves_the_other_adapters_head_and_the_last_restores_the_base():
    pkgs = _packages()
    base_head = _model().classifier.weight.detach().clone()
    h = _both(pkgs)
    h.activate("b")
    h.remove("a")  # before: a's removal restored the head a replaced, discarding b's
    assert torch.equal(h.model.classifier.weight, pkgs["b"].head["classifier.weight"].float())
    h.remove("b")
    assert torch.equal(h.model.classifier.weight, base_head)
