"""BitDelta (Liu et al. 2024): a full fine-tune stored as one sign bit per weight plus one scale per matrix.

For every targeted projection ``W`` (``[out, in]``) the fine-tune's delta ``W_ft - W_base`` is kept
as ``alpha * Sign(delta)`` with ``Sign(0) = +1`` (the official code's convention) and
``alpha = mean|delta|`` (what minimises the Frobenius error). On disk and in memory each target has

* ``<prefix>.mask``: ``uint8`` ``[out, in / 8]``, packed LSB-first along the input dimension: bit ``j``
  of byte ``b`` in row ``o`` is 1 when ``delta[o, 8 b + j] >= 0`` (so ``in`` must be a multiple of 8);
* ``<prefix>.scale``: the scalar ``alpha`` (a 0-d tensor; fp32 when made by
  :func:`adapterhub.runtime.bitdelta.compress`, the model's dtype once attached, like every other
  adapter tensor).

Unmerged, a projection computes ``y + alpha * (x @ Sign^T)``; the signs are unpacked once per dtype and
device into a dense ``{-1, +1}`` matrix and cached (the cache costs one weight matrix per target; merge
the adapter to avoid it). Merged: ``W += alpha * Sign``. Only the scales can be trained (scale
distillation); the masks are integer tensors and never require gradients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.nn import functional as F

from ...errors import SchemaError, SchemaProblem, WeightMismatchError
from ..folds import Fold
from ..sites import SiteFn, SiteKey
from ..tensors import TensorTree
from .base import Method, in_place_ok
from .config import MethodConfig
from .projection import AdditiveMerge, Target, by_module, module_folds, resolve_targets

_BITS = torch.arange(8, dtype=torch.uint8)


def pack_signs(delta: torch.Tensor) -> torch.Tensor:
    """``uint8 [out, in/8]``: bit ``j`` of byte ``b`` in row ``o`` is ``delta[o, 8b + j] >= 0`` (LSB first)."""
    out, fin = delta.shape
    if fin % 8:
        raise WeightMismatchError(f"cannot pack a [{out}, {fin}] delta: in_features {fin} is not a multiple of 8",
                                  hint="BitDelta packs 8 input columns per byte; leave this projection out")
    bits = (delta >= 0).to(torch.uint8).view(out, fin // 8, 8)
    return (bits << _BITS.to(delta.device)).sum(dim=-1, dtype=torch.uint8)


def unpack_signs(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The ``{-1, +1}`` matrix ``[out, 8 * mask.shape[1]]`` of a packed mask, in ``dtype``."""
    if mask.dtype != torch.uint8 or mask.dim() != 2:
        raise WeightMismatchError(f"a BitDelta mask must be a 2-D uint8 tensor, got {mask.dtype} {tuple(mask.shape)}")
    bits = (mask.unsqueeze(-1) >> _BITS.to(mask.device)) & 1
    return (bits.reshape(mask.shape[0], -1).to(dtype) * 2 - 1)


@dataclass(frozen=True)
class BitDeltaConfig(MethodConfig):
    DEFAULTS: ClassVar[dict[str, Any]] = {"packing": "uint8-lsb-first", "scale_distilled": False, "leave_out": ()}
    target_modules: tuple[str, ...]
    packing: str | None = None
    scale_distilled: bool | None = None
    leave_out: tuple[int, ...] | None = None


class BitDelta(AdditiveMerge, Method):
    name: ClassVar[str] = "bitdelta"
    config_type: ClassVar[type[MethodConfig]] = BitDeltaConfig
    weight_space: ClassVar[bool] = True

    def validate(self) -> None:
        self.targets = resolve_targets(self.binding, tuple(self.config["target_modules"]), self.config.get("leave_out"))
        odd = sorted({t.slot.key for t in self.targets if t.fin % 8})
        if odd:
            fins = sorted({t.fin for t in self.targets if t.fin % 8})
            raise SchemaError("<adapter config>", [SchemaProblem(
                "/adapter/config/target_modules",
                f"{odd} have in_features {fins}, not a multiple of 8 (BitDelta packs 8 input columns per byte)")])
        self._signs: dict[str, tuple[tuple, torch.Tensor]] = {}

    def shapes(self) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {}
        for t in self.targets:
            out[f"{t.prefix}.mask"] = (t.fout, t.fin // 8)
            out[f"{t.prefix}.scale"] = ()
        return out

    def dtypes(self) -> dict[str, torch.dtype]:
        return {f"{t.prefix}.mask": torch.uint8 for t in self.targets}

    def init(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """A zero delta (all signs +1, every scale 0): the base model until the scales are trained."""
        out: dict[str, torch.Tensor] = {}
        for name, shape in self.shapes().items():
            out[name] = torch.full(shape, 255, dtype=torch.uint8) if name.endswith(".mask") else torch.zeros(shape)
        return out

    def trainable(self, tree: TensorTree) -> list[torch.nn.Parameter]:
        """Only the scales: the masks are integer tensors."""
        return [p for p in tree.parameters() if p.is_floating_point()]

    def count_parameters(self, tree: TensorTree, trainable_only: bool = False) -> int:
        """Sign bits plus scales (``out * in + 1`` per target); only the scales when ``trainable_only``."""
        total = 0
        for p in tree.parameters():
            if p.is_floating_point():
                total += p.numel() if (p.requires_grad or not trainable_only) else 0
            elif not trainable_only:
                total += p.numel() * 8
        return total

    # --- forward ----------------------------------------------------------------------------------
    def signs(self, tree: TensorTree, t: Target, like: torch.Tensor) -> torch.Tensor:
        """The cached ``{-1, +1}`` matrix of ``t`` in ``like``'s dtype and device (re-unpacked if the mask changed)."""
        mask = tree.get(f"{t.prefix}.mask")
        tag = (mask.data_ptr(), mask._version, like.dtype, like.device)
        hit = self._signs.get(t.prefix)
        if hit is None or hit[0] != tag:
            hit = (tag, unpack_signs(mask.detach(), like.dtype).to(like.device))
            self._signs[t.prefix] = hit
        return hit[1]

    def contribution(self, tree: TensorTree, t: Target, xs: torch.Tensor) -> torch.Tensor:
        return F.linear(xs, self.signs(tree, t, xs)) * tree.get(f"{t.prefix}.scale").to(xs.dtype)

    def site_fns(self, tree: TensorTree) -> dict[SiteKey, SiteFn]:
        return {("out", module): self._site_fn(tree, targets) for module, targets in by_module(self.targets).items()}

    def _site_fn(self, tree: TensorTree, targets: list[Target]) -> SiteFn:
        scales = [f"{t.prefix}.scale" for t in targets]
        whole = len(targets) == 1 and targets[0].slot.parts == 1

        def fn(y: torch.Tensor, x: torch.Tensor, inplace: bool) -> torch.Tensor:
            xs = x.reshape(-1, x.shape[-1])
            ys = y.reshape(-1, y.shape[-1])
            if inplace and y.is_contiguous() and in_place_ok(y, *(tree.get(n) for n in scales)):
                for t in targets:
                    ys[:, t.rows] += self.contribution(tree, t, xs)
                return y
            if whole:
                return (ys + self.contribution(tree, targets[0], xs)).view_as(y)
            pieces = {t.rows.start: self.contribution(tree, t, xs) for t in targets}
            width = targets[0].fout
            full = [pieces.get(i, ys.new_zeros(ys.shape[0], width)) for i in range(0, ys.shape[1], width)]
            return (ys + torch.cat(full, dim=-1)).view_as(y)

        return fn

    # --- merging ----------------------------------------------------------------------------------
    def folds(self) -> dict[SiteKey, Fold]:
        return module_folds(self.targets, "add")

    def delta_weight(self, tree: TensorTree, t: Target) -> torch.Tensor:
        """``alpha * Sign`` for ``t`` in fp32 (Linear form ``[out, in]``)."""
        mask = tree.get(f"{t.prefix}.mask")
        return unpack_signs(mask.detach(), torch.float32) * tree.get(f"{t.prefix}.scale").detach().float()
