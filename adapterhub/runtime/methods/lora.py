"""LoRA (Hu et al. 2021) with rsLoRA scaling: ``y = W x + b + s * B A x`` on the targeted projections.

``s = alpha / r`` (``alpha / sqrt(r)`` with ``use_rslora``), as PEFT and the ``adapters`` library
define it. Unmerged, a projection costs one extra GEMM pair fused as ``addmm(y, A x, B^T, alpha=s)``;
merged (``W += s B A``) it costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch.nn import functional as F

from ...errors import WeightMismatchError
from ..arch import Binding
from ..folds import Fold
from ..sites import SiteFn, SiteKey
from ..tensors import TensorTree
from .algebra import ingredient_label, truncate
from .base import Combined, Method, in_place_ok
from .config import MethodConfig
from .projection import AdditiveMerge, Target, by_module, module_folds, resolve_targets

if TYPE_CHECKING:
    from ..package import AdapterPackage


@dataclass(frozen=True)
class LoraConfig(MethodConfig):
    """LoRA and DoRA share one config; the method name says whether the magnitude vector exists."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "dropout": 0.0, "target_modules": ("q", "v"), "use_rslora": False, "init_weights": "lora", "leave_out": (),
    }
    r: int
    alpha: float
    dropout: float | None = None
    target_modules: tuple[str, ...] | None = None
    use_rslora: bool | None = None
    init_weights: str | None = None
    leave_out: tuple[int, ...] | None = None

    @property
    def scaling(self) -> float:
        """``s = alpha / r``, or ``alpha / sqrt(r)`` for rsLoRA (Kalajdzievski 2023): the one home of the formula."""
        return self.alpha / math.sqrt(self.r) if self.use_rslora else self.alpha / self.r


class Lora(AdditiveMerge, Method):
    name: ClassVar[str] = "lora"
    config_type: ClassVar[type[MethodConfig]] = LoraConfig
    weight_space: ClassVar[bool] = True
    training_only: ClassVar[frozenset[str]] = frozenset({"dropout", "init_weights", "r", "alpha", "use_rslora"})
    """Each ingredient's scaling (r, alpha, rsLoRA) is folded into an average exactly."""
    combine_same_shapes: ClassVar[bool] = False  # ranks may differ
    combine_truncates: ClassVar[bool] = True

    def validate(self) -> None:
        self.targets = resolve_targets(self.binding, tuple(self.config["target_modules"]), self.config.get("leave_out"))
        self.scaling = LoraConfig.from_stated(self.config).scaling

    def target_shapes(self, t: Target) -> dict[str, tuple[int, ...]]:
        r = int(self.config["r"])
        return {f"{t.prefix}.lora_A": (r, t.fin), f"{t.prefix}.lora_B": (t.fout, r)}

    def shapes(self) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {}
        for t in self.targets:
            out.update(self.target_shapes(t))
        return out

    def init(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        scheme = self.config.get("init_weights", "lora")
        out: dict[str, torch.Tensor] = {}
        r = int(self.config["r"])
        for name, shape in self.shapes().items():
            t = torch.zeros(shape)
            if name.endswith("lora_A"):
                if scheme == "gaussian":
                    t.normal_(0.0, 1.0 / r, generator=generator)
                elif scheme == "bert":
                    t.normal_(0.0, 0.02, generator=generator)
                else:  # kaiming_uniform_(a=sqrt(5)) as nn.Linear and PEFT
                    bound = 1.0 / math.sqrt(shape[1])
                    t.uniform_(-bound, bound, generator=generator)
            elif name.endswith("lora_B") and scheme == "bert":
                t.normal_(0.0, 0.02, generator=generator)
            out[name] = t
        return out

    # --- forward ----------------------------------------------------------------------------------
    def contribution(self, tree: TensorTree, t: Target, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
        """What this target adds to its output rows ``ys`` (2-D views)."""
        a, b = tree.get(f"{t.prefix}.lora_A"), tree.get(f"{t.prefix}.lora_B")
        return F.linear(F.linear(xs, a), b) * self.scaling

    def site_fns(self, tree: TensorTree) -> dict[SiteKey, SiteFn]:
        return {("out", module): self._site_fn(tree, targets) for module, targets in by_module(self.targets).items()}

    def _site_fn(self, tree: TensorTree, targets: list[Target]) -> SiteFn:
        p = float(self.config.get("dropout") or 0.0)
        fast = type(self).contribution is Lora.contribution and len(targets) == 1 and targets[0].slot.parts == 1
        s = self.scaling
        t0 = targets[0]
        a_name, b_name = f"{t0.prefix}.lora_A", f"{t0.prefix}.lora_B"
        names = [n for t in targets for n in self.target_shapes(t)]

        def fn(y: torch.Tensor, x: torch.Tensor, inplace: bool) -> torch.Tensor:
            xs = x.reshape(-1, x.shape[-1])
            if p and tree.training:
                xs = F.dropout(xs, p, True)
            ys = y.reshape(-1, y.shape[-1])
            inplace = inplace and y.is_contiguous() and in_place_ok(y, *(tree.get(n) for n in names))
            if fast:
                a, b = tree.get(a_name), tree.get(b_name)
                if inplace:
                    ys.addmm_(F.linear(xs, a), b.t(), alpha=s)
                    return y
                return torch.addmm(ys, F.linear(xs, a), b.t(), alpha=s).view_as(y)
            if inplace:
                for t in targets:
                    ys[:, t.rows] += self.contribution(tree, t, xs, ys[:, t.rows])
                return y
            pieces = {t.rows.start: self.contribution(tree, t, xs, ys[:, t.rows]) for t in targets}
            if len(targets) == 1 and targets[0].slot.parts == 1:
                return (ys + pieces[0]).view_as(y)
            width = targets[0].fout
            full = [pieces.get(i, ys.new_zeros(ys.shape[0], width)) for i in range(0, ys.shape[1], width)]
            return (ys + torch.cat(full, dim=-1)).view_as(y)

        return fn

    def routable(self, module: object) -> tuple[str, str, float] | None:
        """(A name, B name, scaling) when ``module`` carries exactly one plain LoRA slot of this adapter.

        Per-example routing gathers these factors for a whole batch (one ``bmm`` pair per
        projection); DoRA, fused-projection slices and dropout in training take the generic path.
        """
        if type(self) is not Lora:
            return None
        targets = [t for t in self.targets if t.module is module]
        if len(targets) != 1 or targets[0].slot.parts != 1:
            return None
        t = targets[0]
        return f"{t.prefix}.lora_A", f"{t.prefix}.lora_B", self.scaling

    # --- merging ----------------------------------------------------------------------------------
    def folds(self) -> dict[SiteKey, Fold]:
        return module_folds(self.targets, "add")

    def delta_weight(self, tree: TensorTree, t: Target) -> torch.Tensor:
        return (tree.get(f"{t.prefix}.lora_B") @ tree.get(f"{t.prefix}.lora_A")) * self.scaling

    # --- averaging ----------------------------------------------------------------------------------
    @classmethod
    def combine(cls, pkgs: Sequence[AdapterPackage], coeffs: list[float], *, rank: int | None,
                binding: Binding | None) -> Combined:
        """``Delta = sum_i c_i s_i B_i A_i``, exactly in concatenated-rank form (``alpha = r``, so ``s = 1``)
        or truncated by SVD to ``rank`` with the relative Frobenius error recorded."""
        tensors: dict[str, torch.Tensor] = {}
        errors: dict[str, float] = {}
        tail_sum = total_sum = 0.0
        r_cat = sum(int(p.config["r"]) for p in pkgs)
        for prefix in same_slots(pkgs):
            b, a = concat_factors(pkgs, coeffs, prefix)
            if rank:
                b, a, tail, total = truncate(b, a, rank)
                errors[prefix] = math.sqrt(tail / total) if total > 0 else 0.0
                tail_sum += tail
                total_sum += total
            tensors[f"{prefix}.lora_A"], tensors[f"{prefix}.lora_B"] = a, b
        overall = math.sqrt(tail_sum / total_sum) if total_sum > 0 else 0.0
        return combined_lora(pkgs, tensors, rank or r_cat, rank, errors, overall)


def combined_lora(pkgs: Sequence[AdapterPackage], tensors: dict[str, torch.Tensor], r: int, rank: int | None,
                  errors: dict[str, float], overall: float) -> Combined:
    """The result of a LoRA/DoRA average: rank ``r`` with ``alpha = r`` (scaling folded into ``B``)."""
    config = {**pkgs[0].config, "r": r, "alpha": r}
    config.pop("use_rslora", None)
    record: dict[str, Any] = {"form": "svd" if rank else "concatenated-rank", "rank": r}
    if rank:
        record.update(relative_error=overall, max_slot_relative_error=max(errors.values(), default=0.0))
    return Combined(tensors, config, record, errors)


def slot_prefixes(pkg: AdapterPackage) -> list[str]:
    return sorted(k.removesuffix(".lora_A") for k in pkg.tensors if k.endswith(".lora_A"))


def same_slots(pkgs: Sequence[AdapterPackage]) -> list[str]:
    """The LoRA slot prefixes all ingredients share (refused when they differ)."""
    prefixes = slot_prefixes(pkgs[0])
    for i, p in enumerate(pkgs[1:], 1):
        if slot_prefixes(p) != prefixes:
            raise WeightMismatchError(f"LoRA projections of {ingredient_label(pkgs[0], 0)} and "
                                      f"{ingredient_label(p, i)} differ")
    return prefixes


def concat_factors(pkgs: Sequence[AdapterPackage], coeffs: list[float], prefix: str,
                   row_scale: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B_cat, A_cat)`` in float64 with ``B_cat A_cat = sum_i c_i s_i [diag(row_scale_i)] B_i A_i``."""
    bs, as_ = [], []
    for i, (p, c) in enumerate(zip(pkgs, coeffs, strict=True)):
        scaling = LoraConfig.from_stated(p.config).scaling
        b = p.tensors[f"{prefix}.lora_B"].detach().to(torch.float64) * (c * scaling)
        if row_scale is not None:
            b = b * row_scale[i].view(-1, 1)
        bs.append(b)
        as_.append(p.tensors[f"{prefix}.lora_A"].detach().to(torch.float64))
    return torch.cat(bs, dim=1), torch.cat(as_, dim=0)
