"""Shared plumbing of the weight-space methods (LoRA, DoRA, IA3): which projections, which slices.

The config names architecture-neutral targets (``q``, ``v``, ``ffn_out``...); the architecture
table maps each to one or more :class:`Slot` per layer (T5 decoder ``q`` is the self- and the
cross-attention query; GPT-2 ``q`` is the first third of the fused ``c_attn``). Weights are always
handled in ``nn.Linear`` form ``[out, in]``; GPT-2's ``Conv1D`` stores ``[in, out]`` and is
transposed on the way in and out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...errors import SchemaError, SchemaProblem
from ..arch import Binding, Layer, Slot
from ..folds import Fold


@dataclass(frozen=True)
class Target:
    """One slot of one layer, with its tensor prefix and geometry."""

    layer: Layer
    slot: Slot
    module: nn.Module
    prefix: str
    fin: int
    fout: int

    @property
    def rows(self) -> slice:
        """Output rows of this slot in the (possibly fused) projection."""
        part = self.slot.part or 0
        return slice(part * self.fout, (part + 1) * self.fout)


def resolve_targets(binding: Binding, names: tuple[str, ...], leave_out: tuple[int, ...] | None) -> list[Target]:
    """Every (layer, slot) the config targets; unknown targets for this family are a schema error."""
    out: list[Target] = []
    for layer in binding.iter_layers(leave_out):
        for name in names:
            if name not in layer.slots:
                raise SchemaError("<adapter config>", [SchemaProblem(
                    "/adapter/config/target_modules",
                    f"{name!r} does not exist in {binding.family.name} models "
                    f"(available: {sorted(layer.slots)})")])
            for slot in layer.slots[name]:
                fin, fout = binding.slot_shape(layer, slot)
                out.append(Target(layer, slot, layer.sub(slot.path), f"layers.{layer.index}.{slot.key}", fin, fout))
    check_whole_or_slices(out)
    return out


def check_whole_or_slices(targets: list[Target]) -> None:
    """Refuse a fused projection targeted both whole (``qkv``) and by a slice (``q``): the rows would be adapted
    twice by one adapter, which no PEFT or ``adapters`` config expresses."""
    for module_targets in by_module(targets).values():
        keys = sorted({t.slot.key for t in module_targets})
        if len(keys) > 1 and any(t.slot.parts == 1 for t in module_targets):
            raise SchemaError("<adapter config>", [SchemaProblem(
                "/adapter/config/target_modules",
                f"{keys} all adapt {module_targets[0].slot.path!r}: target the fused projection whole "
                "or by its slices, not both")])


def by_module(targets: list[Target]) -> dict[nn.Module, list[Target]]:
    """Targets grouped per projection module (fused QKV gets several), in first-seen order."""
    groups: dict[nn.Module, list[Target]] = defaultdict(list)
    for t in targets:
        groups[t.module].append(t)
    return groups


def module_folds(targets: list[Target], kind: str, *, reads_weight: bool = False) -> dict[tuple, Fold]:
    """``{("out", module): Fold}`` for a method that rewrites the output rows of its targets."""
    return {("out", module): Fold(kind, slice_starts(ts), reads_weight) for module, ts in by_module(targets).items()}


def slice_starts(targets: list[Target]) -> frozenset[int] | None:
    """Output rows (as slice starts) that ``targets`` of one module touch; None when they own every row."""
    return frozenset(t.rows.start for t in targets) if targets[0].slot.parts > 1 else None


def linear_weight(binding: Binding, module: nn.Module) -> torch.Tensor:
    """The module weight as ``[out, in]`` (a view for Conv1D)."""
    return module.weight.t() if binding.conv1d else module.weight


def add_to_weight(binding: Binding, target: Target, delta: torch.Tensor) -> None:
    """``W[rows] += delta`` for a Linear-form ``delta[out_slice, in]``, in place, no autograd."""
    with torch.no_grad():
        w = target.module.weight
        if binding.conv1d:
            w[:, target.rows] += delta.t().to(w.dtype)
        else:
            w[target.rows] += delta.to(w.dtype)


class AdditiveMerge:
    """``merge``/``unmerge`` for methods whose merged form is ``W + delta_weight(t)`` on each target
    (LoRA, BitDelta): one loop, so unmerging always subtracts exactly what merging added."""

    targets: list[Target]
    binding: Binding
    delta_weight: Callable[[Any, Target], torch.Tensor]  # the method's ``delta_weight(tree, target)``

    def merge(self, tree) -> None:
        for t in self.targets:
            add_to_weight(self.binding, t, self.delta_weight(tree, t))

    def unmerge(self, tree) -> None:
        for t in self.targets:
            add_to_weight(self.binding, t, -self.delta_weight(tree, t))


def set_weight_rows(binding: Binding, target: Target, rows: torch.Tensor) -> None:
    with torch.no_grad():
        w = target.module.weight
        if binding.conv1d:
            w[:, target.rows] = rows.t().to(w.dtype)
        else:
            w[target.rows] = rows.to(w.dtype)


def weight_rows(binding: Binding, target: Target) -> torch.Tensor:
    return linear_weight(binding, target.module)[target.rows]


def bias_rows(target: Target) -> torch.Tensor | None:
    b = getattr(target.module, "bias", None)
    return None if b is None else b[target.rows]
