"""The architecture table: where adapters attach in each supported model family.

Adapters never patch transformers classes. Each family names, relative to one transformer layer,
the submodules whose inputs and outputs the runtime hooks. Module *names* have stayed stable
across transformers 4.57 and 5.x even where forward signatures and attention backends changed,
so hooks on these modules are version-robust. Adding a family is adding an entry to ``FAMILIES``: every
fact about a family that code elsewhere needs (where the ``adapters`` library names its adapters, which
methods its layers support, what its attention shares across layers) is a :class:`Family` field, so no
module outside this one tests a family's name.

A bottleneck :class:`Site` is one sublayer (attention or feed-forward) of a layer: ``output`` is the
module whose output ``h`` is the sublayer result before the residual add, ``residual`` names the
module whose first positional argument is the sublayer input ``x`` (read through a forward
pre-hook), and ``layer_norm`` is the post-LN module that the model applies to ``h + x`` (post-LN
families only; pre-LN families have none there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from torch import nn

from ..errors import UnsupportedArchitectureError


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


LIBRARY_BOTTLENECK_SITES: Mapping[str, str] = MappingProxyType(
    {"attention_adapters.adapters": "attention", "output_adapters.adapters": "ffn"})
"""The ``adapters`` library's bottleneck containers (relative to a layer) -> our site, where a family
has no layout of its own (the library's mixin layers)."""
LIBRARY_LORA_LOCATIONS: Mapping[str, str] = MappingProxyType({"intermediate": "ffn_in", "output": "ffn_out"})
"""The library's LoRA locations -> our slot keys, where a family does not wrap them differently."""


@dataclass(frozen=True)
class Family:
    """One architecture family: layer containers, bottleneck sites, projection slots and its other facts.

    ``library_bottleneck_sites`` and ``library_lora_locations`` translate the ``adapters`` library's
    names for this family into ours. ``causal`` marks decoder-only families (every self-attention
    causal). ``token_routing`` means a layer's forward is correct on any routed sub-sequence given the
    matching 4-D attention mask and position ids/embeddings (what CoDA needs); ``decoder_flags`` names
    the model-config flags that turn the family's encoder layers into decoder layers, which that
    routing does not cover.
    ``shared_position_bias`` is the attention module (relative to a layer) whose relative position
    bias, computed in each stack's first layer, every layer of that stack reuses (T5).
    """

    name: str
    model_types: tuple[str, ...]
    stacks: tuple[str, ...]
    sites: Callable[[nn.Module, bool], dict[str, Site]]
    slots: Callable[[nn.Module, bool], dict[str, tuple[Slot, ...]]]
    attention: Callable[[nn.Module, bool], tuple[str, ...]] = field(default=lambda layer, dec: ())
    conv1d: bool = False
    prefix: Callable[[nn.Module, bool], tuple[PrefixSite, ...]] = field(default=lambda layer, dec: ())
    library_bottleneck_sites: Mapping[str, str] = field(default_factory=lambda: LIBRARY_BOTTLENECK_SITES, hash=False)
    library_lora_locations: Mapping[str, str] = field(default_factory=lambda: LIBRARY_LORA_LOCATIONS, hash=False)
    causal: bool = False
    token_routing: bool = False
    decoder_flags: tuple[str, ...] = ()
    shared_position_bias: str | None = None


def _bert_sites(layer: nn.Module, decoder: bool) -> dict[str, Site]:
    return {
        "attention": Site("attention.output.dropout", "attention.output", 1, "input_tensor",
                          "attention.output.LayerNorm"),
        "ffn": Site("output.dropout", "output", 1, "input_tensor", "output.LayerNorm"),
    }


def _bert_slots(layer: nn.Module, decoder: bool) -> dict[str, tuple[Slot, ...]]:
    return {
        "q": (Slot("q", "attention.self.query"),), "k": (Slot("k", "attention.self.key"),),
        "v": (Slot("v", "attention.self.value"),), "o": (Slot("o", "attention.output.dense"),),
        "ffn_in": (Slot("ffn_in", "intermediate.dense"),), "ffn_out": (Slot("ffn_out", "output.dense"),),
    }


def _distilbert_sites(layer: nn.Module, decoder: bool) -> dict[str, Site]:
    return {
        "attention": Site("attention", "", 0, None, "sa_layer_norm"),
        "ffn": Site("ffn", "ffn", 0, None, "output_layer_norm"),
    }


def _distilbert_slots(layer: nn.Module, decoder: bool) -> dict[str, tuple[Slot, ...]]:
    return {
        "q": (Slot("q", "attention.q_lin"),), "k": (Slot("k", "attention.k_lin"),),
        "v": (Slot("v", "attention.v_lin"),), "o": (Slot("o", "attention.out_lin"),),
        "ffn_in": (Slot("ffn_in", "ffn.lin1"),), "ffn_out": (Slot("ffn_out", "ffn.lin2"),),
    }


def _gpt2_sites(layer: nn.Module, decoder: bool) -> dict[str, Site]:
    return {"attention": Site("attn", "ln_1"), "ffn": Site("mlp", "ln_2")}


def _gpt2_slots(layer: nn.Module, decoder: bool) -> dict[str, tuple[Slot, ...]]:
    return {
        "q": (Slot("q", "attn.c_attn", 0, 3),), "k": (Slot("k", "attn.c_attn", 1, 3),),
        "v": (Slot("v", "attn.c_attn", 2, 3),), "o": (Slot("o", "attn.c_proj"),),
        "ffn_in": (Slot("ffn_in", "mlp.c_fc"),), "ffn_out": (Slot("ffn_out", "mlp.c_proj"),),
    }


def _llama_sites(layer: nn.Module, decoder: bool) -> dict[str, Site]:
    return {"attention": Site("self_attn", "input_layernorm"), "ffn": Site("mlp", "post_attention_layernorm")}


def _llama_slots(layer: nn.Module, decoder: bool) -> dict[str, tuple[Slot, ...]]:
    return {
        "q": (Slot("q", "self_attn.q_proj"),), "k": (Slot("k", "self_attn.k_proj"),),
        "v": (Slot("v", "self_attn.v_proj"),), "o": (Slot("o", "self_attn.o_proj"),),
        "ffn_gate": (Slot("ffn_gate", "mlp.gate_proj"),), "ffn_in": (Slot("ffn_in", "mlp.up_proj"),),
        "ffn_out": (Slot("ffn_out", "mlp.down_proj"),),
    }


def _t5_ffn_index(layer: nn.Module) -> int:
    return len(layer.layer) - 1


def _t5_sites(layer: nn.Module, decoder: bool) -> dict[str, Site]:
    f = _t5_ffn_index(layer)
    return {"attention": Site("layer.0.dropout", "layer.0.layer_norm"),
            "ffn": Site(f"layer.{f}.dropout", f"layer.{f}.layer_norm")}


def _t5_slots(layer: nn.Module, decoder: bool) -> dict[str, tuple[Slot, ...]]:
    f = _t5_ffn_index(layer)
    out: dict[str, tuple[Slot, ...]] = {}
    for key in ("q", "k", "v", "o"):
        slots = [Slot(key, f"layer.0.SelfAttention.{key}")]
        if decoder:
            slots.append(Slot(f"cross_{key}", f"layer.1.EncDecAttention.{key}"))
        out[key] = tuple(slots)
    dense = layer.layer[f].DenseReluDense
    if hasattr(dense, "wi_1"):
        out["ffn_gate"] = (Slot("ffn_gate", f"layer.{f}.DenseReluDense.wi_0"),)
        out["ffn_in"] = (Slot("ffn_in", f"layer.{f}.DenseReluDense.wi_1"),)
    else:
        out["ffn_in"] = (Slot("ffn_in", f"layer.{f}.DenseReluDense.wi"),)
    out["ffn_out"] = (Slot("ffn_out", f"layer.{f}.DenseReluDense.wo"),)
    return out


def _t5_prefix(layer: nn.Module, decoder: bool) -> tuple[PrefixSite, ...]:
    if not decoder:
        return (PrefixSite("encoder", "self", "layer.0.SelfAttention", "layer.0.SelfAttention.k",
                           "layer.0.SelfAttention.v"),)
    return (PrefixSite("self", "self", "layer.0.SelfAttention", "layer.0.SelfAttention.k", "layer.0.SelfAttention.v",
                       causal=True),
            PrefixSite("cross", "cross", "layer.1.EncDecAttention", "layer.1.EncDecAttention.k",
                       "layer.1.EncDecAttention.v"))


FAMILIES: tuple[Family, ...] = (
    Family("bert", ("bert", "roberta", "xlm-roberta"), ("encoder.layer",), _bert_sites, _bert_slots,
           lambda layer, dec: ("attention.self",),
           prefix=lambda layer, dec: (PrefixSite("self", "self", "attention.self", "attention.self.key",
                                                 "attention.self.value"),),
           library_bottleneck_sites=MappingProxyType({"attention.output.adapters": "attention",
                                                      "output.adapters": "ffn"}),
           token_routing=True, decoder_flags=("is_decoder", "add_cross_attention")),
    Family("distilbert", ("distilbert",), ("transformer.layer",), _distilbert_sites, _distilbert_slots,
           lambda layer, dec: ("attention",),
           prefix=lambda layer, dec: (PrefixSite("self", "self", "attention", "attention.k_lin", "attention.v_lin",
                                                 pad_kv=True),)),
    Family("gpt2", ("gpt2",), ("h",), _gpt2_sites, _gpt2_slots, lambda layer, dec: ("attn",), conv1d=True,
           prefix=lambda layer, dec: (PrefixSite("self", "self", "attn", causal=True),), causal=True),
    Family("llama", ("llama", "mistral", "qwen2"), ("layers",), _llama_sites, _llama_slots,
           lambda layer, dec: ("self_attn",),
           prefix=lambda layer, dec: (PrefixSite("self", "self", "self_attn", causal=True),),
           # the library wraps down_proj as "intermediate" and up_proj as "output"
           library_lora_locations=MappingProxyType({"intermediate": "ffn_out", "output": "ffn_in"}),
           causal=True, token_routing=True),
    Family("t5", ("t5",), ("encoder.block", "decoder.block"), _t5_sites, _t5_slots,
           lambda layer, dec: ("layer.0.SelfAttention",), prefix=_t5_prefix,
           library_bottleneck_sites=MappingProxyType({"layer.0.adapters": "attention", "layer.1.adapters": "ffn",
                                                      "layer.2.adapters": "ffn"}),
           shared_position_bias="layer.0.SelfAttention"),
)
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(t for f in FAMILIES for t in f.model_types)


def family_for(model_type: str) -> Family:
    for fam in FAMILIES:
        if model_type in fam.model_types:
            return fam
    raise UnsupportedArchitectureError(
        f"model_type {model_type!r} has no entry in the adapterhub architecture table",
        hint="supported: " + ", ".join(SUPPORTED_MODEL_TYPES))


def get_submodule(root: nn.Module, path: str) -> nn.Module:
    """``root.get_submodule`` that also accepts the empty path (the root itself)."""
    return root if not path else root.get_submodule(path)


@dataclass
class Layer:
    """One transformer layer bound to a model instance, with its global index."""

    index: int
    module: nn.Module
    decoder: bool
    sites: dict[str, Site]
    slots: dict[str, tuple[Slot, ...]]

    def sub(self, path: str) -> nn.Module:
        return get_submodule(self.module, path)


@dataclass
class Binding:
    """A family resolved on one model instance: facts for base checks and all layers.

    Layer indices are global: the encoder's (or only) stack ``0..num_hidden_layers-1``, then, for an
    encoder-decoder family, the decoder's ``num_hidden_layers..`` (``num_decoder_layers`` of them), as
    the ``adapters`` library numbers them and as manifests check them.
    """

    family: Family
    model_type: str
    hidden_size: int
    num_hidden_layers: int
    backbone: nn.Module
    layers: list[Layer]
    conv1d: bool = False
    root: nn.Module | None = None
    num_decoder_layers: int | None = None

    def iter_layers(self, leave_out: tuple[int, ...] | None = ()) -> Iterator[Layer]:
        skip = set(leave_out or ())
        return (layer for layer in self.layers if layer.index not in skip)

    def slot_module(self, layer: Layer, slot: Slot) -> nn.Module:
        return layer.sub(slot.path)

    def slot_shape(self, layer: Layer, slot: Slot) -> tuple[int, int]:
        """(in_features, out_features) of a slot, its slice of a fused projection if any."""
        w = self.slot_module(layer, slot).weight
        fin, fout = (w.shape[0], w.shape[1]) if self.conv1d else (w.shape[1], w.shape[0])
        return int(fin), int(fout // slot.parts)


def _config_int(config: object, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise UnsupportedArchitectureError(f"model config has none of {names}")


def bind(model: nn.Module) -> Binding:
    """Resolve the architecture table on a model instance (bare backbone or any task model)."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if not isinstance(model_type, str):
        raise UnsupportedArchitectureError(
            f"{type(model).__name__} has no config.model_type; adapterhub attaches to transformers models",
            hint="supported: " + ", ".join(SUPPORTED_MODEL_TYPES))
    fam = family_for(model_type)
    backbone = getattr(model, "base_model", model)
    layers: list[Layer] = []
    for stack in fam.stacks:
        try:
            container = backbone.get_submodule(stack)
        except AttributeError:
            continue
        decoder = stack.startswith("decoder")
        for module in container:  # type: ignore[attr-defined]
            layers.append(Layer(len(layers), module, decoder, fam.sites(module, decoder),
                                fam.slots(module, decoder)))
    if not layers:
        raise UnsupportedArchitectureError(f"{type(model).__name__}: no transformer layers found at {fam.stacks}")
    hidden = _config_int(config, "hidden_size", "d_model", "n_embd", "dim")
    n_layers = _config_int(config, "num_hidden_layers", "num_layers", "n_layer", "n_layers")
    n_decoder = (_config_int(config, "num_decoder_layers", "decoder_layers")
                 if any(s.startswith("decoder") for s in fam.stacks) else None)
    return Binding(fam, model_type, hidden, n_layers, backbone, layers, conv1d=fam.conv1d, root=model,
                   num_decoder_layers=n_decoder)

