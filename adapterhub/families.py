"""The architecture table: where adapters attach in each supported model family (torch-free).

Adapters never patch transformers classes. Each family names, relative to one transformer layer,
the submodules whose inputs and outputs the runtime hooks. Module *names* have stayed stable
across transformers 4.57 and 5.x even where forward signatures and attention backends changed,
so hooks on these modules are version-robust. Adding a family is adding an entry to ``FAMILIES``: every
fact about a family that code elsewhere needs (where the ``adapters`` library names its adapters, which
methods its layers support, what its attention shares across layers, where task models keep the
backbone) is a :class:`Family` field, so no module outside this one tests a family's name.

The table lives below every other layer and needs no torch: the runtime binds it to a model instance
(``adapterhub.runtime.arch.bind``), and deriving a manifest from a Hub repo's PEFT config places the
targets from the same entries with only the base's ``config.json`` (``adapterhub.manifest.peft_targets``).
So a family's layout is a function of a :class:`Shape` (decoder layer or not, and the family's
:class:`Trait` s), which the runtime reads off a layer module and derivation reads off a config.

A bottleneck :class:`Site` is one sublayer (attention or feed-forward) of a layer: ``output`` is the
module whose output ``h`` is the sublayer result before the residual add, ``residual`` names the
module whose first positional argument is the sublayer input ``x`` (read through a forward
pre-hook), and ``layer_norm`` is the post-LN module that the model applies to ``h + x`` (post-LN
families only; pre-LN families have none there).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import UnsupportedArchitectureError


@dataclass(frozen=True)
class Site:
    """One bottleneck insertion point of a layer (paths relative to the layer module)."""

    output: str
    residual: str
    residual_arg: int = 0
    residual_kwarg: str | None = None
    layer_norm: str | None = None


@dataclass(frozen=True)
class Slot:
    """One projection targeted by LoRA/DoRA/IA3: a Linear/Conv1D and, for fused QKV, its output slice."""

    key: str
    path: str
    part: int | None = None
    parts: int = 1


@dataclass(frozen=True)
class PrefixSite:
    """One attention module that prefix tuning extends (paths relative to the layer module).

    ``group`` is the library's location key without ``_prefix`` (one reparametrization MLP per group:
    ``self``, ``encoder`` for T5's encoder, ``cross``); ``key`` names the per-layer flat tensors
    (``self`` or ``cross``). ``k``/``v`` are the key/value projections (used only where the
    attention module computes attention itself instead of through transformers' attention
    interface); ``pad_kv`` means the module takes separate key/value inputs that are padded so its
    own key-length bookkeeping sees the prefix (DistilBERT); ``causal`` marks causal self-attention.
    """

    group: str
    key: str
    attention: str
    k: str = ""
    v: str = ""
    causal: bool = False
    pad_kv: bool = False


@dataclass(frozen=True)
class Trait:
    """A yes/no fact about a family's layers that changes its layout (T5's gated feed-forward).

    On a bound model it is read off each layer: ``attribute`` (a dotted path relative to the layer; an
    integer part, ``-1`` too, indexes a container) holds when it resolves to something other than
    ``None``/``False``. From a base's ``config.json`` alone
    (deriving a manifest, no torch) ``config`` tells it; ``config=None`` means no config can (the
    installed transformers version decides), and derivation then considers either layout.
    """

    name: str
    attribute: str
    config: Callable[[Mapping[str, Any]], bool] | None = None

    def holds_on(self, layer: object) -> bool:
        value: Any = layer
        for part in self.attribute.split("."):
            if part.lstrip("-").isdigit():
                try:
                    value = value[int(part)]
                except (IndexError, KeyError, TypeError):
                    return False
            else:
                value = getattr(value, part, None)
            if value is None:
                return False
        return value is not False


@dataclass(frozen=True)
class Shape:
    """The torch-free description of one layer that a family's layout functions read."""

    decoder: bool = False
    traits: frozenset[str] = frozenset()

    def has(self, trait: str) -> bool:
        return trait in self.traits


LIBRARY_BOTTLENECK_SITES: Mapping[str, str] = MappingProxyType(
    {"attention_adapters.adapters": "attention", "output_adapters.adapters": "ffn"})
"""The ``adapters`` library's bottleneck containers (relative to a layer) -> our site, where a family
has no layout of its own (the library's mixin layers)."""
LIBRARY_LORA_LOCATIONS: Mapping[str, str] = MappingProxyType({"intermediate": "ffn_in", "output": "ffn_out"})
"""The library's LoRA locations -> our slot keys, where a family does not wrap them differently."""


@dataclass(frozen=True)
class Family:
    """One architecture family: layer containers, bottleneck sites, projection slots and its other facts.

    ``sites``, ``slots``, ``attention`` and ``prefix`` map a layer's :class:`Shape` to its layout;
    ``traits`` are the facts a shape carries besides being a decoder layer.
    ``library_bottleneck_sites`` and ``library_lora_locations`` translate the ``adapters`` library's
    names for this family into ours. ``causal`` marks decoder-only families (every self-attention
    causal). ``token_routing`` means a layer's forward is correct on any routed sub-sequence given the
    matching 4-D attention mask and position ids/embeddings (what CoDA needs); ``decoder_flags`` names
    the model-config flags that turn the family's encoder layers into decoder layers, which that
    routing does not cover.
    ``shared_position_bias`` is the attention module (relative to a layer) whose relative position
    bias, computed in each stack's first layer, every layer of that stack reuses (T5).
    ``task_prefixes`` are where transformers' task models of the family keep the backbone (their
    ``base_model_prefix``, with the dot): a PEFT regular expression is matched against full module names.
    """

    name: str
    model_types: tuple[str, ...]
    stacks: tuple[str, ...]
    sites: Callable[[Shape], dict[str, Site]]
    slots: Callable[[Shape], dict[str, tuple[Slot, ...]]]
    attention: Callable[[Shape], tuple[str, ...]] = field(default=lambda shape: ())
    conv1d: bool = False
    prefix: Callable[[Shape], tuple[PrefixSite, ...]] = field(default=lambda shape: ())
    library_bottleneck_sites: Mapping[str, str] = field(default_factory=lambda: LIBRARY_BOTTLENECK_SITES, hash=False)
    library_lora_locations: Mapping[str, str] = field(default_factory=lambda: LIBRARY_LORA_LOCATIONS, hash=False)
    causal: bool = False
    token_routing: bool = False
    decoder_flags: tuple[str, ...] = ()
    shared_position_bias: str | None = None
    traits: tuple[Trait, ...] = ()
    task_prefixes: tuple[str, ...] = ()

    def is_decoder_stack(self, stack: str) -> bool:
        """Whether ``stack``'s layers are the decoder layers of an encoder-decoder model."""
        return stack.startswith("decoder")

    def shape_of(self, layer: object, decoder: bool) -> Shape:
        """The shape of one layer module of a bound model (its traits read off the module)."""
        return Shape(decoder, frozenset(t.name for t in self.traits if t.holds_on(layer)))

    def trait_sets(self, config: Mapping[str, Any]) -> tuple[frozenset[str], ...]:
        """Every set of traits a model with this ``config.json`` may have: one, unless a trait is not told by
        the config (then each possibility, the trait's absence first)."""
        told = frozenset(t.name for t in self.traits if t.config is not None and t.config(config))
        open_traits = [t.name for t in self.traits if t.config is None]
        return tuple(told | {name for name, on in zip(open_traits, flags, strict=True) if on}
                     for flags in itertools.product((False, True), repeat=len(open_traits)))

    def projections(self, shape: Shape) -> tuple[tuple[str, str], ...]:
        """``(neutral key, module path relative to the layer)`` of every projection a layer of ``shape``
        offers; a fused projection appears once per key, a decoder's cross-attention under the plain key."""
        return tuple((key, slot.path) for key, slots in self.slots(shape).items() for slot in slots)


def _bert_sites(shape: Shape) -> dict[str, Site]:
    return {
        "attention": Site("attention.output.dropout", "attention.output", 1, "input_tensor",
                          "attention.output.LayerNorm"),
        "ffn": Site("output.dropout", "output", 1, "input_tensor", "output.LayerNorm"),
    }


def _bert_slots(shape: Shape) -> dict[str, tuple[Slot, ...]]:
    return {
        "q": (Slot("q", "attention.self.query"),), "k": (Slot("k", "attention.self.key"),),
        "v": (Slot("v", "attention.self.value"),), "o": (Slot("o", "attention.output.dense"),),
        "ffn_in": (Slot("ffn_in", "intermediate.dense"),), "ffn_out": (Slot("ffn_out", "output.dense"),),
    }


def _distilbert_sites(shape: Shape) -> dict[str, Site]:
    return {
        "attention": Site("attention", "", 0, None, "sa_layer_norm"),
        "ffn": Site("ffn", "ffn", 0, None, "output_layer_norm"),
    }


def _distilbert_slots(shape: Shape) -> dict[str, tuple[Slot, ...]]:
    return {
        "q": (Slot("q", "attention.q_lin"),), "k": (Slot("k", "attention.k_lin"),),
        "v": (Slot("v", "attention.v_lin"),), "o": (Slot("o", "attention.out_lin"),),
        "ffn_in": (Slot("ffn_in", "ffn.lin1"),), "ffn_out": (Slot("ffn_out", "ffn.lin2"),),
    }


def _gpt2_sites(shape: Shape) -> dict[str, Site]:
    return {"attention": Site("attn", "ln_1"), "ffn": Site("mlp", "ln_2")}


def _gpt2_slots(shape: Shape) -> dict[str, tuple[Slot, ...]]:
    return {
        "q": (Slot("q", "attn.c_attn", 0, 3),), "k": (Slot("k", "attn.c_attn", 1, 3),),
        "v": (Slot("v", "attn.c_attn", 2, 3),), "o": (Slot("o", "attn.c_proj"),),
        "ffn_in": (Slot("ffn_in", "mlp.c_fc"),), "ffn_out": (Slot("ffn_out", "mlp.c_proj"),),
    }


def _llama_sites(shape: Shape) -> dict[str, Site]:
    return {"attention": Site("self_attn", "input_layernorm"), "ffn": Site("mlp", "post_attention_layernorm")}


def _llama_slots(shape: Shape) -> dict[str, tuple[Slot, ...]]:
    return {
        "q": (Slot("q", "self_attn.q_proj"),), "k": (Slot("k", "self_attn.k_proj"),),
        "v": (Slot("v", "self_attn.v_proj"),), "o": (Slot("o", "self_attn.o_proj"),),
        "ffn_gate": (Slot("ffn_gate", "mlp.gate_proj"),), "ffn_in": (Slot("ffn_in", "mlp.up_proj"),),
        "ffn_out": (Slot("ffn_out", "mlp.down_proj"),),
    }


def _t5_ffn_index(shape: Shape) -> int:
    """The feed-forward sublayer comes after self-attention (and the decoder's cross-attention)."""
    return 2 if shape.decoder else 1


def _t5_sites(shape: Shape) -> dict[str, Site]:
    f = _t5_ffn_index(shape)
    return {"attention": Site("layer.0.dropout", "layer.0.layer_norm"),
            "ffn": Site(f"layer.{f}.dropout", f"layer.{f}.layer_norm")}


def _t5_slots(shape: Shape) -> dict[str, tuple[Slot, ...]]:
    f = _t5_ffn_index(shape)
    out: dict[str, tuple[Slot, ...]] = {}
    for key in ("q", "k", "v", "o"):
        slots = [Slot(key, f"layer.0.SelfAttention.{key}")]
        if shape.decoder:
            slots.append(Slot(f"cross_{key}", f"layer.1.EncDecAttention.{key}"))
        out[key] = tuple(slots)
    if shape.has("gated_ffn"):
        out["ffn_gate"] = (Slot("ffn_gate", f"layer.{f}.DenseReluDense.wi_0"),)
        out["ffn_in"] = (Slot("ffn_in", f"layer.{f}.DenseReluDense.wi_1"),)
    else:
        out["ffn_in"] = (Slot("ffn_in", f"layer.{f}.DenseReluDense.wi"),)
    out["ffn_out"] = (Slot("ffn_out", f"layer.{f}.DenseReluDense.wo"),)
    return out


def _t5_prefix(shape: Shape) -> tuple[PrefixSite, ...]:
    if not shape.decoder:
        return (PrefixSite("encoder", "self", "layer.0.SelfAttention", "layer.0.SelfAttention.k",
                           "layer.0.SelfAttention.v"),)
    return (PrefixSite("self", "self", "layer.0.SelfAttention", "layer.0.SelfAttention.k", "layer.0.SelfAttention.v",
                       causal=True),
            PrefixSite("cross", "cross", "layer.1.EncDecAttention", "layer.1.EncDecAttention.k",
                       "layer.1.EncDecAttention.v"))


def _t5_gated(config: Mapping[str, Any]) -> bool:
    """T5 v1.1 / mT5 / Flan-T5: ``feed_forward_proj`` ``gated-gelu`` (two input projections, ``wi_0``/``wi_1``)."""
    return str(config.get("feed_forward_proj") or "relu").startswith("gated-")


FAMILIES: tuple[Family, ...] = (
    Family("bert", ("bert", "roberta", "xlm-roberta"), ("encoder.layer",), _bert_sites, _bert_slots,
           lambda shape: ("attention.self",),
           prefix=lambda shape: (PrefixSite("self", "self", "attention.self", "attention.self.key",
                                            "attention.self.value"),),
           library_bottleneck_sites=MappingProxyType({"attention.output.adapters": "attention",
                                                      "output.adapters": "ffn"}),
           token_routing=True, decoder_flags=("is_decoder", "add_cross_attention"),
           task_prefixes=("bert.", "roberta.")),
    Family("distilbert", ("distilbert",), ("transformer.layer",), _distilbert_sites, _distilbert_slots,
           lambda shape: ("attention",),
           prefix=lambda shape: (PrefixSite("self", "self", "attention", "attention.k_lin", "attention.v_lin",
                                            pad_kv=True),),
           task_prefixes=("distilbert.",)),
    Family("gpt2", ("gpt2",), ("h",), _gpt2_sites, _gpt2_slots, lambda shape: ("attn",), conv1d=True,
           prefix=lambda shape: (PrefixSite("self", "self", "attn", causal=True),), causal=True,
           task_prefixes=("transformer.",)),
    Family("llama", ("llama", "mistral", "qwen2"), ("layers",), _llama_sites, _llama_slots,
           lambda shape: ("self_attn",),
           prefix=lambda shape: (PrefixSite("self", "self", "self_attn", causal=True),),
           # the library wraps down_proj as "intermediate" and up_proj as "output"
           library_lora_locations=MappingProxyType({"intermediate": "ffn_out", "output": "ffn_in"}),
           causal=True, token_routing=True, task_prefixes=("model.",)),
    Family("t5", ("t5",), ("encoder.block", "decoder.block"), _t5_sites, _t5_slots,
           lambda shape: ("layer.0.SelfAttention",), prefix=_t5_prefix,
           library_bottleneck_sites=MappingProxyType({"layer.0.adapters": "attention", "layer.1.adapters": "ffn",
                                                      "layer.2.adapters": "ffn"}),
           shared_position_bias="layer.0.SelfAttention",
           traits=(Trait("gated_ffn", "layer.-1.DenseReluDense.wi_1", _t5_gated),),
           task_prefixes=("transformer.",)),
)
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(t for f in FAMILIES for t in f.model_types)


def find_family(model_type: str) -> Family | None:
    """The family whose entry lists ``model_type``, or None."""
    return next((fam for fam in FAMILIES if model_type in fam.model_types), None)


def supported_model_types() -> tuple[str, ...]:
    """The model types of every family in the table (read at call time)."""
    return tuple(t for f in FAMILIES for t in f.model_types)


def family_for(model_type: str) -> Family:
    """The family of ``model_type``; :class:`UnsupportedArchitectureError` naming the supported ones otherwise."""
    fam = find_family(model_type)
    if fam is None:
        raise UnsupportedArchitectureError(
            f"model_type {model_type!r} has no entry in the adapterhub architecture table",
            hint="supported: " + ", ".join(supported_model_types()))
    return fam
