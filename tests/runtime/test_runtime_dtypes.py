"""Half precision: adapters run, merge and load on bf16/fp16 models (CPU; this machine has no GPU).

The reference output is the same model and adapter in fp32; half precision is compared with a tolerance
that fits its mantissa. Adapters random-initialised to non-trivial values so the comparison can fail.
"""

from __future__ import annotations

import pytest
import torch
from support.runtime_helpers import hidden, inputs_for, tiny_model

from adapterhub.errors import IncompatibleBaseError
from adapterhub.runtime import wrap

METHODS = {
    "houlsby": ("bottleneck", {"variant": "houlsby"}),
    "compacter": ("compacter", {"variant": "compacter", "reduction_factor": 4}),
    "lora": ("lora", {"r": 4, "alpha": 8, "target_modules": ["q", "v", "ffn_out"]}),
    "dora": ("dora", {"r": 4, "alpha": 8, "target_modules": ["q", "v"]}),
    "ia3": ("ia3", {}),
    "prefix": ("prefix_tuning", {"prefix_length": 3, "flat": True}),
}
TOLERANCE = {torch.bfloat16: 6e-2, torch.float16: 8e-3}
MIN_COSINE = {torch.bfloat16: 0.8, torch.float16: 0.95}  # bf16 keeps 8 mantissa bits: small effects get noisy


def _perturb(ah, name: str, seed: int = 3) -> None:
    """Give every adapter tensor a visible effect (fresh LoRA B, bottleneck up-projections start at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in ah.container[name].parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.5)


def _adapted(arch: str, method: str):
    model = tiny_model(arch)
    ah = wrap(model)
    kind, config = METHODS[method]
    ah.add("a", kind, **config)
    _perturb(ah, "a")
    return model, ah


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("arch", ["bert", "llama"])
def test_adapter_runs_in_half_precision_like_fp32(arch, method, dtype):
    """The adapter's effect (adapted minus plain output) in half precision matches its fp32 effect."""
    model, ah = _adapted(arch, method)
    inputs = inputs_for(arch)
    mask = inputs["attention_mask"].bool()

    def effect() -> tuple[torch.Tensor, torch.Tensor]:
        adapted = hidden(model, inputs).float()
        ah.deactivate()
        plain = hidden(model, inputs).float()
        ah.activate("a")
        return adapted, (adapted - plain)[mask].flatten()

    ref, ref_effect = effect()
    model.to(dtype)  # adapter tensors live under the model, so they follow it
    assert {p.dtype for p in ah.container["a"].parameters()} == {dtype}
    got, got_effect = effect()
    assert torch.isfinite(got).all()
    assert (got - ref)[mask].abs().max() <= TOLERANCE[dtype] * max(1.0, ref.abs().max().item())
    cosine = torch.nn.functional.cosine_similarity(got_effect, ref_effect, dim=0).item()
    ratio = (got_effect.norm() / ref_effect.norm()).item()
    assert cosine >= MIN_COSINE[dtype] and 0.8 <= ratio <= 1.25, (cosine, ratio)  # fails if the adapter were dropped or wrong


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("method", ["lora", "dora", "ia3"])
def test_merge_in_half_precision(method, dtype):
    model, ah = _adapted("llama", method)
    model.to(dtype)
    inputs = inputs_for("llama")
    before = {k: v.clone() for k, v in model.state_dict().items() if "adapterhub" not in k}
    unmerged = hidden(model, inputs)
    ah.merge("a")
    merged = hidden(model, inputs)
    assert (merged.float() - unmerged.float()).abs().max() <= 2 * TOLERANCE[dtype] * max(1.0, unmerged.abs().max())
    ah.unmerge("a")
    after = {k: v for k, v in model.state_dict().items() if "adapterhub" not in k}
    steps = 4 if method == "dora" else 2  # DoRA divides by a column norm: a few more roundings
    for k, v in before.items():  # merge and unmerge round in half precision: a few steps of its epsilon
        assert (after[k].float() - v.float()).abs().max() <= steps * torch.finfo(dtype).eps * max(1.0, v.abs().max())


def test_fp32_adapter_onto_a_bf16_base_needs_force(tmp_path):
    """The fingerprint is dtype-sensitive by design (docs/runtime.md): bf16 weights are another base."""
    model, ah = _adapted("bert", "lora")
    ah.save("a", tmp_path / "a")
    path = tmp_path / "a"
    ref = hidden(model, inputs_for("bert"))
    half = tiny_model("bert").to(torch.bfloat16)
    target = wrap(half)
    with pytest.raises(IncompatibleBaseError, match="fingerprint"):
        target.load(path)
    assert target.adapters == ()
    name = target.load(path, force=True)
    assert {p.dtype for p in target.container[name].parameters()} == {torch.bfloat16}
    got = hidden(half, inputs_for("bert"))
    assert (got.float() - ref).abs().max() <= TOLERANCE[torch.bfloat16] * max(1.0, ref.abs().max())
