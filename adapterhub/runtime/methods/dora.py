"""DoRA (Liu et al. 2024) exactly as PEFT computes it (``peft/tuners/lora/dora.py``).

With ``V = W + s B A`` and ``n = ||V||`` per output row (detached, DoRA section 4.3), the output is
``y + (m/n - 1) * (y - b) + (m/n) * s * B A x``: the base output rescaled per row by ``m / n``
plus the LoRA update, the bias left as it was. Merged: ``W := (m/n) V``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch.nn import functional as F

from ..folds import Fold
from ..sites import SiteKey
from ..tensors import TensorTree
from .lora import Lora
from .projection import Target, bias_rows, module_folds, set_weight_rows, weight_rows


class Dora(Lora):
    name: ClassVar[str] = "dora"

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
