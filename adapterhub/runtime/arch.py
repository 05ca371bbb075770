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

from ..errors import ConflictError, InvalidArgumentError, NotFoundError, UnsupportedArchitectureError


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
    ``stacks`` lists the layer containers in layer-numbering order; alternatives for different
    transformers versions may be listed side by side (only those present on a model are bound).
    ``decoder_stacks`` are those among them whose layers are decoder layers of an encoder-decoder
    model: they are numbered after the encoder's, and their count is the config's decoder layers.
    ``refuses`` maps a method name to why it cannot be placed on this family: attaching it raises
    :class:`UnsupportedArchitectureError` with that reason. ``notes`` maps a method name to a
    remark for the families x methods table in ``docs/runtime.md`` (a version-dependent limit).
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
    decoder_stacks: tuple[str, ...] = ()
    refuses: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    notes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def refusal(self, method: str) -> UnsupportedArchitectureError | None:
        """The typed error for attaching ``method`` here, or None when the family places it."""
        reason = self.refuses.get(method)
        if reason is None:
            return None
        return UnsupportedArchitectureError(
            f"{method} cannot be placed on {self.name} models ({', '.join(self.model_types)}): {reason}",
            hint="see the families x methods table in docs/runtime.md for what this family supports")


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


def _deberta_slots(layer: nn.Module, decoder: bool) -> dict[str, tuple[Slot, ...]]:
    out = _bert_slots(layer, decoder)
    if hasattr(layer.attention.self, "in_proj"):  # DeBERTa v1: q/k/v fused per head, interleaved: no slices
        for key in ("q", "k", "v"):
            del out[key]
    else:
        out.update({k: (Slot(k, f"attention.self.{n}_proj"),) for k, n in (("q", "query"), ("k", "key"),
                                                                           ("v", "value"))})
    return out


def _bart_sites(layer: nn.Module, decoder: bool) -> dict[str, Site]:
    """Post-LN BART: ``LN(x + h)``; ``x`` is the self-attention's and ``fc1``'s input."""
    return {"attention": Site("self_attn", "self_attn", 0, "hidden_states", "self_attn_layer_norm"),
            "ffn": Site("fc2", "fc1", 0, None, "final_layer_norm")}


def _mbart_sites(layer: nn.Module, decoder: bool) -> dict[str, Site]:
    """Pre-LN mBART: ``x + h``; ``x`` is the input of the LayerNorm in front of each sublayer."""
    return {"attention": Site("self_attn", "self_attn_layer_norm"), "ffn": Site("fc2", "final_layer_norm")}


def _bart_slots(layer: nn.Module, decoder: bool) -> dict[str, tuple[Slot, ...]]:
    return _proj_slots("self_attn", ("q_proj", "k_proj", "v_proj", "out_proj"), ("fc1", "fc2"),
                       "encoder_attn" if decoder else None)


def _bart_prefix(layer: nn.Module, decoder: bool) -> tuple[PrefixSite, ...]:
    if not decoder:
        return (PrefixSite("encoder", "self", "self_attn"),)
    return (PrefixSite("self", "self", "self_attn", causal=True), PrefixSite("cross", "cross", "encoder_attn"))


def _opt_sites(layer: nn.Module, decoder: bool) -> dict[str, Site]:
    if getattr(layer, "do_layer_norm_before", True):
        return _mbart_sites(layer, decoder)
    return _bart_sites(layer, decoder)


def _opt_slots(layer: nn.Module, decoder: bool) -> dict[str, tuple[Slot, ...]]:
    return _proj_slots("self_attn", ("q_proj", "k_proj", "v_proj", "out_proj"), ("fc1", "fc2"))


def _parallel_sites(norm: str, attn: str) -> Callable[[nn.Module, bool], dict[str, Site]]:
    """GPT-J/Phi: attention and MLP both read ``norm(x)`` and the layer returns ``x + attn + mlp``."""
    return lambda layer, decoder: {"attention": Site(attn, norm), "ffn": Site("mlp", norm)}


def _gptj_slots(layer: nn.Module, decoder: bool) -> dict[str, tuple[Slot, ...]]:
    return _proj_slots("attn", ("q_proj", "k_proj", "v_proj", "out_proj"), ("mlp.fc_in", "mlp.fc_out"))


def _phi_slots(layer: nn.Module, decoder: bool) -> dict[str, tuple[Slot, ...]]:
    return _proj_slots("self_attn", ("q_proj", "k_proj", "v_proj", "dense"), ("mlp.fc1", "mlp.fc2"))


def _gemma2_sites(layer: nn.Module, decoder: bool) -> dict[str, Site]:
    """Gemma 2/3 normalise each sublayer's output (``post_*_layernorm``) before the residual add."""
    return {"attention": Site("post_attention_layernorm", "input_layernorm"),
            "ffn": Site("post_feedforward_layernorm", "pre_feedforward_layernorm")}


def _modernbert_sites(layer: nn.Module, decoder: bool) -> dict[str, Site]:
    return {"attention": Site("attn", "attn_norm"), "ffn": Site("mlp", "mlp_norm")}


def _modernbert_slots(layer: nn.Module, decoder: bool) -> dict[str, tuple[Slot, ...]]:
    # Wqkv's rows are q, k, v (each heads x head_dim); Wi's are the FFN input, then its gate
    return {"q": (Slot("q", "attn.Wqkv", 0, 3),), "k": (Slot("k", "attn.Wqkv", 1, 3),),
            "v": (Slot("v", "attn.Wqkv", 2, 3),), "o": (Slot("o", "attn.Wo"),),
            "ffn_in": (Slot("ffn_in", "mlp.Wi", 0, 2),), "ffn_gate": (Slot("ffn_gate", "mlp.Wi", 1, 2),),
            "ffn_out": (Slot("ffn_out", "mlp.Wo"),)}


def _vit_sites(layer: nn.Module, decoder: bool) -> dict[str, Site]:
    if hasattr(layer, "mlp"):  # transformers 5.x: attention, then mlp, one shared dropout module
        return {"attention": Site("attention", "layernorm_before"), "ffn": Site("mlp", "layernorm_after")}
    # 4.x: ViTOutput adds the residual (its second argument) itself
    return {"attention": Site("attention", "layernorm_before"),
            "ffn": Site("output.dropout", "output", 1, "input_tensor")}


def _vit_slots(layer: nn.Module, decoder: bool) -> dict[str, tuple[Slot, ...]]:
    if hasattr(layer, "mlp"):
        return _proj_slots("attention", ("q_proj", "k_proj", "v_proj", "o_proj"), ("mlp.fc1", "mlp.fc2"))
    return {"q": (Slot("q", "attention.attention.query"),), "k": (Slot("k", "attention.attention.key"),),
            "v": (Slot("v", "attention.attention.value"),), "o": (Slot("o", "attention.output.dense"),),
            "ffn_in": (Slot("ffn_in", "intermediate.dense"),), "ffn_out": (Slot("ffn_out", "output.dense"),)}


def _vit_prefix(layer: nn.Module, decoder: bool) -> tuple[PrefixSite, ...]:
    return (PrefixSite("self", "self", "attention" if hasattr(layer, "mlp") else "attention.attention"),)


def _clip_sites(layer: nn.Module, decoder: bool) -> dict[str, Site]:
    return {"attention": Site("self_attn", "layer_norm1"), "ffn": Site("mlp", "layer_norm2")}


def _clip_slots(layer: nn.Module, decoder: bool) -> dict[str, tuple[Slot, ...]]:
    return _proj_slots("self_attn", ("q_proj", "k_proj", "v_proj", "out_proj"), ("mlp.fc1", "mlp.fc2"))


def _phi3_slots(layer: nn.Module, decoder: bool) -> dict[str, tuple[Slot, ...]]:
    # gate_up_proj's rows are the gate, then the FFN input; qkv_proj's are q, k, v, equal thirds only without
    # grouped-query attention (k and v are narrower otherwise, and are then not offered as slices)
    out = {"o": (Slot("o", "self_attn.o_proj"),), "ffn_gate": (Slot("ffn_gate", "mlp.gate_up_proj", 0, 2),),
           "ffn_in": (Slot("ffn_in", "mlp.gate_up_proj", 1, 2),), "ffn_out": (Slot("ffn_out", "mlp.down_proj"),)}
    if getattr(layer.self_attn, "num_key_value_groups", 1) == 1:
        out.update({k: (Slot(k, "self_attn.qkv_proj", i, 3),) for i, k in enumerate(("q", "k", "v"))})
    return out


def _gpt_neox_sites(layer: nn.Module, decoder: bool) -> dict[str, Site]:
    """Parallel residual (the default): ``x + attn(ln1(x)) + mlp(ln2(x))``; sequential: the MLP's residual is
    ``x + attn``, the input of ``post_attention_layernorm`` either way."""
    return {"attention": Site("attention", "input_layernorm"), "ffn": Site("mlp", "post_attention_layernorm")}


def _gpt_neox_slots(layer: nn.Module, decoder: bool) -> dict[str, tuple[Slot, ...]]:
    # query_key_value is interleaved per head ([q_h, k_h, v_h] for each head): no q/k/v slices
    return {"o": (Slot("o", "attention.dense"),), "ffn_in": (Slot("ffn_in", "mlp.dense_h_to_4h"),),
            "ffn_out": (Slot("ffn_out", "mlp.dense_4h_to_h"),)}


def _self_prefix(attention: str, *, causal: bool) -> Callable[[nn.Module, bool], tuple[PrefixSite, ...]]:
    site = (PrefixSite("self", "self", attention, causal=causal),)
    return lambda layer, decoder: site


INLINE_ATTENTION_NOTE = "transformers 5.x only: in 4.57 the attention is computed inline (refused there)"


FAMILIES: tuple[Family, ...] = (
    Family("bert", ("bert", "roberta", "xlm-roberta", "electra", "camembert"), ("encoder.layer",), _bert_sites, _bert_slots,
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
    Family("t5", ("t5", "mt5"), ("encoder.block", "decoder.block"), _t5_sites, _t5_slots,
           lambda layer, dec: ("layer.0.SelfAttention",), prefix=_t5_prefix,
           library_bottleneck_sites=MappingProxyType({"layer.0.adapters": "attention", "layer.1.adapters": "ffn",
                                                      "layer.2.adapters": "ffn"}),
           shared_position_bias="layer.0.SelfAttention", decoder_stacks=("decoder.block",)),
    Family("deberta", ("deberta", "deberta-v2"), ("encoder.layer",), _bert_sites, _deberta_slots,
           library_bottleneck_sites=MappingProxyType({"attention.output.adapters": "attention",
                                                      "output.adapters": "ffn"}),
           refuses=MappingProxyType({"prefix_tuning": (
               "disentangled attention scores every key by its relative position to the query; prefix keys "
               "have no position, and adapterhub does not re-implement that attention")}),
           notes=MappingProxyType({"lora": "deberta (v1) fuses q/k/v per head: only o, ffn_in, ffn_out"})),
    Family("bart", ("bart",), ("encoder.layers", "decoder.layers"), _bart_sites, _bart_slots, prefix=_bart_prefix,
           decoder_stacks=("decoder.layers",)),
    Family("mbart", ("mbart",), ("encoder.layers", "decoder.layers"), _mbart_sites, _bart_slots,
           prefix=_bart_prefix, decoder_stacks=("decoder.layers",)),
    Family("opt", ("opt",), ("decoder.layers",), _opt_sites, _opt_slots, prefix=_self_prefix("self_attn", causal=True),
           causal=True),
    Family("gptj", ("gptj",), ("h",), _parallel_sites("ln_1", "attn"), _gptj_slots,
           prefix=_self_prefix("attn", causal=True), causal=True,
           # the library chains GPT-J's FFN adapter on the attention adapter's output (its residual is
           # x + attention'), ours reads the layer input at both sites: its bottleneck directories are refused
           library_bottleneck_sites=MappingProxyType({}),
           notes=MappingProxyType({"prefix_tuning": INLINE_ATTENTION_NOTE,
                                   "bottleneck": "both sites read the layer input x (attention and MLP run in "
                                                 "parallel); adapters-library GPT-J bottleneck directories, whose FFN "
                                                 "adapter reads x + attention output, are refused"})),
    Family("phi", ("phi",), ("layers",), _parallel_sites("input_layernorm", "self_attn"), _phi_slots,
           prefix=_self_prefix("self_attn", causal=True), causal=True),
    Family("phi3", ("phi3",), ("layers",), _llama_sites, _phi3_slots, prefix=_self_prefix("self_attn", causal=True),
           causal=True, notes=MappingProxyType({"lora": "q, k, v only without grouped-query attention (qkv_proj "
                                                        "is split in equal thirds)"})),
    Family("gpt_neox", ("gpt_neox",), ("layers",), _gpt_neox_sites, _gpt_neox_slots,
           prefix=_self_prefix("attention", causal=True), causal=True,
           notes=MappingProxyType({"lora": "query_key_value is interleaved per head: o, ffn_in, ffn_out only"})),
    *(Family(name, (name,), ("layers",), _llama_sites, _llama_slots, prefix=_self_prefix("self_attn", causal=True),
             causal=True) for name in ("qwen3", "gemma", "olmo", "granite")),
    Family("gemma2", ("gemma2", "gemma3_text"), ("layers",), _gemma2_sites, _llama_slots,
           prefix=_self_prefix("self_attn", causal=True), causal=True),
    Family("modernbert", ("modernbert",), ("layers",), _modernbert_sites, _modernbert_slots,
           prefix=_self_prefix("attn", causal=False),
           notes=MappingProxyType({"prefix_tuning": INLINE_ATTENTION_NOTE})),
    Family("vit", ("vit",), ("encoder.layer", "layers"), _vit_sites, _vit_slots, prefix=_vit_prefix,
           library_bottleneck_sites=MappingProxyType({"attention_adapters.adapters": "attention",
                                                      "output.output_adapters.adapters": "ffn"})),
    Family("clip-text", ("clip_text_model",), ("text_model.encoder.layers", "encoder.layers"), _clip_sites,
           _clip_slots, prefix=_self_prefix("self_attn", causal=True)),
    Family("clip-vision", ("clip_vision_model",), ("vision_model.encoder.layers", "encoder.layers"), _clip_sites,
           _clip_slots, prefix=_self_prefix("self_attn", causal=False)),
)
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(t for f in FAMILIES for t in f.model_types)
"""The model types of the built-in families (families registered at run time: :func:`supported_model_types`)."""

_REGISTERED: list[Family] = []


def families() -> tuple[Family, ...]:
    """Every family the runtime binds: those registered with :func:`register_family`, then the built-in ones."""
    return (*_REGISTERED, *FAMILIES)


def supported_model_types() -> tuple[str, ...]:
    return tuple(t for f in families() for t in f.model_types)


def register_family(family: Family) -> Family:
    """Make ``family`` known to :func:`bind` from user code, without editing the package.

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
    bad = sorted(s for s in family.decoder_stacks if s not in family.stacks)
    if bad:
        raise InvalidArgumentError(f"family {family.name!r}: decoder_stacks {bad} are not among its stacks")
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


def family_for(model_type: str) -> Family:
    for fam in families():
        if model_type in fam.model_types:
            return fam
    raise UnsupportedArchitectureError(
        f"model_type {model_type!r} has no entry in the adapterhub architecture table",
        hint="supported: " + ", ".join(supported_model_types()) + "; register your own with "
             "adapterhub.runtime.register_family (docs/runtime.md, 'Your own family')")


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
            hint="supported: " + ", ".join(supported_model_types()))
    fam = family_for(model_type)
    backbone = getattr(model, "base_model", model)
    layers: list[Layer] = []
    for stack in fam.stacks:
        try:
            container = backbone.get_submodule(stack)
        except AttributeError:
            continue
        decoder = stack in fam.decoder_stacks
        for module in container:  # type: ignore[attr-defined]
            layers.append(Layer(len(layers), module, decoder, fam.sites(module, decoder),
                                fam.slots(module, decoder)))
    if not layers:
        raise UnsupportedArchitectureError(f"{type(model).__name__}: no transformer layers found at {fam.stacks}")
    hidden = _config_int(config, "hidden_size", "d_model", "n_embd", "dim")
    n_layers = _config_int(config, "num_hidden_layers", "num_layers", "n_layer", "n_layers")
    n_decoder = (_config_int(config, "num_decoder_layers", "decoder_layers")
                 if any(layer.decoder for layer in layers) else None)
    return Binding(fam, model_type, hidden, n_layers, backbone, layers, conv1d=fam.conv1d, root=model,
                   num_decoder_layers=n_decoder)

