"""Which of our projections a PEFT config targets, from the config (and, where it does not settle it, the tensor names).

PEFT picks modules by their full names (:mod:`.peft_match` reproduces its test: ``target_modules``,
``exclude_modules``, ``modules_to_save``, ``layers_to_transform`` with ``layers_pattern``), and ``"all-linear"`` is
every Linear/Conv1D of the model but its output embedding (the LM head) and, for ``SEQ_CLS``, the classifier.
Applying that test to each family's projection paths, under each module-name prefix the model PEFT wrapped may have
had (a bare backbone, a task model's ``bert.``), gives our architecture-neutral targets and ``leave_out``, as the
runtime's PEFT reader gets them from the tensor names. The paths come from the architecture table
(:mod:`adapterhub.families`), the same entries the runtime binds to a model, read with the base's
``config.json`` for what varies within a family (T5's gated feed-forward). A backbone Linear we have no slot for
(BERT's pooler) that the config also matches is accepted only where PEFT leaves it computing what the base does.
What cannot be placed (a module that is no projection of ours, a target set that differs between layers) is
refused with the key named.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import SchemaError, SchemaProblem
from ..families import Family, Shape, find_family, supported_model_types
from .peft_config import PATTERN_KEYS, SOURCE, module_scalars, peft_unsupported
from .peft_match import PeftMatch

NEUTRAL_ORDER = ("q", "k", "v", "qkv", "o", "ffn_in", "ffn_gate", "ffn_gate_in", "ffn_out")
ALL_LINEAR = "all-linear"
ALL_LINEAR_TASKS = (None, "FEATURE_EXTRACTION", "CAUSAL_LM", "SEQ_2_SEQ_LM")
"""``task_type`` values whose model, under PEFT's ``all-linear``, has no Linear beyond the backbone's but the output
embedding PEFT leaves out: a bare backbone or a language model. A classification, tagging or QA head is a
Linear (or several) PEFT adapts too (for ``SEQ_CLS`` it leaves out only a head named ``classifier``/``score``)."""
PEFT_PREFIX = "base_model.model."
"""What PEFT prepends to every tensor name it saves (the module names of the model it wrapped follow)."""
WRAPPER_PREFIXES = ("", PEFT_PREFIX)
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
TensorNames = Callable[[], Collection[str]]
"""The tensor names of the adapter's weights file, read when needed (the caller may have to fetch it)."""
IDENTITY_INITS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "LORA": lambda cfg: cfg.get("init_lora_weights", True) is True or (
        isinstance(cfg.get("init_lora_weights"), str) and cfg["init_lora_weights"].lower() in ("gaussian", "eva")),
    "IA3": lambda cfg: bool(cfg.get("init_ia3_weights", True)),
    "LOHA": lambda cfg: cfg.get("init_weights", True) is True,
}
"""Per ``peft_type``: whether PEFT's initialisation of a module it adapts is the identity (LoRA/DoRA ``B = 0``, IA3
ones, LoHa ``w2_b = 0``)."""


def identity_init(cfg: dict[str, Any]) -> bool:
    """Whether a module PEFT wraps but finds no tensors for in the file computes what the base module does."""
    return IDENTITY_INITS.get(str(cfg.get("peft_type")), lambda cfg: False)(cfg)


def init_refusal(cfg: dict[str, Any], what: str) -> SchemaError:
    """The refusal of ``what`` (modules PEFT adapts without tensors for them) under a non-identity init."""
    init = {k: cfg[k] for k in ("init_lora_weights", "init_ia3_weights", "init_weights") if k in cfg}
    return peft_unsupported("/init_lora_weights" if "init_lora_weights" in init else "/target_modules",
                            f"{what}; its weights file holds no tensors for it, so PEFT leaves it at its "
                            f"initialisation ({init or 'the default'}), which is not the identity: PEFT's outputs "
                            "on a model with that module are random")


@dataclass(frozen=True)
class Found:
    """One (layout, model prefix)'s placement and the backbone's other Linear modules PEFT adapts there."""

    placement: Placement
    others: tuple[str, ...]

    @property
    def key(self) -> tuple:
        """The placement, hashable (to compare placements)."""
        order, leave_out, feedforward, scalars = self.placement
        return tuple(order), tuple(leave_out), tuple(feedforward), scalars


def peft_placement(cfg: dict[str, Any], model_type: str, base_config: Mapping[str, Any],
                   layer_counts: tuple[int, ...], tensor_names: TensorNames | None = None) -> Placement:
    """``(target_modules, leave_out, feedforward_modules, (r, alpha) of the placed modules)`` in our terms for a PEFT
    config; the last is empty unless ``rank_pattern``/``alpha_pattern`` state per-module values.

    ``layer_counts``: layers per stack (encoder, then decoder for an encoder-decoder base); layer indices
    are global, as everywhere in adapterhub. PEFT matches full module names, which start with the prefix of the
    model class it wrapped (``bert.`` or none); every layout and prefix on which the config adapts something must
    place it the same way. ``tensor_names`` (the weights file's tensor names) settle what the config cannot: which
    prefix the adapter was saved with, and whether it holds tensors for a backbone Linear we have no slot for
    (BERT's ``pooler.dense`` under ``["dense"]``): with none, PEFT leaves that module at its initialisation, which
    computes what the base does (accepted) unless the config's init is not the identity (refused); with tensors it
    changes the module (refused: adapterhub attaches to projections only).
    """
    raw = cfg.get("target_modules")
    if raw in (None, [], ""):
        raise peft_unsupported("/target_modules", f"target_modules={raw!r}: the config names no modules to adapt")
    fam = family_of(model_type)
    if is_all_linear(raw):
        check_all_linear(cfg)
    match = PeftMatch.of(cfg, all_linear=is_all_linear(raw))
    candidates = layouts(fam, base_config, layer_counts)
    found: dict[tuple[int, str], Found] = {}
    first_error: SchemaError | None = None
    for n, layout in enumerate(candidates):
        for prefix in (*WRAPPER_PREFIXES, *fam.task_prefixes):
            try:
                hit = _place(cfg, raw, match, layout, fam, model_type, fam.other_linears(base_config), prefix)
            except SchemaError as exc:  # this layout's names match, but not in a way adapterhub can place
                first_error = first_error or exc
            else:
                if hit is not None:
                    found[n, prefix] = hit
    if not found:
        if first_error is not None:
            raise first_error
        names = sorted({p for layout in candidates for s in layout for _, p in s.projections})
        layers = "" if cfg.get("layers_to_transform") in (None, []) else (
            f" in the layers PEFT keeps: it reads a module's layer index off its name, after "
            f"{cfg.get('layers_pattern') or 'the first dotted segment followed by a number'!r} (layers_pattern), and "
            f"keeps layers_to_transform={cfg['layers_to_transform']!r}")
        raise peft_unsupported("/target_modules", f"{raw!r} matches none of the projections adapterhub can target "
                               f"on a {model_type} model ({', '.join(names)}){layers}")
    names = None
    if len({f.key for f in found.values()}) > 1 or any(f.others for f in found.values()):
        names = _module_names(tensor_names)
        if names is not None:
            saved = {key: f for key, f in found.items() if _saved_with(names, key[1], candidates[key[0]])}
            found = saved or found
    if len({f.key for f in found.values()}) > 1:
        raise peft_unsupported("/target_modules", f"{raw!r} places differently on the {model_type} models it may have "
                               "been saved from (module names with or without a task model's prefix such as "
                               f"{fam.task_prefixes[0] if fam.task_prefixes else 'model.'!r}, or as transformers "
                               "versions name them), and the adapter's tensor names do not settle which")
    others = sorted({o for f in found.values() for o in f.others})
    if others:
        _check_others(cfg, raw, others, names, model_type)
    return next(iter(found.values())).placement


def _check_others(cfg: dict[str, Any], raw: Any, others: list[str], names: list[str] | None, model_type: str) -> None:
    """Accept a config that also matches backbone Linear modules we have no slot for only where PEFT leaves them
    computing what the base does: the weights file holds no tensor for them and PEFT's init is the identity."""
    what = f"target_modules={raw!r} also matches {', '.join(others)} of a {model_type} model (PEFT adapts every " \
           "module it matches), a Linear outside the attention and feed-forward projections adapterhub attaches to"
    if names is None:
        raise peft_unsupported("/target_modules", f"{what}; whether the adapter changes it depends on its weights "
                               "file, which was not given (derive with tensor_names)")
    held = [o for o in others if any(_names_module(name, o) for name in names)]
    if held:
        raise peft_unsupported("/target_modules", f"{what}, and its weights file holds trained tensors for "
                               f"{', '.join(held)}, which adapterhub cannot place; retrain naming the projections "
                               "(or excluding those modules with exclude_modules)")
    if not identity_init(cfg):
        raise init_refusal(cfg, what)


def _module_names(tensor_names: TensorNames | None) -> list[str] | None:
    """The tensor names without PEFT's ``base_model.model.`` (None when not given)."""
    if tensor_names is None:
        return None
    return [n.removeprefix(PEFT_PREFIX) for n in tensor_names()]


def _saved_with(names: list[str], prefix: str, layout: tuple[Stack, ...]) -> bool:
    """Whether the tensors name a layer of ``layout`` under the model prefix ``prefix``."""
    starts = tuple(f"{prefix}{s.path}." for s in layout)
    return any(n.startswith(starts) for n in names)


def _names_module(name: str, path: str) -> bool:
    """Whether the tensor ``name`` belongs to the module ``path`` (relative to the backbone, a layer index ``N``)."""
    return re.search(r"(^|\.)" + re.escape(path).replace(r"\.N\.", r"\.\d+\.") + r"\.", name) is not None


def _place(cfg: dict[str, Any], raw: Any, match: PeftMatch, stacks: tuple[Stack, ...], fam: Family, model_type: str,
           others: tuple[str, ...], prefix: str) -> Found | None:
    """The placement on one layout whose module names start with ``prefix`` (see :func:`peft_placement`); None when
    the config adapts none of its projections. ``others``: the backbone's Linear modules that are no projection."""
    feedforward_names = cfg.get("feedforward_modules") or []  # PEFT: a plain suffix test, no dot boundary
    if not isinstance(feedforward_names, list) or not all(isinstance(n, str) for n in feedforward_names):
        raise peft_unsupported("/feedforward_modules", f"{feedforward_names!r} is not a list of module names")
    per_layer: list[frozenset[str]] = []
    feedforward: set[str] = set()
    targets: set[str] = set()
    scalars: set[tuple[int, float]] = set()
    for stack in stacks:
        for i in range(stack.count):
            hit: dict[str, bool] = {}
            for key, path in stack.projections:
                full = f"{stack.path}.{i}.{path}"
                matched = match(prefix + full)
                if hit.setdefault(key, matched) != matched:
                    raise peft_unsupported("/target_modules", f"{raw!r} targets only some of the {key!r} "
                                           f"projections of layer {stack.path}.{i}; adapterhub places a target on "
                                           "all of a layer's projections of that kind")
                if matched and any((prefix + full).endswith(n) for n in feedforward_names):
                    feedforward.add(key)
                if matched and any(cfg.get(k) for k in PATTERN_KEYS):
                    scalars.add(_scalars(cfg, full, ("", *fam.task_prefixes)))
            keys = frozenset(k for k, m in hit.items() if m)
            per_layer.append(keys)
            targets |= keys
    if not targets:
        return None
    counts = max((s.count for s in stacks), default=0)
    hit_others = tuple(p for p in others if any(match(prefix + p.replace(".N.", f".{i}."))
                                                 for i in (range(counts) if ".N." in p else (0,))))
    _check_names(raw, stacks, others, model_type)
    covered = [keys for keys in per_layer if keys]
    if any(keys != covered[0] for keys in covered):
        raise peft_unsupported("/target_modules", f"{raw!r} targets different projections in different layers; "
                               "adapterhub places one set of targets on every layer it adapts")
    leave_out = [i for i, keys in enumerate(per_layer) if not keys]
    order = [k for k in NEUTRAL_ORDER if k in targets]
    return Found((order, leave_out, [k for k in order if k in feedforward], frozenset(scalars)), hit_others)


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


def _check_names(raw: Any, stacks: tuple[Stack, ...], others: tuple[str, ...], model_type: str) -> None:
    """Refuse listed names that match no projection of ours and no other Linear of the backbone (those are judged
    by what the weights file holds: :func:`peft_placement`), so PEFT would adapt a module we know nothing of."""
    if not isinstance(raw, list):
        return
    paths = [f"{s.path}.0.{p}" for s in stacks for _, p in s.projections] + [o.replace(".N.", ".0.") for o in others]
    for name in raw:
        if not any(p == name or p.endswith("." + name) or name.endswith("." + p.split(".0.", 1)[-1]) for p in paths):
            raise peft_unsupported("/target_modules", f"{name!r} is not a projection adapterhub can target on a "
                                   f"{model_type} model (it would adapt a module outside the attention and "
                                   "feed-forward projections)")
