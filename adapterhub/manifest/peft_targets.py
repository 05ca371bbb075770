"""Which of our projections a PEFT config targets, from the config alone (no model, no tensors).

PEFT picks modules by name: a list ``target_modules`` matches a module whose path equals an entry or
ends with ``.<entry>``, a string is a regular expression the whole path must match, and
``layers_to_transform`` keeps only the layers with those indices (counted per stack). Applying the same
rules to each family's projection paths gives our architecture-neutral targets and ``leave_out``, as
the runtime's PEFT reader gets them from the tensor names. :data:`PROJECTIONS` lists those paths per
model type; a test holds it to the runtime's architecture table (``adapterhub.runtime.arch``), which
stays the one place that binds them to a model. What cannot be placed (a module that is no projection
of ours, a target set that differs between layers) is refused with the key named.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .peft_config import peft_unsupported

NEUTRAL_ORDER = ("q", "k", "v", "o", "ffn_in", "ffn_gate", "ffn_out")


@dataclass(frozen=True)
class Stack:
    """One stack of layers: its path (relative to the backbone) and each layer's projections."""

    path: str
    projections: tuple[tuple[str, str], ...]
    """``(neutral key, module path relative to the layer)``; a fused projection appears once per key."""


def _bert() -> tuple[Stack, ...]:
    return (Stack("encoder.layer", (("q", "attention.self.query"), ("k", "attention.self.key"),
                                    ("v", "attention.self.value"), ("o", "attention.output.dense"),
                                    ("ffn_in", "intermediate.dense"), ("ffn_out", "output.dense"))),)


def _distilbert() -> tuple[Stack, ...]:
    return (Stack("transformer.layer", (("q", "attention.q_lin"), ("k", "attention.k_lin"), ("v", "attention.v_lin"),
                                        ("o", "attention.out_lin"), ("ffn_in", "ffn.lin1"), ("ffn_out", "ffn.lin2"))),)


def _gpt2() -> tuple[Stack, ...]:
    return (Stack("h", (("q", "attn.c_attn"), ("k", "attn.c_attn"), ("v", "attn.c_attn"), ("o", "attn.c_proj"),
                        ("ffn_in", "mlp.c_fc"), ("ffn_out", "mlp.c_proj"))),)


def _llama() -> tuple[Stack, ...]:
    return (Stack("layers", (("q", "self_attn.q_proj"), ("k", "self_attn.k_proj"), ("v", "self_attn.v_proj"),
                             ("o", "self_attn.o_proj"), ("ffn_gate", "mlp.gate_proj"), ("ffn_in", "mlp.up_proj"),
                             ("ffn_out", "mlp.down_proj"))),)


def _t5(gated: bool) -> tuple[Stack, ...]:
    def stack(path: str, decoder: bool) -> Stack:
        f = 2 if decoder else 1
        attn = [(k, f"layer.0.SelfAttention.{k}") for k in ("q", "k", "v", "o")]
        if decoder:
            attn += [(k, f"layer.1.EncDecAttention.{k}") for k in ("q", "k", "v", "o")]
        ffn = ([("ffn_gate", f"layer.{f}.DenseReluDense.wi_0"), ("ffn_in", f"layer.{f}.DenseReluDense.wi_1")]
               if gated else [("ffn_in", f"layer.{f}.DenseReluDense.wi")])
        return Stack(path, (*attn, *ffn, ("ffn_out", f"layer.{f}.DenseReluDense.wo")))
    return (stack("encoder.block", False), stack("decoder.block", True))


def projections(model_type: str, base_config: Mapping[str, Any]) -> tuple[Stack, ...]:
    """The stacks of ``model_type`` (the base's ``config.json`` decides variants such as T5's gated FFN)."""
    if model_type in ("bert", "roberta", "xlm-roberta"):
        return _bert()
    if model_type == "distilbert":
        return _distilbert()
    if model_type == "gpt2":
        return _gpt2()
    if model_type in ("llama", "mistral", "qwen2"):
        return _llama()
    if model_type == "t5":
        return _t5(str(base_config.get("feed_forward_proj") or "relu").startswith("gated-"))
    raise peft_unsupported("/base_model_name_or_path", f"the base's model_type {model_type!r} has no entry in "
                           "adapterhub's architecture table (bert, roberta, xlm-roberta, distilbert, gpt2, llama, "
                           "mistral, qwen2, t5)")


def library_lora_locations(model_type: str) -> dict[str, str]:
    """The ``adapters`` library's LoRA locations -> our slot keys (it wraps Llama's ``down_proj`` as
    ``intermediate`` and ``up_proj`` as ``output``), as ``Family.library_lora_locations`` states them."""
    if model_type in ("llama", "mistral", "qwen2"):
        return {"intermediate": "ffn_out", "output": "ffn_in"}
    return {"intermediate": "ffn_in", "output": "ffn_out"}


def _matcher(targets: Any, key: str) -> Any:
    """PEFT's module-name test for ``targets`` (list: equal or ``.``-suffix; string: full regex match)."""
    if isinstance(targets, str):
        try:
            pattern = re.compile(targets)
        except re.error as exc:
            raise peft_unsupported(f"/{key}", f"{targets!r} is not a regular expression: {exc}") from None
        return lambda path, prefixes: any(pattern.fullmatch(p + path) for p in prefixes)
    if isinstance(targets, list) and all(isinstance(t, str) for t in targets):
        names = list(targets)
        return lambda path, prefixes: any(path == t or path.endswith("." + t) or t.endswith("." + path)
                                          for t in names)
    raise peft_unsupported(f"/{key}", f"{targets!r} is neither a list of module names nor a regular expression")


def peft_placement(cfg: dict[str, Any], model_type: str, base_config: Mapping[str, Any],
                   layer_counts: tuple[int, ...]) -> tuple[list[str], list[int], list[str]]:
    """``(target_modules, leave_out, feedforward_modules)`` in our terms for a PEFT config.

    ``layer_counts``: layers per stack (encoder, then decoder for an encoder-decoder base); layer indices
    are global, as everywhere in adapterhub.
    """
    raw = cfg.get("target_modules")
    if raw in (None, [], "") or raw == "all-linear":
        raise peft_unsupported("/target_modules", f"target_modules={raw!r}: the targets cannot be told from the "
                               "config (PEFT resolves this against the model); save the adapter with explicit "
                               "target_modules")
    if cfg.get("exclude_modules") not in (None, [], ""):
        raise peft_unsupported("/exclude_modules", "exclude_modules is not supported when deriving a manifest: "
                               "state the targets in target_modules")
    match = _matcher(raw, "target_modules")
    ff_raw = cfg.get("feedforward_modules") or []
    ff_match = _matcher(ff_raw, "feedforward_modules") if ff_raw else None
    keep = cfg.get("layers_to_transform")
    keep = [keep] if isinstance(keep, int) else keep
    if keep is not None and not (isinstance(keep, list) and all(isinstance(i, int) for i in keep)):
        raise peft_unsupported("/layers_to_transform", f"{keep!r} is not a layer index or a list of them")
    stacks = projections(model_type, base_config)
    prefixes = ("", f"{model_type.replace('-', '_')}.", "model.", "transformer.", "base_model.model.")
    per_layer: list[frozenset[str]] = []
    feedforward: set[str] = set()
    targets: set[str] = set()
    for stack, count in zip(stacks, layer_counts, strict=False):
        for i in range(count):
            hit: dict[str, bool] = {}
            for key, path in stack.projections:
                full = f"{stack.path}.{i}.{path}"
                matched = bool(match(full, prefixes)) and (keep is None or i in keep)
                if hit.setdefault(key, matched) != matched:
                    raise peft_unsupported("/target_modules", f"{raw!r} targets only some of the {key!r} "
                                           f"projections of layer {stack.path}.{i}; adapterhub places a target on "
                                           "all of a layer's projections of that kind")
                if matched and ff_match is not None and ff_match(full, prefixes):
                    feedforward.add(key)
            keys = frozenset(k for k, m in hit.items() if m)
            per_layer.append(keys)
            targets |= keys
    if not targets:
        raise peft_unsupported("/target_modules", f"{raw!r} matches none of the projections adapterhub can target "
                               f"on a {model_type} model ({', '.join(sorted({p for s in stacks for _, p in s.projections}))})")
    _check_names(raw, stacks, model_type)
    covered = [keys for keys in per_layer if keys]
    if any(keys != covered[0] for keys in covered):
        raise peft_unsupported("/target_modules", f"{raw!r} targets different projections in different layers; "
                               "adapterhub places one set of targets on every layer it adapts")
    leave_out = [i for i, keys in enumerate(per_layer) if not keys]
    order = [k for k in NEUTRAL_ORDER if k in targets]
    return order, leave_out, [k for k in order if k in feedforward]


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
