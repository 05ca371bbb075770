"""PEFT's test of whether a config adapts the module named ``key``, reproduced rule for rule (torch-free).

PEFT (``check_target_module_exists``) tests every module name of the model it wraps (``bert.encoder.layer.0...``
in a task model, ``encoder.layer.0...`` in a bare one), in this order: ``exclude_modules`` (list: equal or
``.``-suffix; string: full regular-expression match) and ``modules_to_save`` (a module inside one is never
adapted) drop it; a string ``target_modules`` must match the whole name; a name listed as it is is adapted
whatever ``layers_to_transform`` says; a listed ``.``-suffix is adapted when the layer index PEFT reads off the
name is in ``layers_to_transform``. That index is the number after the first ``<pattern>.`` for a
``layers_pattern`` (its entries are regular expressions, tried in order), else after the first dotted segment
that follows another (so ``h.0.attn`` of a bare GPT-2 has none and is not adapted). A name without an index is
not adapted when ``layers_to_transform`` is set (BERT's ``pooler.dense``). ``target_modules="all-linear"`` stands
for every Linear: the caller only asks about Linear modules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .peft_config import SOURCE, peft_unsupported
from .untrusted_regex import UntrustedPattern, untrusted_pattern

DEFAULT_INDEX = re.compile(r".*?\.[^.]*\.(?P<idx>\d+)\.")
"""PEFT's layer index without ``layers_pattern``: the first numbered segment after a dotted segment (lazy)."""

Names = tuple[str, ...] | UntrustedPattern


@dataclass(frozen=True)
class PeftMatch:
    """One config's module test (:meth:`__call__`); built by :meth:`of`, which refuses malformed keys by name."""

    targets: Names | None
    """Listed names, a regular expression, or None for ``all-linear`` (every Linear)."""
    exclude: Names | None
    saved: tuple[UntrustedPattern, ...]
    layers: tuple[int, ...] | None
    index_patterns: tuple[UntrustedPattern | re.Pattern[str], ...]

    @classmethod
    def of(cls, cfg: dict[str, Any], *, all_linear: bool) -> PeftMatch:
        raw = cfg.get("target_modules")
        targets = None if all_linear else _names(raw, "target_modules")
        exclude_raw = cfg.get("exclude_modules")
        exclude = _names(exclude_raw, "exclude_modules") if exclude_raw not in (None, [], "") else None
        saved = tuple(_compile(rf"(^|.*\.){m}($|\..*)", "modules_to_save") for m in _list(cfg, "modules_to_save"))
        layers = cfg.get("layers_to_transform")
        if isinstance(layers, bool) or not (layers is None or isinstance(layers, int) or (
                isinstance(layers, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in layers))):
            raise peft_unsupported("/layers_to_transform", f"{layers!r} is not a layer index or a list of them")
        if layers is not None and isinstance(raw, str):
            raise peft_unsupported("/layers_to_transform", f"layers_to_transform with target_modules={raw!r}: PEFT "
                                   "refuses layers_to_transform when target_modules is a string (a regular expression "
                                   "or all-linear), so this config loads nowhere")
        if cfg.get("layers_pattern") and layers is None:
            raise peft_unsupported("/layers_pattern", "layers_pattern without layers_to_transform: PEFT refuses it, "
                                   "so this config loads nowhere")
        used = (layers,) if isinstance(layers, int) else (tuple(layers) if layers else None)
        patterns = tuple(_compile(rf"(?:^|.*?\.){p}\.(?P<idx>\d+)\.", "layers_pattern")
                         for p in _list(cfg, "layers_pattern"))
        return cls(targets, exclude, saved, used, patterns or (DEFAULT_INDEX,))

    def excluded(self, key: str) -> bool:
        """Whether ``exclude_modules`` or ``modules_to_save`` keep PEFT off ``key`` whatever the targets say."""
        if self.exclude is not None and _listed(self.exclude, key, suffix=True):
            return True
        return any(p.match(key) for p in self.saved)

    def __call__(self, key: str) -> bool:
        """Whether PEFT adapts the Linear module named ``key`` (a full module name of the model it wrapped)."""
        if self.excluded(key):
            return False
        if self.targets is None or isinstance(self.targets, UntrustedPattern):
            return self.targets is None or self.targets.fullmatch(key)
        if key in self.targets:
            return True
        if not any(key.endswith("." + t) for t in self.targets):
            return False
        if self.layers is None:
            return True
        index = self.layer_index(key)
        return index is not None and index in self.layers

    def layer_index(self, key: str) -> int | None:
        """The layer index PEFT reads off ``key`` for ``layers_to_transform`` (None: it finds none)."""
        for pattern in self.index_patterns:
            hit = pattern.match_at_start(key) if isinstance(pattern, UntrustedPattern) else pattern.match(key)
            if hit is not None:
                return int(hit.group("idx"))
        return None


def _listed(names: Names, key: str, *, suffix: bool) -> bool:
    if isinstance(names, UntrustedPattern):
        return names.fullmatch(key)
    return key in names or (suffix and any(key.endswith("." + n) for n in names))


def _names(value: Any, key: str) -> Names:
    if isinstance(value, str):
        return _compile(value, key)
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return tuple(value)
    raise peft_unsupported(f"/{key}", f"{value!r} is neither a list of module names nor a regular expression")


def _list(cfg: dict[str, Any], key: str) -> list[str]:
    value = cfg.get(key) or []
    value = [value] if isinstance(value, str) else value
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise peft_unsupported(f"/{key}", f"{value!r} is neither a name nor a list of names")
    return value


def _compile(pattern: str, key: str) -> UntrustedPattern:
    """A pattern from the config (a stranger's): matched under a time budget (:mod:`.untrusted_regex`)."""
    return untrusted_pattern(pattern, f"/{key}", SOURCE)
