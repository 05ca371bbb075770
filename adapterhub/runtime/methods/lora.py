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
from ...manifest.adapters_config import lora_config, unsupported
from ...manifest.peft_config import PATTERN_KEYS, lora_ranks, module_scalars, peft_method, peft_scalars
from ..arch import Binding
from ..folds import Fold
from ..module_paths import match_suffix, slot_index
from ..sites import SiteFn, SiteKey
from ..tensors import TensorTree
from .algebra import ingredient_label, truncate
from .base import Combined, Method, PeftPiece, in_place_ok, peft_unsupported
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
        return self.alpha / self.rank_divisor(self.r, bool(self.use_rslora))

    @staticmethod
    def rank_divisor(r: float, use_rslora: bool) -> float:
        """What ``alpha`` is divided by: ``r``, or ``sqrt(r)`` with rsLoRA."""
        return math.sqrt(r) if use_rslora else r


class Lora(AdditiveMerge, Method):
    name: ClassVar[str] = "lora"
    config_type: ClassVar[type[MethodConfig]] = LoraConfig
    weight_space: ClassVar[bool] = True
    training_only: ClassVar[frozenset[str]] = frozenset({"dropout", "init_weights", "r", "alpha", "use_rslora"})
    """Each ingredient's scaling (r, alpha, rsLoRA) is folded into an average exactly."""
    combine_same_shapes: ClassVar[bool] = False  # ranks may differ
    combine_truncates: ClassVar[bool] = True
    peft_type: ClassVar[str | None] = "LORA"
    adapters_architecture: ClassVar[str | None] = "lora"
    peft_leaves: ClassVar[tuple[str, ...]] = ("lora_A.weight", "lora_B.weight", "lora_magnitude_vector", "lora_B.bias")
    peft_tensor_names: ClassVar[frozenset[str]] = frozenset({"lora_A", "lora_B"})
    """Our per-slot tensors (DoRA adds ``magnitude``)."""

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
        plain = type(self).contribution is Lora.contribution  # DoRA overrides it: the generic path below
        whole = len(targets) == 1 and targets[0].slot.parts == 1
        s = self.scaling
        # tensor names resolved once per activation, not per call: a decode step calls this once per projection
        factors = [(f"{t.prefix}.lora_A", f"{t.prefix}.lora_B", t.rows) for t in targets]
        names = [n for t in targets for n in self.target_shapes(t)]

        def fn(y: torch.Tensor, x: torch.Tensor, inplace: bool) -> torch.Tensor:
            xs = x.reshape(-1, x.shape[-1])
            if p and tree.training:
                xs = F.dropout(xs, p, True)
            ys = y.reshape(-1, y.shape[-1])
            # the factors' requires_grad only matters while autograd records (never during inference)
            inplace = inplace and y.is_contiguous() and (
                not torch.is_grad_enabled() or in_place_ok(y, *(tree.get(n) for n in names)))
            if plain:  # y[rows] += s * (x A^T) B^T as one addmm per slot (a fused QKV has up to three)
                if whole and not inplace:
                    a_name, b_name, _ = factors[0]
                    return torch.addmm(ys, F.linear(xs, tree.get(a_name)), tree.get(b_name).t(), alpha=s).view_as(y)
                out = ys if inplace else ys.clone()
                for a_name, b_name, rows in factors:
                    (out if whole else out[:, rows]).addmm_(F.linear(xs, tree.get(a_name)), tree.get(b_name).t(),
                                                            alpha=s)
                return y if inplace else out.view_as(y)
            if inplace:
                for t in targets:
                    ys[:, t.rows] += self.contribution(tree, t, xs, ys[:, t.rows])
                return y
            pieces = {t.rows.start: self.contribution(tree, t, xs, ys[:, t.rows]) for t in targets}
            if whole:
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

    # --- PEFT: lora_A.weight [r, in] shared by a fused projection's slots, lora_B.weight [out, r] split by rows
    @classmethod
    def peft_claims(cls, cfg: dict[str, Any]) -> bool:
        return cfg.get("peft_type") == "LORA" and peft_method(cfg) == cls.name

    @classmethod
    def from_peft(cls, cfg: dict[str, Any], pieces: list[PeftPiece]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """Per-module ranks and alphas (``rank_pattern``/``alpha_pattern``) that differ are folded into one
        adapter-wide ``r`` (see :func:`~adapterhub.manifest.peft_config.lora_ranks`): each module's ``B`` carries
        its own scale and both factors are zero-padded to the largest rank."""
        scalars = {p.module_path: module_scalars(cfg, p.module_path) for p in pieces}
        ranks, fold = lora_ranks(cfg, set(scalars.values()) if any(cfg.get(k) for k in PATTERN_KEYS) else ())
        config = {**peft_scalars(cfg), **ranks}
        if fold:
            config.pop("use_rslora", None)
        top = int(ranks["r"])
        tensors: dict[str, torch.Tensor] = {}
        targets: dict[str, None] = {}
        for p in pieces:
            targets[p.target] = None
            r, alpha = scalars[p.module_path]
            if p.leaf == "lora_A.weight":
                tensors[f"{p.prefix}.lora_A"] = _pad(p.value.double(), top, 0) if fold else p.value
            elif p.leaf == "lora_B.weight":
                scale = alpha / LoraConfig.rank_divisor(r, bool(cfg.get("use_rslora")))
                # in float64, so the product is rounded only where the model's dtype needs it (exact in a float64 model)
                tensors[f"{p.prefix}.lora_B"] = _pad(p.rows().double() * scale, top, 1) if fold else p.rows()
            elif p.leaf == "lora_magnitude_vector":
                tensors[f"{p.prefix}.magnitude"] = p.rows()
            else:
                raise peft_unsupported("/lora_bias", "LoRA with trained biases is not supported")
        return {**config, "target_modules": list(targets)}, tensors

    def to_peft(self, tree: TensorTree, modules: dict[str, list[Target]]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """One PEFT module per projection; a fused projection's slots are stacked (``A`` rows concatenated,
        ``B`` block-diagonal), so a q+v LoRA of rank r exports with rank 2r on ``c_attn`` via ``rank_pattern``."""
        cfg = self.config
        r = int(cfg["r"])
        out: dict[str, torch.Tensor] = {}
        ranks: dict[str, int] = {}
        alphas: dict[str, float] = {}
        for path, targets in modules.items():
            a_list = [tree.get(f"{t.prefix}.lora_A").detach() for t in targets]
            parts = targets[0].slot.parts
            if parts == 1:
                out[f"{path}.lora_A.weight"] = a_list[0]
                out[f"{path}.lora_B.weight"] = tree.get(f"{targets[0].prefix}.lora_B").detach()
                if "magnitude" in self.peft_tensor_names:
                    out[f"{path}.lora_magnitude_vector"] = tree.get(f"{targets[0].prefix}.magnitude").detach()
                continue
            if "magnitude" in self.peft_tensor_names:
                raise peft_unsupported("/use_dora", "DoRA on a fused projection cannot be exported to PEFT")
            width = targets[0].fout
            big_r = r * len(targets)
            b = torch.zeros(width * parts, big_r, dtype=a_list[0].dtype)
            for j, t in enumerate(targets):
                b[t.rows, j * r:(j + 1) * r] = tree.get(f"{t.prefix}.lora_B").detach()
            out[f"{path}.lora_A.weight"] = torch.cat(a_list, dim=0)
            out[f"{path}.lora_B.weight"] = b
            ranks[path] = big_r
            alphas[path] = self.scaling * LoraConfig.rank_divisor(big_r, bool(cfg.get("use_rslora")))
        return out, {"fan_in_fan_out": self.binding.conv1d, "r": r, "lora_alpha": float(cfg["alpha"]), "lora_dropout": float(cfg.get("dropout") or 0.0),
                     "use_rslora": bool(cfg.get("use_rslora")), "use_dora": "magnitude" in self.peft_tensor_names,
                     "bias": "none", "rank_pattern": ranks, "alpha_pattern": alphas, "init_lora_weights": True}

    # --- the adapters library ---------------------------------------------------------------------
    @classmethod
    def from_adapters(cls, cfg: dict[str, Any], meta: dict[str, Any], tensors: dict[str, torch.Tensor], name: str,
                      binding: Binding) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
        """A LoRAConfig adapter: LoRA, or IA3 for ``composition_mode="scale"`` (``l := l * alpha``)."""
        method, config = lora_config(cfg, meta, binding.family.library_lora_locations)
        scale_mode = method == "ia3"
        targets = config["target_modules"]
        r = int(config.get("r", 0))
        alpha = float(cfg.get("alpha", 8))
        slots = slot_index(binding)
        ours: dict[str, torch.Tensor] = {}
        enabled = [m for m in ("q", "k", "v") if m in targets]
        for key, value in tensors.items():
            infix = f".loras.{name}."
            if infix not in key:
                raise unsupported("/", f"weight {key!r} does not belong to LoRA adapter {name!r}")
            module_path, leaf = key.split(infix, 1)
            hit = match_suffix(module_path, slots)
            if hit is None:
                raise unsupported("/", f"weight {key!r}: {module_path!r} is not a projection this runtime knows")
            ref = slots[hit[0]]
            # the library's merged q/k/v layer (GPT-2's c_attn) holds its enabled slices, never the whole module
            sliced = [s for s in ref.slots if s.parts > 1]
            group = [s for s in sliced if s.key in enabled] if sliced else list(ref.slots)
            for j, slot in enumerate(group):
                prefix = f"layers.{ref.layer.index}.{slot.key}"
                if scale_mode:
                    vec = value.reshape(-1)
                    n = vec.shape[0] // len(group)
                    ours[f"{prefix}.ia3_l"] = vec[j * n:(j + 1) * n] * alpha
                elif leaf == "lora_A":
                    ours[f"{prefix}.lora_A"] = value[j * r:(j + 1) * r] if len(group) > 1 else value
                elif leaf == "lora_B":
                    n = value.shape[0] // len(group)
                    ours[f"{prefix}.lora_B"] = value[j * n:(j + 1) * n]
                else:
                    raise unsupported("/", f"weight {key!r}: unknown LoRA tensor {leaf!r}")
        return method, config, {k: v.contiguous() for k, v in ours.items()}

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


def _pad(factor: torch.Tensor, rank: int, dim: int) -> torch.Tensor:
    """``factor`` with zero rank components appended along ``dim`` up to ``rank`` (they add nothing to ``B A``)."""
    missing = rank - factor.shape[dim]
    if missing <= 0:
        return factor
    shape = list(factor.shape)
    shape[dim] = missing
    return torch.cat([factor, factor.new_zeros(shape)], dim=dim)


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
