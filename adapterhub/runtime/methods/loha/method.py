"""LoHa's layer math: ``y = W x + b + s ((W1a W1b) ⊙ (W2a W2b)) x`` with ``s = alpha / r``, as PEFT computes it.

Each targeted projection carries two rank-``r`` pairs ``W1a, W2a: [out, r]`` and ``W1b, W2b: [r, in]``
(PEFT's ``hada_w*`` names and shapes). The Hadamard product of two rank-``r`` matrices has rank up to
``r^2``, and it factors exactly (Khatri-Rao): ``(W1a W1b) ⊙ (W2a W2b) = (W1a ⊙r W2a)(W1b ⊙c W2b)``
with ``r^2`` columns and rows of element-wise products. Unmerged, a projection runs through those
rank-``r^2`` factors when that is cheaper than the dense ``[out, in]`` delta (``r^2 (in + out) <
in * out``, usually so), and through the dense delta otherwise; both are the same sum of products.

Training-only, as PEFT: ``rank_dropout`` drops output rows of the delta (the kept rows rescaled by
their mean), ``module_dropout`` skips the whole update with that probability per forward. Merged
(``W += s (W1a W1b) ⊙ (W2a W2b)``) it is an additive fold like LoRA's, so merge order, ``Merge``
and unmerge behave as for LoRA. Averaging LoHa adapters is refused (:meth:`Loha.combine` says why).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch.nn import functional as F

from ....errors import CompositionError
from ....manifest.peft_config import peft_scalars
from ...arch import Binding
from ...folds import Fold
from ...sites import SiteFn, SiteKey
from ...tensors import TensorTree
from ..base import Combined, Method, PeftPiece
from ..config import MethodConfig
from ..projection import AdditiveMerge, Target, by_module, module_folds, resolve_targets
from . import peft
from .config import TRAINING_ONLY, LohaConfig

if TYPE_CHECKING:
    from ...package import AdapterPackage


class Loha(AdditiveMerge, Method):
    name: ClassVar[str] = "loha"
    config_type: ClassVar[type[MethodConfig]] = LohaConfig
    weight_space: ClassVar[bool] = True
    training_only: ClassVar[frozenset[str]] = TRAINING_ONLY
    peft_type: ClassVar[str | None] = peft.PEFT_TYPE
    peft_leaves: ClassVar[tuple[str, ...]] = (*peft.FACTORS, *peft.CONV_LEAVES)

    def validate(self) -> None:
        self.targets = resolve_targets(self.binding, tuple(self.config["target_modules"]), self.config.get("leave_out"))
        self.scaling = LohaConfig.from_stated(self.config).scaling

    def shapes(self) -> dict[str, tuple[int, ...]]:
        r = int(self.config["r"])
        out: dict[str, tuple[int, ...]] = {}
        for t in self.targets:
            out.update({f"{t.prefix}.hada_w1_a": (t.fout, r), f"{t.prefix}.hada_w1_b": (r, t.fin),
                        f"{t.prefix}.hada_w2_a": (t.fout, r), f"{t.prefix}.hada_w2_b": (r, t.fin)})
        return out

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
    def site_fns(self, tree: TensorTree) -> dict[SiteKey, SiteFn]:
        return {("out", module): self._site_fn(tree, targets) for module, targets in by_module(self.targets).items()}

    def _site_fn(self, tree: TensorTree, targets: list[Target]) -> SiteFn:
        width, parts = targets[0].fout, targets[0].slot.parts

        def fn(y: torch.Tensor, x: torch.Tensor, inplace: bool) -> torch.Tensor:
            xs, ys = x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])
            if parts == 1:
                return (ys + self.contribution(tree, targets[0], xs).to(y.dtype)).view_as(y)
            pieces = {t.rows.start: self.contribution(tree, t, xs).to(y.dtype) for t in targets}
            full = [pieces.get(i, ys.new_zeros(ys.shape[0], width)) for i in range(0, ys.shape[1], width)]
            return (ys + torch.cat(full, dim=-1)).view_as(y)

        return fn

    def contribution(self, tree: TensorTree, t: Target, xs: torch.Tensor) -> torch.Tensor:
        """``s ((W1a W1b) ⊙ (W2a W2b)) x`` for the rows ``xs`` (2-D), with PEFT's dropouts in training."""
        w1a, w1b, w2a, w2b = (tree.get(f"{t.prefix}.{leaf}") for leaf in peft.FACTORS)
        training = tree.training
        p_module = float(self.config.get("module_dropout") or 0.0)
        if training and p_module and torch.rand(1).item() <= p_module:
            return xs.new_zeros(xs.shape[0], t.fout)
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
        return out

    # --- merging ----------------------------------------------------------------------------------
    def folds(self) -> dict[SiteKey, Fold]:
        return module_folds(self.targets, "add")

    def delta_weight(self, tree: TensorTree, t: Target) -> torch.Tensor:
        return delta(*(tree.get(f"{t.prefix}.{leaf}") for leaf in peft.FACTORS), self.scaling)

    @classmethod
    def combine(cls, pkgs: Sequence[AdapterPackage], coeffs: list[float], *, rank: int | None,
                binding: Binding | None) -> Combined:
        """Refused: LoHa factors do not average linearly, and the exact average is no LoHa of any useful rank."""
        raise CompositionError(
            "LoHa adapters cannot be averaged: each update is a Hadamard product (W1a W1b) ⊙ (W2a W2b), so "
            "averaging the factors is not averaging the updates (cross terms between ingredients appear), "
            "and the exact weighted sum of k rank-r LoHa updates needs rank sum(r_i^2) in any factored form",
            hint="merge them into the base one after another (ah.merge / Merge), or average LoRA adapters instead")

    # --- PEFT directories ---------------------------------------------------------------------------
    @classmethod
    def from_peft(cls, cfg: dict[str, Any], pieces: list[PeftPiece]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        tensors = {f"{p.prefix}.{p.leaf}": peft.tensor_from_peft(p.leaf, p.value, p.module_path, p.parts)
                   for p in pieces}
        targets = list(dict.fromkeys(p.target for p in pieces))
        return {**peft_scalars(cfg), "target_modules": targets}, tensors

    def to_peft(self, tree: TensorTree, modules: dict[str, list[Any]]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        out: dict[str, torch.Tensor] = {}
        for path, targets in modules.items():
            peft.check_exportable(self.binding, path, targets[0].slot.parts)
            out.update({f"{path}.{leaf}": tree.get(f"{targets[0].prefix}.{leaf}").detach() for leaf in peft.FACTORS})
        return out, peft.config_to_peft(self.config)


def delta(w1a: torch.Tensor, w1b: torch.Tensor, w2a: torch.Tensor, w2b: torch.Tensor, scaling: float) -> torch.Tensor:
    """The dense update ``s (W1a W1b) ⊙ (W2a W2b)``, ``[out, in]``."""
    return (w1a @ w1b) * (w2a @ w2b) * scaling
