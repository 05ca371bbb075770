"""LoHa's layer math: ``y = W x + b + s ((W1a W1b) ⊙ (W2a W2b)) x`` with ``s = alpha / r``, as PEFT computes it.

Each targeted projection carries two rank-``r`` pairs ``W1a, W2a: [out, r]`` and ``W1b, W2b: [r, in]``
(PEFT's ``hada_w*`` names and shapes). The Hadamard product of two rank-``r`` matrices has rank up to
``r^2``, and it factors exactly (Khatri-Rao): ``(W1a W1b) ⊙ (W2a W2b) = (W1a ⊙r W2a)(W1b ⊙c W2b)``
with ``r^2`` columns and rows of element-wise products. Unmerged, a projection runs through those
rank-``r^2`` factors when that is cheaper than the dense ``[out, in]`` delta (``r^2 (in + out) <
in * out``, usually so), and through the dense delta otherwise; both are the same sum of products.

Training-only, as PEFT: ``rank_dropout`` drops output rows of the delta (the kept rows rescaled by
their mean), ``module_dropout`` skips the whole update with that probability per forward. Merged
(``W += s (W1a W1b) ⊙ (W2a W2b)``) it is an additive fold exactly like LoRA's, so merge order,
Merge and unmerge behave as for LoRA. Averaging LoHa adapters is refused (see :data:`AVERAGE_REFUSAL`).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch.nn import functional as F

from ...tensors import TensorTree
from ..lora import Lora
from ..projection import Target
from .peft import FACTORS, LohaPeft

AVERAGE_REFUSAL = (
    "LoHa adapters cannot be averaged: their update (W1a W1b) ⊙ (W2a W2b) is a product of the factors, "
    "so averaging factors is not averaging updates (cross terms appear), and an exact average of k "
    "rank-r LoHa updates is only representable at rank sum(r_i^2)",
    "merge them into the base one after another (ah.merge / Merge), or average LoRA adapters instead",
)
"""(message, hint) of the typed error Average/WeightedSum raise for LoHa ingredients."""


class Loha(Lora):
    """LoRA's projection plumbing (targets, fused slices, folds, additive merge) with LoHa's update."""

    name: ClassVar[str] = "loha"
    peft: ClassVar[LohaPeft] = LohaPeft()

    @property
    def scaling(self) -> float:
        return self.config["alpha"] / self.config["r"]

    def target_shapes(self, t: Target) -> dict[str, tuple[int, ...]]:
        r = int(self.config["r"])
        return {f"{t.prefix}.hada_w1_a": (t.fout, r), f"{t.prefix}.hada_w1_b": (r, t.fin),
                f"{t.prefix}.hada_w2_a": (t.fout, r), f"{t.prefix}.hada_w2_b": (r, t.fin)}

    def init(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """PEFT's init: ``kaiming_uniform_(a=sqrt(5))`` (bound ``1/sqrt(fan_in)``) on every factor, ``W2b = 0``
        so the update starts at zero (``init_weights=False``: ``W2b`` random too, a non-zero start)."""
        zero_w2b = bool(self.config.get("init_weights", True))
        out: dict[str, torch.Tensor] = {}
        for name, shape in self.shapes().items():
            t = torch.zeros(shape)
            if not (zero_w2b and name.endswith("hada_w2_b")):
                bound = 1.0 / math.sqrt(shape[1])
                t.uniform_(-bound, bound, generator=generator)
            out[name] = t
        return out

    # --- forward ----------------------------------------------------------------------------------
    def contribution(self, tree: TensorTree, t: Target, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """``s ((W1a W1b) ⊙ (W2a W2b)) x`` for the rows ``xs`` (2-D), with PEFT's dropouts in training."""
        w1a, w1b, w2a, w2b = (tree.get(f"{t.prefix}.{leaf}") for leaf in FACTORS)
        training = tree.training
        p_module = float(self.config.get("module_dropout") or 0.0)
        if training and p_module and torch.rand(1).item() <= p_module:
            return ys.new_zeros(ys.shape)
        r = w1a.shape[1]
        if r * r * (t.fin + t.fout) < t.fin * t.fout:  # Khatri-Rao factors of rank r^2
            left = (w1a.unsqueeze(2) * w2a.unsqueeze(1)).reshape(t.fout, r * r)
            right = (w1b.unsqueeze(1) * w2b.unsqueeze(0)).reshape(r * r, t.fin)
            out = F.linear(F.linear(xs.to(right.dtype), right), left) * self.scaling
        else:
            out = F.linear(xs.to(w1a.dtype), delta(w1a, w1b, w2a, w2b, self.scaling))
        p_rank = float(self.config.get("rank_dropout") or 0.0)
        if training and p_rank:
            keep = (torch.rand(t.fout, device=out.device) > p_rank).to(out.dtype)
            mean = keep.mean()
            out = out * torch.where(mean > 0, keep / mean.clamp_min(torch.finfo(out.dtype).tiny), keep)
        return out.to(ys.dtype)

    def delta_weight(self, tree: TensorTree, t: Target) -> torch.Tensor:
        return delta(*(tree.get(f"{t.prefix}.{leaf}") for leaf in FACTORS), self.scaling)


def delta(w1a: torch.Tensor, w1b: torch.Tensor, w2a: torch.Tensor, w2b: torch.Tensor, scaling: float) -> torch.Tensor:
    """The dense update ``s (W1a W1b) ⊙ (W2a W2b)``, ``[out, in]``."""
    return (w1a @ w1b) * (w2a @ w2b) * scaling
