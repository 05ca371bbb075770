"""Finding our (layer, slot) for a module path written by another tool.

Other tools name tensors by the full module path of the model they saved from (with or without a
task-model prefix such as ``bert.`` or PEFT's ``base_model.model.``). We index every projection
slot and every layer of the bound model by its path relative to the backbone, and match a foreign
path by its longest suffix that is such a path.
"""

from __future__ import annotations

from dataclasses import dataclass

from .arch import Binding, Layer, Slot


@dataclass(frozen=True)
class SlotRef:
    layer: Layer
    slots: tuple[Slot, ...]


def _relative_paths(binding: Binding) -> dict[int, str]:
    names = {id(m): n for n, m in binding.backbone.named_modules()}
    return {layer.index: names[id(layer.module)] for layer in binding.layers}


def slot_index(binding: Binding) -> dict[str, SlotRef]:
    """``{"encoder.layer.0.attention.self.query": SlotRef(...)}`` for every projection slot."""
    out: dict[str, list[Slot]] = {}
    layers: dict[str, Layer] = {}
    rel = _relative_paths(binding)
    for layer in binding.layers:
        for slots in layer.slots.values():
            for slot in slots:
                path = f"{rel[layer.index]}.{slot.path}"
                out.setdefault(path, []).append(slot)
                layers[path] = layer
    return {p: SlotRef(layers[p], tuple(sorted(s, key=lambda s: s.part or 0))) for p, s in out.items()}


def module_slots(slots: tuple[Slot, ...]) -> tuple[Slot, ...]:
    """The slots a tool that adapts a module as a whole (PEFT) lands on: the module's whole slot when the
    family offers one (a fused projection's ``qkv``), else its slices (or its one plain slot)."""
    whole = tuple(s for s in slots if s.parts == 1)
    return whole[:1] or slots


def layer_index(binding: Binding) -> dict[str, Layer]:
    """``{"encoder.layer.0": layer}`` for every layer."""
    rel = _relative_paths(binding)
    return {rel[layer.index]: layer for layer in binding.layers}


def match_suffix(path: str, table: dict[str, object]) -> tuple[str, str] | None:
    """(matched table key, remainder after it) for the longest table key that ``path`` contains at a dot boundary."""
    parts = path.split(".")
    best: tuple[str, str] | None = None
    for start in range(len(parts)):
        for stop in range(len(parts), start, -1):
            candidate = ".".join(parts[start:stop])
            if candidate in table and (best is None or len(candidate) > len(best[0])):
                best = (candidate, ".".join(parts[stop:]))
        if best is not None:
            return best
    return best
