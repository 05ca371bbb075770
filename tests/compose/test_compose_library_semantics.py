"""Where adapterhub's Stack and Parallel differ from the ``adapters`` library's (docs/compose.md).

``adapters`` 1.3.0 is inconsistent with itself for some blocks: a Stack ending in a parallel bottleneck
is that adapter alone, and ``Parallel`` pre-processes every branch with its first adapter. These tests pin
both sides of what the docs say, so the page cannot drift: our definition (each member maps the sublayer
output ``h`` to ``h'``, a parallel member ``h' = h + f(x)``; a branch of ``Parallel`` is its member alone)
and the library's numbers, reproduced exactly with our adapters. Skipped where ``adapters`` is not
installed (it pins transformers 4.57).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from support.runtime_helpers import hidden, inputs_for, tiny_model

from adapterhub.compose import Parallel, Stack
from adapterhub.runtime import AdapterModel, wrap

adapters = pytest.importorskip("adapters", reason="the adapters library is not installed in this environment")
from adapters.composition import Parallel as LibParallel  # noqa: E402
from adapters.composition import Stack as LibStack  # noqa: E402

ATOL = 1e-5
DIFFERENT = 1e-3
# a, c: Pfeiffer (seq_bn: LayerNorm(h + x) before the adapter); b, d: parallel (par_bn); ho: Houlsby
# (double_seq_bn); e: seq_bn without LayerNorm(h + x)
CONFIGS = {"a": "seq_bn", "b": "par_bn", "c": "seq_bn", "d": "par_bn", "ho": "double_seq_bn"}


def _pair(tmp_path, *, zero_ffn_output: bool = False) -> tuple[object, AdapterModel, dict]:
    """The library's model and ours on one tiny BERT, with the same random adapters a..e."""
    base = tiny_model("bert")
    if zero_ffn_output:  # the FFN sublayer output h is 0 at every FFN site
        with torch.no_grad():
            for layer in base.encoder.layer:
                layer.output.dense.weight.zero_()
                layer.output.dense.bias.zero_()
    lib = adapters.AutoAdapterModel.from_config(base.config)
    lib.base_model.load_state_dict(base.state_dict(), strict=False)
    lib.eval()
    configs = {**CONFIGS, "e": adapters.SeqBnConfig(original_ln_before=False)}
    g = torch.Generator().manual_seed(0)
    for name, config in configs.items():
        lib.add_adapter(name, config=config)
    with torch.no_grad():
        for key, p in lib.named_parameters():
            if any(f".{n}." in key for n in configs):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    ours = wrap(base)
    for name in configs:
        lib.save_adapter(str(tmp_path / name), name, use_safetensors=True)
        ours.load(tmp_path / name, name=name, activate=False)
    return lib, ours, inputs_for("bert")


def _lib(lib, setup, inputs) -> torch.Tensor:
    lib.set_active_adapters(setup)
    with torch.no_grad():
        return lib.base_model(**inputs).last_hidden_state


def _ours(h: AdapterModel, block, inputs) -> torch.Tensor:
    h.activate(block)
    return hidden(h.model, inputs)


def _diff(x: torch.Tensor, y: torch.Tensor, inputs) -> float:
    mask = inputs["attention_mask"].bool().repeat(x.shape[0] // inputs["attention_mask"].shape[0], 1)
    return (x - y).abs()[mask].max().item()


def _ffn_site_output(h: AdapterModel, inputs, *blocks) -> torch.Tensor:
    """``h'`` at layer 0's FFN site (before the model's residual add and LayerNorm)."""
    seen = {}
    site = h.binding.layers[0].sites["ffn"]
    h.activate(*blocks)  # our hook on that module runs first; this one sees its result
    handle = h.binding.layers[0].sub(site.output).register_forward_hook(lambda m, a, out: seen.update(out=out))
    try:
        hidden(h.model, inputs)
    finally:
        handle.remove()
    return seen["out"]


def test_stack_with_a_parallel_member(tmp_path):
    lib, h, inputs = _pair(tmp_path)
    # ours: a parallel member adds f(x) to what the members before it produced, like any member maps h -> h'
    plain, after_a, after_b = (_ffn_site_output(h, inputs, *blk) for blk in ((), ("a",), ("b",)))
    both = _ffn_site_output(h, inputs, Stack("a", "b"))
    assert (both - (after_a + (after_b - plain))).abs().max().item() <= ATOL
    ours_ab = _ours(h, Stack("a", "b"), inputs)
    # the library: a Stack that ends in a parallel adapter is that adapter alone (a's work is dropped)
    b_alone = _ours(h, "b", inputs)
    assert _diff(_lib(lib, LibStack("a", "b"), inputs), b_alone, inputs) <= ATOL
    assert _diff(ours_ab, b_alone, inputs) > DIFFERENT
    assert _diff(_lib(lib, LibStack("b", "d"), inputs), _ours(h, "d", inputs), inputs) <= ATOL
    assert _diff(_lib(lib, LibStack("a", "c"), inputs), _ours(h, Stack("a", "c"), inputs), inputs) <= ATOL
    # members after a parallel one start from f_b(x) in place of h + f_b(x): the sublayer output is lost
    assert _diff(_lib(lib, LibStack("b", "a"), inputs), _ours(h, Stack("b", "a"), inputs), inputs) > DIFFERENT


def test_stack_after_a_parallel_member_differs_only_by_the_dropped_sublayer_output(tmp_path):
    lib, h, inputs = _pair(tmp_path, zero_ffn_output=True)
    assert _diff(_lib(lib, LibStack("b", "a"), inputs), _ours(h, Stack("b", "a"), inputs), inputs) <= ATOL


def test_parallel_branches(tmp_path):
    lib, h, inputs = _pair(tmp_path)
    batch = inputs["input_ids"].shape[0]
    got = _lib(lib, LibParallel(LibStack("a", "c"), "e"), inputs)
    ours = _ours(h, Parallel(Stack("a", "c"), "e"), inputs)
    # ours: branch k is its member alone
    assert _diff(ours[:batch], _ours(h, Stack("a", "c"), inputs), inputs) <= ATOL
    assert _diff(ours[batch:], _ours(h, "e", inputs), inputs) <= ATOL
    # the library pre-processes all branches with the first adapter (a: h -> LayerNorm(h + x)), then the
    # Stack branch applies a's own pre-processing again: exactly Stack(z, a, c) where z is an adapter that
    # contributes 0 and passes LayerNorm(h + x) on
    h.add("z", "bottleneck", variant="pfeiffer", residual_before_ln=False, activate=False)
    with torch.no_grad():
        for p in h.container["z"].parameters():
            p.zero_()
    assert _diff(got[:batch], _ours(h, Stack("z", "a", "c"), inputs), inputs) <= ATOL
    assert _diff(got[:batch], _ours(h, Stack("a", "c"), inputs), inputs) > DIFFERENT
    # ...and a single-adapter branch runs on a's pre-processed input instead of its own
    pkg = h.package("e")
    h.load_package(dataclasses.replace(pkg, config={**pkg.config, "original_ln_before": True}), name="e_pre",
                   activate=False)
    assert _diff(got[batch:], _ours(h, "e_pre", inputs), inputs) <= ATOL
    assert _diff(got[batch:], _ours(h, "e", inputs), inputs) > DIFFERENT
    # with identical members (the committed Parallel fixtures) both agree
    assert _diff(_lib(lib, LibParallel("a", "c"), inputs), _ours(h, Parallel("a", "c"), inputs), inputs) <= ATOL


@pytest.mark.parametrize("members,error", [(("Stack(a, c)", "b"), "size of tensor"), (("a", "ho"), "'a'")],
                         ids=["parallel-member-after-a-stack", "houlsby-after-pfeiffer"])
def test_library_fails_on_parallel_branches_that_ours_computes(tmp_path, members, error):
    """The library raises (RuntimeError / KeyError: the first adapter is absent at the attention site)."""
    lib, h, inputs = _pair(tmp_path)
    lib_members = [LibStack("a", "c") if m == "Stack(a, c)" else m for m in members]
    ours_members = [Stack("a", "c") if m == "Stack(a, c)" else m for m in members]
    with pytest.raises((RuntimeError, KeyError), match=error):
        _lib(lib, LibParallel(*lib_members), inputs)
    out = _ours(h, Parallel(*ours_members), inputs)
    batch = inputs["input_ids"].shape[0]
    for k, member in enumerate(ours_members):
        assert _diff(out[k * batch:(k + 1) * batch], _ours(h, member, inputs), inputs) <= ATOL
