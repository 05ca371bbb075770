"""IA3 (Liu et al. 2022): learned vectors rescaling projections, with PEFT's semantics.

Targets in ``feedforward_modules`` are scaled on their *input* (``W (l * x) + b``), the others on
their *output* (``l * (W x + b)``). The ``adapters`` library scales every target on its output
(``l * alpha``); interop converts such adapters with an empty ``feedforward_modules``. Merging
multiplies weight columns (input) or rows and bias (output) by ``l``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from ...errors import SchemaError, SchemaProblem
from ..folds import Fold
from ..sites import SiteFn, SiteKey
from ..tensors import TensorTree
from .algebra import linear_combination
from .base import Combined, Method, PeftPiece, in_place_ok
from .config import MethodConfig
from .projection import Target, by_module, resolve_targets, slice_starts

if TYPE_CHECKING:
    from ..arch import Binding
    from ..package import AdapterPackage


@dataclass(frozen=True)
class IA3Config(MethodConfig):
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "target_modules": ("k", "v", "ffn_out"), "feedforward_modules": ("ffn_out",), "leave_out": (),
    }
    target_modules: tuple[str, ...] | None = None
    feedforward_modules: tuple[str, ...] | None = None
    leave_out: tuple[int, ...] | None = None


class IA3(Method):
    name: ClassVar[str] = "ia3"
    config_type: ClassVar[type[MethodConfig]] = IA3Config
    peft_type: ClassVar[str | None] = "IA3"
    peft_leaves: ClassVar[tuple[str, ...]] = ("ia3_l",)
    weight_space: ClassVar[bool] = True

    def validate(self) -> None:
        names = tuple(self.config["target_modules"])
        ff = set(self.config.get("feedforward_modules") or ())
        if not ff <= set(names):
            raise SchemaError("<adapter config>", [SchemaProblem(
                "/adapter/config/feedforward_modules", f"{sorted(ff - set(names))} are not in target_modules")])
        self.targets = resolve_targets(self.binding, names, self.config.get("leave_out"))
        self.input_scaled = {t.prefix for t in self.targets if self._neutral(t) in ff}
        for t in self.targets:
            if t.prefix in self.input_scaled and t.slot.parts > 1:
                raise SchemaError("<adapter config>", [SchemaProblem(
                    "/adapter/config/feedforward_modules",
                    f"{t.slot.key!r} is a slice of a fused projection and cannot be scaled on its input")])

    @staticmethod
    def _neutral(t: Target) -> str:
        return t.slot.key.removeprefix("cross_")

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {f"{t.prefix}.ia3_l": ((t.fin,) if t.prefix in self.input_scaled else (t.fout,)) for t in self.targets}

    def init(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return {k: torch.ones(v) for k, v in self.shapes().items()}

    def site_fns(self, tree: TensorTree) -> dict[SiteKey, SiteFn]:
        out: dict[SiteKey, SiteFn] = {}
        for module, targets in by_module(self.targets).items():
            inputs = [t for t in targets if t.prefix in self.input_scaled]
            outputs = [t for t in targets if t.prefix not in self.input_scaled]
            if inputs:
                out[("in", module)] = self._input_fn(tree, inputs[0])
            if outputs:
                out[("out", module)] = self._output_fn(tree, outputs)
        return out

    def _input_fn(self, tree: TensorTree, t: Target) -> SiteFn:
        name = f"{t.prefix}.ia3_l"

        def fn(x: torch.Tensor, aux: object, inplace: bool) -> torch.Tensor:
            return x * tree.get(name)

        return fn

    def _output_fn(self, tree: TensorTree, targets: list[Target]) -> SiteFn:
        names = {t.rows.start: f"{t.prefix}.ia3_l" for t in targets}
        width = targets[0].fout
        fused = targets[0].slot.parts > 1

        def fn(y: torch.Tensor, x: object, inplace: bool) -> torch.Tensor:
            if not fused:
                scale = tree.get(names[0])
            else:
                scale = torch.cat([tree.get(names[i]) if i in names else y.new_ones(width)
                                   for i in range(0, y.shape[-1], width)])
            return y.mul_(scale) if inplace and in_place_ok(scale, y) else y * scale

        return fn

    def folds(self) -> dict[SiteKey, Fold]:
        """Output targets scale weight rows and bias, input targets weight columns."""
        out: dict[SiteKey, Fold] = {}
        for module, targets in by_module(self.targets).items():
            outputs = [t for t in targets if t.prefix not in self.input_scaled]
            if len(outputs) < len(targets):
                out[("in", module)] = Fold("scale_in")
            if outputs:
                out[("out", module)] = Fold("scale", slice_starts(outputs))
        return out

    # --- PEFT: ia3_l is [out, 1] (output-scaled), or [1, in] for feedforward_modules (input-scaled)
    @classmethod
    def from_peft(cls, cfg: dict[str, Any], pieces: list[PeftPiece]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        ff_suffixes = cfg.get("feedforward_modules") or []
        tensors: dict[str, torch.Tensor] = {}
        targets: dict[str, None] = {}
        feedforward: dict[str, None] = {}
        for p in pieces:
            targets[p.target] = None
            if any(p.module_path.endswith(s) for s in ff_suffixes):
                feedforward[p.target] = None
                tensors[f"{p.prefix}.ia3_l"] = p.value.reshape(-1)
            else:
                tensors[f"{p.prefix}.ia3_l"] = p.rows().reshape(-1)
        return {"target_modules": list(targets), "feedforward_modules": list(feedforward)}, tensors

    def to_peft(self, tree: TensorTree, modules: dict[str, list[Target]]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        out: dict[str, torch.Tensor] = {}
        ff_paths: list[str] = []
        for path, targets in modules.items():
            if targets[0].prefix in self.input_scaled:
                ff_paths.append(path)
                out[f"{path}.ia3_l"] = tree.get(f"{targets[0].prefix}.ia3_l").detach().reshape(1, -1)
            else:
                by_part = {t.slot.part or 0: tree.get(f"{t.prefix}.ia3_l").detach() for t in targets}
                width = targets[0].fout
                vec = torch.cat([by_part.get(i, torch.ones(width)) for i in range(targets[0].slot.parts)])
                out[f"{path}.ia3_l"] = vec.reshape(-1, 1)
        return out, {"fan_in_fan_out": self.binding.conv1d, "feedforward_modules": ff_paths, "init_ia3_weights": True}

    @classmethod
    def combine(cls, pkgs: Sequence[AdapterPackage], coeffs: list[float], *, rank: int | None,
                binding: Binding | None) -> Combined:
        """``l = (1 - sum c) + sum_i c_i l_i``: a diagonal scale is linear in ``l``."""
        offset = 1.0 - math.fsum(coeffs)
        tensors = {k: linear_combination([p.tensors[k] for p in pkgs], coeffs) + offset for k in pkgs[0].tensors}
        return Combined(tensors, dict(pkgs[0].config), {"form": "vectors"})

    def merge(self, tree: TensorTree) -> None:
        self._apply(tree, invert=False)

    def unmerge(self, tree: TensorTree) -> None:
        self._apply(tree, invert=True)

    def _apply(self, tree: TensorTree, invert: bool) -> None:
        conv1d = self.binding.conv1d
        with torch.no_grad():
            for t in self.targets:
                lvec = tree.get(f"{t.prefix}.ia3_l")
                w = t.module.weight
                if t.prefix in self.input_scaled:  # scale input columns
                    _scale(w, lvec.view(-1, 1) if conv1d else lvec.view(1, -1), invert)
                else:
                    rows = t.rows
                    if conv1d:
                        _scale(w[:, rows], lvec.view(1, -1), invert)
                    else:
                        _scale(w[rows], lvec.view(-1, 1), invert)
                    bias = getattr(t.module, "bias", None)
                    if bias is not None:
                        _scale(bias[rows], lvec, invert)


def _scale(target: torch.Tensor, factor: torch.Tensor, invert: bool) -> None:
    """Multiply (merge) or divide (unmerge) a weight view in place; division undoes merging exactly-ish."""
    factor = factor.to(target.dtype)
    if invert:
        target.div_(factor)
    else:
        target.mul_(factor)
