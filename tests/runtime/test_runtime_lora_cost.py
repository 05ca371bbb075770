"""What an unmerged LoRA projection costs per call at inference, counted (never timed).

A decode step calls each LoRA hook once per projection, so per-call Python work is what separates our
generation speed from PEFT's (``benchmarks/bench_families.py``). These counts pin the two causes found there:
the factors were read twice per call (once only to decide whether an in-place update is allowed, which matters
only while autograd records), and each slot of a fused QKV projection (GPT-2's ``c_attn``) cost two GEMMs, a
scale and a slice-add instead of one ``addmm``.
"""

from __future__ import annotations

import pytest
import torch
from support.runtime_helpers import tiny_model
from torch.overrides import TorchFunctionMode

from adapterhub.runtime import wrap
from adapterhub.runtime.tensors import TensorTree


class _Calls(TorchFunctionMode):
    """Counts torch functions and tensor methods called inside the mode."""

    def __init__(self) -> None:
        super().__init__()
        self.n = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def _site_calls(monkeypatch, model_type: str, targets: list[str]):
    """Per projection module: (slots on it, TensorTree.get calls, torch calls) of one inference call of its hook."""
    model = tiny_model(model_type)
    handle = wrap(model)
    handle.add("l", "lora", r=4, alpha=8, target_modules=targets, init_weights="bert")
    entry = handle.entry("l")
    reads = {"n": 0}
    get = TensorTree.get

    def counted(self, name):
        reads["n"] += 1
        return get(self, name)

    monkeypatch.setattr(TensorTree, "get", counted)
    out = {}
    for key, fn in entry.method.site_fns(entry.tree).items():
        module = key[1]
        slots = [t for t in entry.method.targets if t.module is module]
        fin, fout = slots[0].fin, slots[0].fout * slots[0].slot.parts
        x, y = torch.randn(1, 1, fin), torch.randn(1, 1, fout)
        want = y.clone()
        for t in slots:
            a, b = entry.tree.get(f"{t.prefix}.lora_A"), entry.tree.get(f"{t.prefix}.lora_B")
            want[..., t.rows] += (x @ a.t() @ b.t()) * entry.method.scaling
        reads["n"] = 0
        with torch.inference_mode(), _Calls() as calls:
            got = fn(y, x, True)
        out[module] = (len(slots), reads["n"], calls.n)
        torch.testing.assert_close(got, want)  # the counted call computed the LoRA update
    return out


@pytest.mark.parametrize("model_type,targets", [("gpt2", ["q", "k", "v", "ffn_in"]), ("llama", ["q", "v"])])
def test_each_factor_is_read_once_per_inference_call(monkeypatch, model_type, targets):
    for slots, reads, _ in _site_calls(monkeypatch, model_type, targets).values():
        assert reads == 2 * slots  # A and B of each slot; no second read for the in-place check


def test_a_fused_projection_costs_no_more_per_slot_than_a_plain_one(monkeypatch):
    """GPT-2's c_attn with q, k and v: at most three times the torch calls of c_fc with one slot."""
    sites = _site_calls(monkeypatch, "gpt2", ["q", "k", "v", "ffn_in"]).values()
    fused = max(sites, key=lambda s: s[0])
    plain = min(sites, key=lambda s: s[0])
    assert (fused[0], plain[0]) == (3, 1)
    assert fused[2] <= 3 * plain[2]
