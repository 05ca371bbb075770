"""Which of our projections a PEFT config targets, from the config alone (no model, no tensors).

PEFT picks modules by name: a list ``target_modules`` matches a module whose path equals an entry or
ends with ``.<entry>``, a string is a regular expression the whole path must match, and
``layers_to_transform`` keeps only the layers with those indices (counted per stack), ``exclude_modules``
(a list or a regular expression, the same tests) drops modules, and ``"all-linear"`` is every Linear/Conv1D
of the model but its output embedding (the LM head) and, for ``SEQ_CLS``, the classifier. Applying the same
rules to each family's projection paths gives our architecture-neutral targets and ``leave_out``, as
the runtime's PEFT reader gets them from the tensor names. The paths come from the architecture table
(:mod:`adapterhub.families`), the same entries the runtime binds to a model, read with the base's
``config.json`` for what varies within a family (T5's gated feed-forward). What cannot be placed (a module
that is no projection of ours, a target set that differs between layers) is refused with the key named.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import SchemaError, SchemaProblem
from ..families import Family, Shape, find_family, supported_model_types
from .peft_config import PATTERN_KEYS, SOURCE, module_scalars, peft_unsupported
from .untrusted_regex import untrusted_pattern

NEUTRAL_ORDER = ("q", "k", "v", "qkv", "o", "ffn_in", "ffn_gate", "ffn_gate_in", "ffn_out")
ALL_LINEAR = "all-linear"
ALL_LINEAR_TASKS = (None, "FEATURE_EXTRACTION", "CAUSAL_LM", "SEQ_2_SEQ_LM")
"""``task_type`` values whose model, under PEFT's ``all-linear``, has no Linear beyond the backbone's but the output
embedding PEFT leaves out: a bare backbone or a language model. A classification, tagging or QA head is a
Linear (or several) PEFT adapts too (for ``SEQ_CLS`` it leaves out only a head named ``classifier``/``score``)."""
WRAPPER_PREFIXES = ("", "base_model.model.")
"""Module-name prefixes of any model (a bare backbone; a PEFT-wrapped model). A regular-expression
``target_modules`` is matched against the module's full name, which starts with one of these or with one of
the family's ``task_prefixes`` (where a task model keeps its backbone)."""


@dataclass(frozen=True)
class Stack:
    """One stack of layers: its path (relative to the backbone), layer count, the global index of its first
    layer, and each layer's projections ``(neutral key, module path relative to the layer)``."""

    path: str
    count: int
    offset: int
    projections: tuple[tuple[str, str], ...]


def family_of(model_type: str, source: str = SOURCE, pointer: str = "/base_model_name_or_path") -> Family:
    """The table entry of the base's ``model_type``; a :class:`SchemaError` at ``source``/``pointer`` when there
    is none (the placement of targets is a family fact)."""
    fam = find_family(model_type)
    if fam is None:
        raise SchemaError(source, [SchemaProblem(pointer, f"the base's model_type {model_type!r} has no entry in "
                                                 "adapterhub's architecture table "
                                                 f"({', '.join(supported_model_types())})")])
    return fam


def layouts(fam: Family, base_config: Mapping[str, Any], layer_counts: tuple[int, ...]) -> list[tuple[Stack, ...]]:
    """Every layout a model of ``fam`` with this ``config.json`` may have: one per choice among the family's
    alternative stack paths and the traits its config does not tell (the installed transformers decides those)."""
    encoder = [s for s in fam.stacks if not fam.is_decoder_stack(s)]
    decoder = [s for s in fam.stacks if fam.is_decoder_stack(s)]
    roles = [(paths, is_decoder, count) for (paths, is_decoder), count
             in zip([r for r in ((encoder, False), (decoder, True)) if r[0]], layer_counts, strict=False)]
    if fam.towers:  # several towers (CLIP): each stack is a role of its own, with its own layer count
        roles = [([path], False, count) for path, count in zip(fam.stacks, layer_counts, strict=True)]
    out: list[tuple[Stack, ...]] = []
    for traits in fam.trait_sets(base_config):
        for choice in itertools.product(*(paths for paths, _, _ in roles)):
            stacks, offset = [], 0
            for path, (_, is_decoder, count) in zip(choice, roles, strict=True):
                stacks.append(Stack(path, count, offset, fam.projections(Shape(is_decoder, traits))))
                offset += count
            out.append(tuple(stacks))
    return out


Placement = tuple[list[str], list[int], list[str], frozenset[tuple[int, float]]]


def peft_placement(cfg: dict[str, Any], model_type: str, base_config: Mapping[str, Any],
                   layer_counts: tuple[int, ...]) -> Placement:
    """``(target_modules, leave_out, feedforward_modules, (r, alpha) of the placed modules)`` in our terms for a PEFT
    config; the last is empty unless ``rank_pattern``/``alpha_pattern`` state per-module values.

    ``layer_counts``: layers per stack (encoder, then decoder for an encoder-decoder base); layer indices
    are global, as everywhere in adapterhub. Where the family's layout depends on the transformers version,
    the config must place the same way on every layout it names modules of.
    """
    raw = cfg.get("target_modules")
    if raw in (None, [], ""):
        raise peft_unsupported("/target_modules", f"target_modules={raw!r}: the config names no modules to adapt")
    fam = family_of(model_type)
    if is_all_linear(raw):
        check_all_linear(cfg)
    candidates = layouts(fam, base_config, layer_counts)
    placed: list[Placement] = []
    first_error: SchemaError | None = None
    for layout in candidates:
        try:
            found = _place(cfg, raw, layout, fam, model_type, fam.other_linears(base_config))
        except SchemaError as exc:  # this layout's names match, but not in a way adapterhub can place
            first_error = first_error or exc
        else:
            if found is not None:
                placed.append(found)
    if not placed:
        if first_error is not None:
            raise first_error
        names = sorted({p for layout in candidates for s in layout for _, p in s.projections})
        raise peft_unsupported("/target_modules", f"{raw!r} matches none of the projections adapterhub can target "
                               f"on a {model_type} model ({', '.join(names)})")
    if any(p != placed[0] for p in placed):
        raise peft_unsupported("/target_modules", f"{raw!r} names projections of more than one {model_type} layout "
                               "(transformers versions name them differently) and places differently on each")
    return placed[0]


def _place(cfg: dict[str, Any], raw: Any, stacks: tuple[Stack, ...], fam: Family, model_type: str,
           others: tuple[str, ...]) -> Placement | None:
    """The placement on one layout (see :func:`peft_placement`); None when the targets match none of its
    projections. ``others``: the backbone's Linear modules that are no projection (refused when targeted)."""
    match = (lambda path, prefixes: True) if is_all_linear(raw) else _matcher(raw, "target_modules")
    exclude_raw = cfg.get("exclude_modules")
    exclude = _matcher(exclude_raw, "exclude_modules") if exclude_raw not in (None, [], "") else None
    ff_raw = cfg.get("feedforward_modules") or []
    ff_match = _matcher(ff_raw, "feedforward_modules") if ff_raw else None
    keep = cfg.get("layers_to_transform")
    keep = [keep] if isinstance(keep, int) else keep
    if keep is not None and not (isinstance(keep, list) and all(isinstance(i, int) for i in keep)):
        raise peft_unsupported("/layers_to_transform", f"{keep!r} is not a layer index or a list of them")
    if keep is not None and isinstance(raw, str):
        raise peft_unsupported("/layers_to_transform", f"layers_to_transform with target_modules={raw!r}: PEFT refuses "
                               "layers_to_transform when target_modules is a string (a regular expression or "
                               "all-linear), so this config loads nowhere")
    prefixes = (*WRAPPER_PREFIXES, *fam.task_prefixes)
    per_layer: list[frozenset[str]] = []
    feedforward: set[str] = set()
    targets: set[str] = set()
    scalars: set[tuple[int, float]] = set()
    for stack in stacks:
        for i in range(stack.count):
            hit: dict[str, bool] = {}
            for key, path in stack.projections:
                full = f"{stack.path}.{i}.{path}"
                matched = bool(match(full, prefixes)) and (keep is None or i in keep) and not (
                    exclude is not None and exclude(full, prefixes))
                if hit.setdefault(key, matched) != matched:
                    raise peft_unsupported("/target_modules", f"{raw!r} targets only some of the {key!r} "
                                           f"projections of layer {stack.path}.{i}; adapterhub places a target on "
                                           "all of a layer's projections of that kind")
                if matched and ff_match is not None and ff_match(full, prefixes):
                    feedforward.add(key)
                if matched and any(cfg.get(k) for k in PATTERN_KEYS):
                    scalars.add(_scalars(cfg, full, ("", *fam.task_prefixes)))
            keys = frozenset(k for k, m in hit.items() if m)
            per_layer.append(keys)
            targets |= keys
    if not targets:
        return None
    hit_others = [p for p in others if match(p.replace(".N.", ".0."), prefixes)
                  and not (exclude is not None and exclude(p.replace(".N.", ".0."), prefixes))]
    if hit_others:
        raise peft_unsupported("/target_modules", f"target_modules={raw!r} also adapts {', '.join(hit_others)} of a "
                               f"{model_type} model (PEFT adapts every module it matches), which adapterhub cannot "
                               "place: no attention or feed-forward projection; name the projections (or exclude "
                               "those modules with exclude_modules)")
    _check_names(raw, stacks, model_type)
    covered = [keys for keys in per_layer if keys]
    if any(keys != covered[0] for keys in covered):
        raise peft_unsupported("/target_modules", f"{raw!r} targets different projections in different layers; "
                               "adapterhub places one set of targets on every layer it adapts")
    leave_out = [i for i, keys in enumerate(per_layer) if not keys]
    order = [k for k in NEUTRAL_ORDER if k in targets]
    return order, leave_out, [k for k in order if k in feedforward], frozenset(scalars)


def _scalars(cfg: dict[str, Any], path: str, prefixes: tuple[str, ...]) -> tuple[int, float]:
    """The module's ``(r, alpha)`` under the config's patterns, which must not depend on the model class (the
    prefix of the backbone in the module names PEFT matched them against)."""
    found = {module_scalars(cfg, prefix + path) for prefix in prefixes}
    if len(found) > 1:
        raise peft_unsupported("/rank_pattern", f"rank_pattern/alpha_pattern give {path} different values "
                               f"({sorted(found)}) depending on the model class it was trained on, which the "
                               "config does not say")
    return found.pop()


def is_all_linear(targets: Any) -> bool:
    """PEFT's shorthand for every Linear/Conv1D (compared case-insensitively, as PEFT does)."""
    return isinstance(targets, str) and targets.lower() == ALL_LINEAR


def check_all_linear(cfg: dict[str, Any]) -> None:
    """Refuse ``all-linear`` for a classification, tagging or QA model, whose head PEFT adapts too (the backbone's
    own Linear modules beyond our projections, BERT's pooler, are refused as for any target that matches them)."""
    task = cfg.get("task_type")
    if task not in ALL_LINEAR_TASKS:
        raise peft_unsupported("/target_modules", f"target_modules='all-linear' with task_type {task!r}: PEFT also "
                               "adapts the task head's Linear layers (all but a single classifier/score), which "
                               "adapterhub cannot place and which the config does not name; save the adapter with "
                               "explicit target_modules")


def _matcher(targets: Any, key: str) -> Any:
    """PEFT's module-name test for ``targets`` (list: equal or ``.``-suffix; string: full regex match)."""
    if isinstance(targets, str):
        pattern = untrusted_pattern(targets, f"/{key}", SOURCE)
        return lambda path, prefixes: any(pattern.fullmatch(p + path) for p in prefixes)
    if isinstance(targets, list) and all(isinstance(t, str) for t in targets):
        names = list(targets)
        return lambda path, prefixes: any(path == t or path.endswith("." + t) or t.endswith("." + path)
                                          for t in names)
    raise peft_unsupported(f"/{key}", f"{targets!r} is neither a list of module names nor a regular expression")


def _check_names(raw: Any, stacks: tuple[Stack, ...], model_type: str) -> None:
    """Refuse listed names that match no projection of ours (PEFT would adapt a module we cannot place)."""
    if not isinstance(raw, list):
        return
    paths = [f"{s.path}.0.{p}" for s in stacks for _, p in s.projections]
    for name in raw:
        if not any(p == name or p.endswith("." + name) or name.endswith("." + p.split(".0.", 1)[1]) for p in paths):
            raise peft_unsupported("/target_modules", f"{name!r} is not a projection adapterhub can target on a "
                                   f"{model_type} model (it would adapt a module outside the attention and "
                                   "feed-forward projections)")
