"""DoRA (Liu et al. 2024) exactly as PEFT computes it (``peft/tuners/lora/dora.py``).

With ``V = W + s B A`` and ``n = ||V||`` per output row (detached, DoRA section 4.3), the output is
``y + (m/n - 1) * (y - b) + (m/n) * s * B A x``: the base output rescaled per row by ``m / n``
plus the LoRA update, the bias left as it was. Merged: ``W := (m/n) V``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
from torch.nn import functional as F

from ...errors import CompositionError, WeightMismatchError
from ..arch import Binding
from ..folds import Fold
from ..sites import SiteKey
from ..tensors import TensorTree
from .algebra import truncate
from .base import Combined
from .lora import Lora, LoraConfig, combined_lora, concat_factors, same_slots
from .projection import Target, bias_rows, module_folds, set_weight_rows, weight_rows

if TYPE_CHECKING:
    from ..package import AdapterPackage


class Dora(Lora):
    name: ClassVar[str] = "dora"
    combine_reads_base: ClassVar[str | None] = "DoRA's merged weight W' = m/||W + sBA|| (W + sBA) depends on W"
    peft_tensor_names: ClassVar[frozenset[str]] = frozenset({"lora_A", "lora_B", "magnitude"})
    adapters_architecture: ClassVar[str | None] = None  # the library's DoRA differs from PEFT's: refused by Lora

    def target_shapes(self, t: Target) -> dict[str, tuple[int, ...]]:
        return {**super().target_shapes(t), f"{t.prefix}.magnitude": (t.fout,)}

    def init(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        out = super().init(generator)
        for t in self.targets:
            w = weight_rows(self.binding, t).detach().float()
            delta = (out[f"{t.prefix}.lora_B"] @ out[f"{t.prefix}.lora_A"]) * self.scaling
            out[f"{t.prefix}.magnitude"] = torch.linalg.norm(w + delta, dim=1)
        return out

    def weight_norm(self, tree: TensorTree, t: Target) -> torch.Tensor:
        w = weight_rows(self.binding, t)
        lora_w = (tree.get(f"{t.prefix}.lora_B") @ tree.get(f"{t.prefix}.lora_A")).detach()
        return torch.linalg.norm(w + self.scaling * lora_w, dim=1).to(w.dtype).detach()

    def contribution(self, tree: TensorTree, t: Target, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        a, b = tree.get(f"{t.prefix}.lora_A"), tree.get(f"{t.prefix}.lora_B")
        scale = (tree.get(f"{t.prefix}.magnitude") / self.weight_norm(tree, t)).view(1, -1)
        bias = bias_rows(t)
        base = ys if bias is None else ys - bias
        return (scale - 1) * base + scale * F.linear(F.linear(xs, a), b) * self.scaling

    def folds(self) -> dict[SiteKey, Fold]:
        """Row rescaling by ``m / ||W + s B A||``: commutes with nothing and reads the weight it acts on."""
        return module_folds(self.targets, "other", reads_weight=True)

    def merge(self, tree: TensorTree) -> None:
        self._norms = {}
        with torch.no_grad():
            for t in self.targets:
                norm = self.weight_norm(tree, t)
                self._norms[t.prefix] = norm
                v = weight_rows(self.binding, t) + self.delta_weight(tree, t)
                set_weight_rows(self.binding, t, (tree.get(f"{t.prefix}.magnitude") / norm).view(-1, 1) * v)

    def unmerge(self, tree: TensorTree) -> None:
        with torch.no_grad():
            for t in self.targets:
                factor = (tree.get(f"{t.prefix}.magnitude") / self._norms[t.prefix]).view(-1, 1)
                w = weight_rows(self.binding, t) / factor - self.delta_weight(tree, t)
                set_weight_rows(self.binding, t, w)

    # --- averaging ----------------------------------------------------------------------------------
    @classmethod
    def combine(cls, pkgs: Sequence[AdapterPackage], coeffs: list[float], *, rank: int | None,
                binding: Binding | None) -> Combined:
        """Per projection ``W_new = G (W + Delta)`` with ``G = (1 - sum c) + sum c_i g_i`` (per row), exactly.

        ``sum_i c_i g_i (W + s_i B_i A_i) + (1 - sum c) W = G W + sum_i c_i g_i s_i B_i A_i``, so
        ``Delta = sum_i (c_i g_i / G) s_i B_i A_i`` (concatenated rank) and the magnitude is ``m = G ||W + Delta||``.
        """
        if binding is None:
            raise CompositionError("averaging DoRA adapters needs the base model (model=AdapterModel)",
                                   hint=cls.combine_reads_base)
        first = LoraConfig.from_stated(pkgs[0].config).effective()
        impl = cls(first, binding)
        weights = {t.prefix: weight_rows(binding, t).detach().to(torch.float64) for t in impl.targets}
        prefixes = same_slots(pkgs)
        if sorted(weights) != prefixes:
            raise WeightMismatchError("the DoRA tensors do not match the model's projections for this config")
        tensors: dict[str, torch.Tensor] = {}
        errors: dict[str, float] = {}
        tail_sum = total_sum = 0.0
        offset = 1.0 - math.fsum(coeffs)
        r_cat = sum(int(p.config["r"]) for p in pkgs)
        for prefix in prefixes:
            w = weights[prefix]
            gs = []
            for p in pkgs:
                delta = (p.tensors[f"{prefix}.lora_B"].to(torch.float64) @ p.tensors[f"{prefix}.lora_A"].to(torch.float64))
                norm = torch.linalg.norm(w + LoraConfig.from_stated(p.config).scaling * delta, dim=1)
                gs.append(p.tensors[f"{prefix}.magnitude"].to(torch.float64) / norm)
            g = offset + sum(c * gi for c, gi in zip(coeffs, gs, strict=True))
            if bool((g.abs() < 1e-12).any()):
                raise CompositionError(f"{prefix}: the combined DoRA row scale is 0 for some output rows, so the "
                                       "result is not representable as a DoRA adapter", hint="use other coefficients")
            b, a = concat_factors(pkgs, coeffs, prefix, [gi / g for gi in gs])
            if rank:
                # minimise the merged-weight error ||G (Delta - Delta_k)||: truncate G B A, then undo G
                change = g.view(-1, 1) * (w + b @ a) - w  # W_new - W, exactly
                b_scaled, a, tail, _ = truncate(b * g.view(-1, 1), a, rank)
                b = b_scaled / g.view(-1, 1)
                total = float((change ** 2).sum())
                errors[prefix] = math.sqrt(tail / total) if total > 0 else 0.0
                tail_sum += tail
                total_sum += total
            tensors[f"{prefix}.lora_A"], tensors[f"{prefix}.lora_B"] = a, b
            tensors[f"{prefix}.magnitude"] = g * torch.linalg.norm(w + b @ a, dim=1)
        overall = math.sqrt(tail_sum / total_sum) if total_sum > 0 else 0.0
        return combined_lora(pkgs, tensors, rank or r_cat, rank, errors, overall)
