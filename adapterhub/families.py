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
:class:`Trait` entries), which the runtime reads off a layer module and derivation reads off a config.

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

from .errors import ConflictError, InvalidArgumentError, NotFoundError, UnsupportedArchitectureError


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
    """One projection targeted by LoRA/DoRA/IA3: a Linear/Conv1D and, for fused QKV, its output slice.

    A fused projection is also offered whole, under one of :data:`FUSED_KEYS` (``parts == 1``): that is what a
    PEFT adapter on the fused module adapts, and the only form of a fused module whose q/k/v rows are not
    contiguous (GPT-NeoX interleaves them per head) or not equal thirds (grouped-query attention).
    """

    key: str
    path: str
    part: int | None = None
    parts: int = 1


FUSED_KEYS: tuple[str, ...] = ("qkv", "ffn_gate_in")
"""Neutral keys of whole fused projections: q, k and v in one module; the FFN's gate and input in one module."""


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
    equals: object = None
    """When set, the trait holds when the attribute equals it (a count, say) instead."""

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
        return value is not False if self.equals is None else value == self.equals


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
LIBRARY_PREFIX_LOCATIONS: Mapping[str, str] = MappingProxyType(
    {"self_prefix": "self", "self": "self", "encoder_prefix": "encoder", "cross_prefix": "cross"})
"""The library's prefix-tuning location keys -> our :class:`PrefixSite` groups (DistilBERT says ``self``)."""
HIDDEN_SIZE_KEYS = ("hidden_size", "d_model", "n_embd", "dim")
LAYER_COUNT_KEYS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers")
"""transformers' aliases of a config's hidden size and layer count, in its order."""


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
    ``other_linears`` names the backbone's Linear/Conv1D modules that no slot covers (PEFT's ``all-linear``).
    ``stacks`` lists the layer containers in layer-numbering order; alternatives for different
    transformers versions may be listed side by side (only those present on a model are bound).
    ``decoder_stacks`` are those among them whose layers are decoder layers of an encoder-decoder
    model: they are numbered after the encoder's, and their count is the config's decoder layers.
    ``towers`` maps each stack of a model with several towers (CLIP's text and vision encoders) to the key of
    the model config holding that tower's own config (``text_config``): each tower has its own layer count and
    width, and its layers are numbered after the previous tower's, in ``stacks`` order (the ``adapters`` library's
    numbering). ``library_prefix_locations`` translates the library's prefix-tuning location keys into this
    family's :class:`PrefixSite` groups (for CLIP the library prefixes them with the tower's model type).
    ``refuses`` maps a method name to why it cannot be placed on this family: attaching it raises
    :class:`UnsupportedArchitectureError` with that reason. ``notes`` maps a method name to a
    remark for the families x methods table in ``docs/runtime.md`` (a version-dependent limit).
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
    decoder_stacks: tuple[str, ...] = ()
    refuses: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    notes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    traits: tuple[Trait, ...] = ()
    task_prefixes: tuple[str, ...] = ()
    other_linears: Callable[[Mapping[str, Any]], tuple[str, ...]] = field(default=lambda config: (), hash=False)
    """Linear/Conv1D modules of the backbone that are no projection slot, for a base's ``config.json`` (paths
    relative to the backbone, a layer's index written ``N``). PEFT's ``target_modules="all-linear"`` adapts
    every Linear/Conv1D, these too, so a PEFT config saying so cannot be placed where this is not empty."""
    towers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    library_prefix_locations: Mapping[str, str] = field(default_factory=lambda: LIBRARY_PREFIX_LOCATIONS,
                                                        hash=False)

    def tower_config(self, config: Any, stack: str) -> Any:
        """The config of ``stack``'s tower (an attribute or a ``config.json`` key of the model config), or the
        model config itself for a family of one tower."""
        key = self.towers.get(stack)
        if key is None:
            return config
        return config.get(key) if isinstance(config, Mapping) else getattr(config, key, None)

    def tower_counts(self, config: Mapping[str, Any]) -> tuple[int, ...] | None:
        """Each tower's layer count from a ``config.json`` (None when a tower states none, or for one tower)."""
        if not self.towers:
            return None
        counts = [config_int(self.tower_config(config, stack) or {}, *LAYER_COUNT_KEYS) for stack in self.stacks]
        return None if any(c is None for c in counts) else tuple(c for c in counts if c is not None)

    def refusal(self, method: str) -> UnsupportedArchitectureError | None:
        """The typed error for attaching ``method`` here, or None when the family places it."""
        reason = self.refuses.get(method)
        if reason is None:
            return None
        return UnsupportedArchitectureError(
            f"{method} cannot be placed on {self.name} models ({', '.join(self.model_types)}): {reason}",
            hint="see the families x methods table in docs/runtime.md for what this family supports")

    def is_decoder_stack(self, stack: str) -> bool:
        """Whether ``stack``'s layers are the decoder layers of an encoder-decoder model."""
        return stack in self.decoder_stacks

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
        """``(neutral key, module path relative to the layer)`` of every module a layer of ``shape`` offers as a
        whole, as PEFT adapts modules: a fused projection under its whole key (not its slices), a decoder's
        cross-attention under the plain key."""
        slots = [(key, slot) for key, group in self.slots(shape).items() for slot in group]
        whole = {slot.path for _, slot in slots if slot.parts == 1}
        return tuple((key, slot.path) for key, slot in slots if slot.parts == 1 or slot.path not in whole)


def config_int(config: Any, *names: str) -> int | None:
    """The first of ``names`` a config (a transformers config or a ``config.json`` mapping) states as an integer."""
    for name in names:
        value = config.get(name) if isinstance(config, Mapping) else getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


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
        "v": (Slot("v", "attn.c_attn", 2, 3),), "qkv": (Slot("qkv", "attn.c_attn"),),
        "o": (Slot("o", "attn.c_proj"),),
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



def _proj_slots(attn: str, names: tuple[str, str, str, str], ffn: tuple[str, ...],
                cross: str | None = None) -> dict[str, tuple[Slot, ...]]:
    """Slots of a layer with separate q/k/v/o projections under ``attn`` (and ``cross`` for the decoder's
    cross-attention, as ``cross_*``) and FFN projections ``(ffn_in, ffn_out)`` or ``(ffn_gate, ffn_in, ffn_out)``."""
    out: dict[str, tuple[Slot, ...]] = {}
    for key, name in zip(("q", "k", "v", "o"), names, strict=True):
        slots = [Slot(key, f"{attn}.{name}")]
        if cross:
            slots.append(Slot(f"cross_{key}", f"{cross}.{name}"))
        out[key] = tuple(slots)
    for key, path in zip(("ffn_gate", "ffn_in", "ffn_out")[3 - len(ffn):], ffn, strict=True):
        out[key] = (Slot(key, path),)
    return out


def _deberta_slots(shape: Shape) -> dict[str, tuple[Slot, ...]]:
    out = _bert_slots(shape)
    if shape.has("fused_qkv"):  # DeBERTa v1: q/k/v fused per head, interleaved: no slices, only the whole
        for key in ("q", "k", "v"):
            del out[key]
        out["qkv"] = (Slot("qkv", "attention.self.in_proj"),)
    else:
        out.update({k: (Slot(k, f"attention.self.{n}_proj"),) for k, n in (("q", "query"), ("k", "key"),
                                                                           ("v", "value"))})
    return out


def _deberta_v1(config: Mapping[str, Any]) -> bool:
    """DeBERTa v1 (``deberta``) fuses q/k/v in ``in_proj``; DeBERTa v2/v3 (``deberta-v2``) keeps them apart."""
    return config.get("model_type") == "deberta"


def _bart_sites(shape: Shape) -> dict[str, Site]:
    """Post-LN BART: ``LN(x + h)``; ``x`` is the self-attention's and ``fc1``'s input."""
    return {"attention": Site("self_attn", "self_attn", 0, "hidden_states", "self_attn_layer_norm"),
            "ffn": Site("fc2", "fc1", 0, None, "final_layer_norm")}


def _mbart_sites(shape: Shape) -> dict[str, Site]:
    """Pre-LN mBART: ``x + h``; ``x`` is the input of the LayerNorm in front of each sublayer."""
    return {"attention": Site("self_attn", "self_attn_layer_norm"), "ffn": Site("fc2", "final_layer_norm")}


def _bart_slots(shape: Shape) -> dict[str, tuple[Slot, ...]]:
    return _proj_slots("self_attn", ("q_proj", "k_proj", "v_proj", "out_proj"), ("fc1", "fc2"),
                       "encoder_attn" if shape.decoder else None)


def _bart_prefix(shape: Shape) -> tuple[PrefixSite, ...]:
    if not shape.decoder:
        return (PrefixSite("encoder", "self", "self_attn"),)
    return (PrefixSite("self", "self", "self_attn", causal=True), PrefixSite("cross", "cross", "encoder_attn"))


def _opt_sites(shape: Shape) -> dict[str, Site]:
    return _mbart_sites(shape) if shape.has("pre_ln") else _bart_sites(shape)


def _opt_slots(shape: Shape) -> dict[str, tuple[Slot, ...]]:
    return _proj_slots("self_attn", ("q_proj", "k_proj", "v_proj", "out_proj"), ("fc1", "fc2"))


def _opt_pre_ln(config: Mapping[str, Any]) -> bool:
    """OPT normalises before each sublayer unless ``do_layer_norm_before`` is false (OPT-350m)."""
    return config.get("do_layer_norm_before", True) is not False


def _parallel_sites(norm: str, attn: str) -> Callable[[Shape], dict[str, Site]]:
    """GPT-J/Phi: attention and MLP both read ``norm(x)`` and the layer returns ``x + attn + mlp``."""
    return lambda shape: {"attention": Site(attn, norm), "ffn": Site("mlp", norm)}


def _gptj_slots(shape: Shape) -> dict[str, tuple[Slot, ...]]:
    return _proj_slots("attn", ("q_proj", "k_proj", "v_proj", "out_proj"), ("mlp.fc_in", "mlp.fc_out"))


def _phi_slots(shape: Shape) -> dict[str, tuple[Slot, ...]]:
    return _proj_slots("self_attn", ("q_proj", "k_proj", "v_proj", "dense"), ("mlp.fc1", "mlp.fc2"))


def _gemma2_sites(shape: Shape) -> dict[str, Site]:
    """Gemma 2/3 normalise each sublayer's output (``post_*_layernorm``) before the residual add."""
    return {"attention": Site("post_attention_layernorm", "input_layernorm"),
            "ffn": Site("post_feedforward_layernorm", "pre_feedforward_layernorm")}


def _modernbert_sites(shape: Shape) -> dict[str, Site]:
    return {"attention": Site("attn", "attn_norm"), "ffn": Site("mlp", "mlp_norm")}


def _modernbert_slots(shape: Shape) -> dict[str, tuple[Slot, ...]]:
    # Wqkv's rows are q, k, v (each heads x head_dim); Wi's are the FFN input, then its gate
    return {"q": (Slot("q", "attn.Wqkv", 0, 3),), "k": (Slot("k", "attn.Wqkv", 1, 3),),
            "v": (Slot("v", "attn.Wqkv", 2, 3),), "qkv": (Slot("qkv", "attn.Wqkv"),), "o": (Slot("o", "attn.Wo"),),
            "ffn_in": (Slot("ffn_in", "mlp.Wi", 0, 2),), "ffn_gate": (Slot("ffn_gate", "mlp.Wi", 1, 2),),
            "ffn_gate_in": (Slot("ffn_gate_in", "mlp.Wi"),),
            "ffn_out": (Slot("ffn_out", "mlp.Wo"),)}


def _vit_sites(shape: Shape) -> dict[str, Site]:
    if shape.has("mlp_layout"):  # transformers 5.x: attention, then mlp, one shared dropout module
        return {"attention": Site("attention", "layernorm_before"), "ffn": Site("mlp", "layernorm_after")}
    # 4.x: ViTOutput adds the residual (its second argument) itself
    return {"attention": Site("attention", "layernorm_before"),
            "ffn": Site("output.dropout", "output", 1, "input_tensor")}


def _vit_slots(shape: Shape) -> dict[str, tuple[Slot, ...]]:
    if shape.has("mlp_layout"):
        return _proj_slots("attention", ("q_proj", "k_proj", "v_proj", "o_proj"), ("mlp.fc1", "mlp.fc2"))
    return {"q": (Slot("q", "attention.attention.query"),), "k": (Slot("k", "attention.attention.key"),),
            "v": (Slot("v", "attention.attention.value"),), "o": (Slot("o", "attention.output.dense"),),
            "ffn_in": (Slot("ffn_in", "intermediate.dense"),), "ffn_out": (Slot("ffn_out", "output.dense"),)}


def _vit_prefix(shape: Shape) -> tuple[PrefixSite, ...]:
    return (PrefixSite("self", "self", "attention" if shape.has("mlp_layout") else "attention.attention"),)


def _clip_sites(shape: Shape) -> dict[str, Site]:
    return {"attention": Site("self_attn", "layer_norm1"), "ffn": Site("mlp", "layer_norm2")}


def _clip_slots(shape: Shape) -> dict[str, tuple[Slot, ...]]:
    return _proj_slots("self_attn", ("q_proj", "k_proj", "v_proj", "out_proj"), ("mlp.fc1", "mlp.fc2"))


def _clip_towers_prefix(shape: Shape) -> tuple[PrefixSite, ...]:
    """CLIPModel: the text tower's causal self-attention and the vision tower's, one prefix MLP each."""
    if shape.has("vision_tower"):
        return (PrefixSite("vision", "self", "self_attn"),)
    return (PrefixSite("text", "self", "self_attn", causal=True),)


def _phi3_slots(shape: Shape) -> dict[str, tuple[Slot, ...]]:
    # gate_up_proj's rows are the gate, then the FFN input; qkv_proj's are q, k, v, equal thirds only without
    # grouped-query attention (k and v are narrower otherwise, and are then not offered as slices); both whole
    out = {"qkv": (Slot("qkv", "self_attn.qkv_proj"),), "o": (Slot("o", "self_attn.o_proj"),),
           "ffn_gate": (Slot("ffn_gate", "mlp.gate_up_proj", 0, 2),),
           "ffn_in": (Slot("ffn_in", "mlp.gate_up_proj", 1, 2),), "ffn_out": (Slot("ffn_out", "mlp.down_proj"),),
           "ffn_gate_in": (Slot("ffn_gate_in", "mlp.gate_up_proj"),)}
    if shape.has("qkv_thirds"):
        out.update({k: (Slot(k, "self_attn.qkv_proj", i, 3),) for i, k in enumerate(("q", "k", "v"))})
    return out


def _no_grouped_query(config: Mapping[str, Any]) -> bool:
    """As many key/value heads as query heads (unset: the same), so a fused qkv splits in equal thirds."""
    return config.get("num_key_value_heads") in (None, config.get("num_attention_heads"))


def _gpt_neox_sites(shape: Shape) -> dict[str, Site]:
    """Parallel residual (the default): ``x + attn(ln1(x)) + mlp(ln2(x))``; sequential: the MLP's residual is
    ``x + attn``, the input of ``post_attention_layernorm`` either way."""
    return {"attention": Site("attention", "input_layernorm"), "ffn": Site("mlp", "post_attention_layernorm")}


def _gpt_neox_slots(shape: Shape) -> dict[str, tuple[Slot, ...]]:
    # query_key_value is interleaved per head ([q_h, k_h, v_h] for each head): no q/k/v slices, only the whole
    return {"qkv": (Slot("qkv", "attention.query_key_value"),), "o": (Slot("o", "attention.dense"),),
            "ffn_in": (Slot("ffn_in", "mlp.dense_h_to_4h"),),
            "ffn_out": (Slot("ffn_out", "mlp.dense_4h_to_h"),)}


def _self_prefix(attention: str, *, causal: bool) -> Callable[[Shape], tuple[PrefixSite, ...]]:
    site = (PrefixSite("self", "self", attention, causal=causal),)
    return lambda shape: site


def _bert_linears(config: Mapping[str, Any]) -> tuple[str, ...]:
    """BERT-likes pool the first token through ``pooler.dense``; ELECTRA has no pooler but projects embeddings
    narrower than the hidden size (``embeddings_project``)."""
    if config.get("model_type") != "electra":
        return ("pooler.dense",)
    return ("embeddings_project",) if config.get("embedding_size", config.get("hidden_size")) != \
        config.get("hidden_size") else ()


def _opt_linears(config: Mapping[str, Any]) -> tuple[str, ...]:
    """OPT projects word embeddings narrower than the hidden size in and out (opt-350m)."""
    width = config.get("word_embed_proj_dim")
    return ("decoder.project_in", "decoder.project_out") if width not in (None, config.get("hidden_size")) else ()


INLINE_ATTENTION_NOTE = "transformers 5.x only: in 4.57 the attention is computed inline (refused there)"


FAMILIES: tuple[Family, ...] = (
    Family("bert", ("bert", "roberta", "xlm-roberta", "electra", "camembert"), ("encoder.layer",), _bert_sites,
           _bert_slots, lambda shape: ("attention.self",),
           prefix=lambda shape: (PrefixSite("self", "self", "attention.self", "attention.self.key",
                                            "attention.self.value"),),
           library_bottleneck_sites=MappingProxyType({"attention.output.adapters": "attention",
                                                      "output.adapters": "ffn"}),
           token_routing=True, decoder_flags=("is_decoder", "add_cross_attention"),
           task_prefixes=("bert.", "roberta.", "electra."), other_linears=_bert_linears),
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
    Family("t5", ("t5", "mt5"), ("encoder.block", "decoder.block"), _t5_sites, _t5_slots,
           lambda shape: ("layer.0.SelfAttention",), prefix=_t5_prefix,
           library_bottleneck_sites=MappingProxyType({"layer.0.adapters": "attention", "layer.1.adapters": "ffn",
                                                      "layer.2.adapters": "ffn"}),
           shared_position_bias="layer.0.SelfAttention", decoder_stacks=("decoder.block",),
           traits=(Trait("gated_ffn", "layer.-1.DenseReluDense.wi_1", _t5_gated),),
           task_prefixes=("transformer.",)),
    Family("deberta", ("deberta", "deberta-v2"), ("encoder.layer",), _bert_sites, _deberta_slots,
           library_bottleneck_sites=MappingProxyType({"attention.output.adapters": "attention",
                                                      "output.adapters": "ffn"}),
           refuses=MappingProxyType({"prefix_tuning": (
               "disentangled attention scores every key by its relative position to the query; prefix keys "
               "have no position, and adapterhub does not re-implement that attention")}),
           notes=MappingProxyType({"lora": "deberta (v1) fuses q/k/v per head: in_proj whole (`qkv`), no "
                                                "q/k/v slices"}),
           traits=(Trait("fused_qkv", "attention.self.in_proj", _deberta_v1),), task_prefixes=("deberta.",)),
    Family("bart", ("bart",), ("encoder.layers", "decoder.layers"), _bart_sites, _bart_slots, prefix=_bart_prefix,
           decoder_stacks=("decoder.layers",), task_prefixes=("model.",)),
    Family("mbart", ("mbart",), ("encoder.layers", "decoder.layers"), _mbart_sites, _bart_slots,
           prefix=_bart_prefix, decoder_stacks=("decoder.layers",), task_prefixes=("model.",)),
    Family("opt", ("opt",), ("decoder.layers",), _opt_sites, _opt_slots, prefix=_self_prefix("self_attn", causal=True),
           causal=True, traits=(Trait("pre_ln", "do_layer_norm_before", _opt_pre_ln),), task_prefixes=("model.",),
           other_linears=_opt_linears),
    Family("gptj", ("gptj",), ("h",), _parallel_sites("ln_1", "attn"), _gptj_slots,
           prefix=_self_prefix("attn", causal=True), causal=True,
           # the library chains GPT-J's FFN adapter on the attention adapter's output (its residual is
           # x + attention'), ours reads the layer input at both sites: its bottleneck directories are refused
           library_bottleneck_sites=MappingProxyType({}),
           notes=MappingProxyType({"prefix_tuning": INLINE_ATTENTION_NOTE,
                                   "bottleneck": "both sites read the layer input x (attention and MLP run in "
                                                 "parallel); adapters-library GPT-J bottleneck directories, whose FFN "
                                                 "adapter reads x + attention output, are refused"}),
           task_prefixes=("transformer.",)),
    Family("phi", ("phi",), ("layers",), _parallel_sites("input_layernorm", "self_attn"), _phi_slots,
           prefix=_self_prefix("self_attn", causal=True), causal=True, task_prefixes=("model.",)),
    Family("phi3", ("phi3",), ("layers",), _llama_sites, _phi3_slots, prefix=_self_prefix("self_attn", causal=True),
           causal=True, notes=MappingProxyType({"lora": "qkv_proj whole (`qkv`); q, k, v slices only without "
                                                        "grouped-query attention (equal thirds)"}),
           traits=(Trait("qkv_thirds", "self_attn.num_key_value_groups", _no_grouped_query, equals=1),),
           task_prefixes=("model.",)),
    Family("gpt_neox", ("gpt_neox",), ("layers",), _gpt_neox_sites, _gpt_neox_slots,
           prefix=_self_prefix("attention", causal=True), causal=True,
           notes=MappingProxyType({"lora": "query_key_value is interleaved per head: whole (`qkv`), no "
                                                "q/k/v slices"}),
           task_prefixes=("gpt_neox.",)),
    *(Family(name, (name,), ("layers",), _llama_sites, _llama_slots, prefix=_self_prefix("self_attn", causal=True),
             causal=True, task_prefixes=("model.",)) for name in ("qwen3", "gemma", "olmo", "granite")),
    Family("gemma2", ("gemma2", "gemma3_text"), ("layers",), _gemma2_sites, _llama_slots,
           prefix=_self_prefix("self_attn", causal=True), causal=True, task_prefixes=("model.",)),
    Family("modernbert", ("modernbert",), ("layers",), _modernbert_sites, _modernbert_slots,
           prefix=_self_prefix("attn", causal=False),
           notes=MappingProxyType({"prefix_tuning": INLINE_ATTENTION_NOTE}), task_prefixes=("model.",)),
    Family("vit", ("vit",), ("encoder.layer", "layers"), _vit_sites, _vit_slots, prefix=_vit_prefix,
           library_bottleneck_sites=MappingProxyType({"attention_adapters.adapters": "attention",
                                                      "output.output_adapters.adapters": "ffn"}),
           # transformers 5.x lays ViT out as attention + mlp; only the installed version tells
           traits=(Trait("mlp_layout", "mlp"),), task_prefixes=("vit.",), other_linears=lambda config: ("pooler.dense",)),
    # the library keys a CLIP tower's prefix location by the tower's model type ("<model_type>_self_prefix")
    Family("clip-text", ("clip_text_model",), ("text_model.encoder.layers", "encoder.layers"), _clip_sites,
           _clip_slots, prefix=_self_prefix("self_attn", causal=True), task_prefixes=("clip.",),
           library_prefix_locations=MappingProxyType({"clip_text_model_self_prefix": "self"})),
    Family("clip-vision", ("clip_vision_model",), ("vision_model.encoder.layers", "encoder.layers"), _clip_sites,
           _clip_slots, prefix=_self_prefix("self_attn", causal=False), task_prefixes=("clip.",),
           library_prefix_locations=MappingProxyType({"clip_vision_model_self_prefix": "self"})),
    Family("clip", ("clip",), ("text_model.encoder.layers", "vision_model.encoder.layers"), _clip_sites,
           _clip_slots, prefix=_clip_towers_prefix, task_prefixes=("clip.",),
           other_linears=lambda config: ("text_projection", "visual_projection"),
           towers=MappingProxyType({"text_model.encoder.layers": "text_config",
                                    "vision_model.encoder.layers": "vision_config"}),
           library_prefix_locations=MappingProxyType({"clip_text_model_self_prefix": "text",
                                                      "clip_vision_model_self_prefix": "vision"}),
           # the vision tower's attention config states an image size (told by the stack, not by config.json)
           traits=(Trait("vision_tower", "self_attn.config.image_size"),)),
)
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(t for f in FAMILIES for t in f.model_types)
"""The model types of the built-in families (families registered at run time: :func:`supported_model_types`)."""

_REGISTERED: list[Family] = []


def families() -> tuple[Family, ...]:
    """Every family in the table: those registered with :func:`register_family`, then the built-in ones."""
    return (*_REGISTERED, *FAMILIES)


def supported_model_types() -> tuple[str, ...]:
    return tuple(t for f in families() for t in f.model_types)


def register_family(family: Family) -> Family:
    """Make ``family`` known to the runtime's ``bind`` and to manifest derivation, without editing the package.

    Its model types must not already be bound by another family (built-in or registered): a model type
    has one placement. Registering the same entry again is a no-op; :func:`unregister_family` undoes it.
    """
    if not isinstance(family, Family):
        raise InvalidArgumentError(f"register_family takes an adapterhub.runtime.arch.Family, not "
                                   f"{type(family).__name__}")
    if not family.model_types or not family.stacks:
        raise InvalidArgumentError(f"family {family.name!r} needs at least one model_type and one layer stack")
    if any(f is family for f in _REGISTERED):
        return family
    taken = {t: f.name for f in families() for t in f.model_types}
    clash = sorted(t for t in family.model_types if t in taken)
    if clash:
        raise ConflictError(f"model type(s) {clash} already belong to family {taken[clash[0]]!r}",
                            hint="unregister_family(name) first to replace a registered family; built-in "
                                 "families cannot be replaced")
    for field_name, named in (("decoder_stacks", family.decoder_stacks), ("towers", tuple(family.towers))):
        bad = sorted(s for s in named if s not in family.stacks)
        if bad:
            raise InvalidArgumentError(f"family {family.name!r}: {field_name} {bad} are not among its stacks")
    _REGISTERED.append(family)
    return family


def unregister_family(name: str) -> None:
    """Remove the registered family ``name`` (built-in families stay)."""
    for f in _REGISTERED:
        if f.name == name:
            _REGISTERED.remove(f)
            return
    raise NotFoundError(f"no registered family named {name!r}",
                        hint="registered: " + (", ".join(f.name for f in _REGISTERED) or "none"))


def find_family(model_type: str) -> Family | None:
    """The family whose entry lists ``model_type`` (registered or built-in), or None."""
    return next((fam for fam in families() if model_type in fam.model_types), None)


def family_for(model_type: str) -> Family:
    """The family of ``model_type``; :class:`UnsupportedArchitectureError` naming the supported ones otherwise."""
    fam = find_family(model_type)
    if fam is None:
        raise UnsupportedArchitectureError(
            f"model_type {model_type!r} has no entry in the adapterhub architecture table",
            hint="supported: " + ", ".join(supported_model_types()) + "; register your own with "
                 "adapterhub.runtime.register_family (docs/runtime.md, 'Your own family')")
    return fam
