"""One tiny random configuration per supported model type, and the inputs each takes (the family parity table).

Adding a family to ``adapterhub/runtime/arch.py`` costs one ``CASES`` row here; ``tests/runtime/test_families.py``
then runs every method on it and compares with PEFT (and the ``adapters`` library where ``library`` names what it
supports). Hidden 32, 2 layers (2 + 2 for encoder-decoders), vocabulary 99: each model builds in milliseconds.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch

from support.runtime_helpers import inputs_for

ENC = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=99)
DEC = dict(ENC, num_key_value_heads=2, pad_token_id=0, bos_token_id=1, eos_token_id=2)
SEQ2SEQ = dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
               encoder_ffn_dim=37, decoder_ffn_dim=37, vocab_size=99, pad_token_id=1, bos_token_id=0,
               eos_token_id=2, decoder_start_token_id=2)
T5 = dict(d_model=32, d_kv=8, d_ff=37, num_layers=2, num_decoder_layers=2, num_heads=4,
          relative_attention_num_buckets=8, vocab_size=99, decoder_start_token_id=0)
IMAGE = dict(ENC, image_size=8, patch_size=4)
LIBRARY_BN = ("seq_bn", "double_seq_bn", "par_bn", "compacter", "lora")
CLIP_LIBRARY = ("seq_bn", "double_seq_bn", "par_bn", "lora", "prefix")
CLIP_TEXT = dict(ENC, bos_token_id=1, eos_token_id=2, pad_token_id=0)


@dataclass(frozen=True)
class Case:
    """A model type's tiny config, its input kind and what the ``adapters`` library 1.3.0 places on it."""

    config: dict
    inputs: str = "text"  # text | seq2seq | image | text+image (CLIP's two towers)
    library: tuple[str, ...] = ()
    kwargs: dict = field(default_factory=dict)


CASES: dict[str, Case] = {
    "bert": Case(ENC),  # the adapters library on bert/distilbert/gpt2/llama/t5: tests/runtime/test_parity_live.py
    "roberta": Case(dict(ENC, pad_token_id=1, max_position_embeddings=40), library=LIBRARY_BN),
    "xlm-roberta": Case(dict(ENC, pad_token_id=1, max_position_embeddings=40), library=LIBRARY_BN),
    "electra": Case(dict(ENC, embedding_size=16), library=(*LIBRARY_BN, "prefix")),
    "camembert": Case(dict(ENC, pad_token_id=1, max_position_embeddings=40)),
    "distilbert": Case(dict(dim=32, n_layers=2, n_heads=4, hidden_dim=37, vocab_size=99)),
    "gpt2": Case(dict(n_embd=32, n_layer=2, n_head=4, n_inner=37, vocab_size=99, bos_token_id=98, eos_token_id=98)),
    "llama": Case(DEC),
    "mistral": Case(DEC),
    "qwen2": Case(DEC),
    "t5": Case(T5, "seq2seq"),
    "mt5": Case(T5, "seq2seq", library=(*LIBRARY_BN, "prefix")),
    "deberta": Case(ENC),
    "deberta-v2": Case(ENC, library=LIBRARY_BN),
    "bart": Case(SEQ2SEQ, "seq2seq", library=(*LIBRARY_BN, "prefix")),
    "mbart": Case(SEQ2SEQ, "seq2seq", library=(*LIBRARY_BN, "prefix")),
    "opt": Case(dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, ffn_dim=37, vocab_size=99,
                     word_embed_proj_dim=32, pad_token_id=1, bos_token_id=2, eos_token_id=2)),
    "gptj": Case(dict(n_embd=32, n_layer=2, n_head=4, n_inner=37, vocab_size=99, rotary_dim=4, bos_token_id=1,
                      eos_token_id=2), library=("lora",)),
    "phi": Case(DEC),
    "phi3": Case(dict(DEC, num_key_value_heads=4)),  # no GQA: q, k, v are thirds of qkv_proj
    "gpt_neox": Case(dict(ENC, rotary_pct=0.5, pad_token_id=0, bos_token_id=1, eos_token_id=2)),
    "qwen3": Case(dict(DEC, head_dim=8)),
    "gemma": Case(dict(DEC, head_dim=8)),
    "olmo": Case(DEC),
    "granite": Case(DEC),
    "gemma2": Case(dict(DEC, head_dim=8)),
    "gemma3_text": Case(dict(DEC, head_dim=8)),
    "modernbert": Case(dict(ENC, global_attn_every_n_layers=2, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                            cls_token_id=1, sep_token_id=2)),
    "vit": Case(IMAGE, "image", library=(*LIBRARY_BN, "prefix")),
    # CLIP: the library has no flex-head model to save Compacter's shared rule from; it names its prefix locations
    # "<tower model_type>_self_prefix"
    "clip_text_model": Case(CLIP_TEXT, library=CLIP_LIBRARY),
    "clip_vision_model": Case(IMAGE, "image", library=CLIP_LIBRARY),
    # two towers of different widths and depths (text 32 x 2 layers, then vision 48 x 3: layers 0-1 and 2-4)
    "clip": Case(dict(text_config=CLIP_TEXT, projection_dim=16,
                      vision_config=dict(IMAGE, hidden_size=48, num_hidden_layers=3, intermediate_size=41)),
                 "text+image", library=CLIP_LIBRARY),
}

_BUILT: dict[tuple[str, str | None], torch.nn.Module] = {}


def case_config(model_type: str, **overrides):
    from transformers import AutoConfig

    return AutoConfig.for_model(model_type, **{**CASES[model_type].config, **overrides})


def case_model(model_type: str, *, attn_implementation: str | None = None) -> torch.nn.Module:
    """A fresh copy of the one tiny random model of ``model_type`` (seed 0; built once per process)."""
    key = (model_type, attn_implementation)
    if key not in _BUILT:
        from transformers import AutoModel

        torch.manual_seed(0)
        kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
        _BUILT[key] = AutoModel.from_config(case_config(model_type), **kwargs).eval()
    return copy.deepcopy(_BUILT[key])


def case_inputs(model_type: str, batch: int = 2, seq: int = 7) -> dict[str, torch.Tensor]:
    """Inputs with a padded row (the last two positions of the last row) for text; pixels for images."""
    kind = CASES[model_type].inputs
    pixels = {"pixel_values": torch.randn(batch, 3, 8, 8, generator=torch.Generator().manual_seed(1))}
    if kind == "image":
        return pixels
    if kind == "text+image":
        return {**inputs_for("clip_text_model", batch, seq), **pixels}
    return inputs_for("t5" if kind == "seq2seq" else model_type, batch, seq)  # t5: with decoder inputs


def case_output(out: object, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The hidden states a case compares: ``last_hidden_state``; for CLIP's two towers both towers' (flattened
    per example, padded text positions zeroed: they carry no meaning)."""
    hidden = getattr(out, "last_hidden_state", None)
    if hidden is not None:
        return hidden
    text = out.text_model_output.last_hidden_state * inputs["attention_mask"][..., None].to(torch.get_default_dtype())
    return torch.cat([text.flatten(1), out.vision_model_output.last_hidden_state.flatten(1)], dim=1)


def peft_config(peft, model: torch.nn.Module, kind: str, r: int = 4):
    """PEFT's config for ``kind`` (lora, dora, ia3) on the projections our table names: LoRA/DoRA on q, v,
    ffn_in; IA3 on k, v and ffn_out (scaled on its input, as a feed-forward module)."""
    from adapterhub.runtime import bind

    binding = bind(model)

    def paths(*keys: str) -> list[str]:
        return sorted({s.path for layer in binding.layers for k in keys if k in layer.slots for s in layer.slots[k]})

    fan = {"fan_in_fan_out": True} if binding.conv1d else {}
    if kind == "ia3":
        return peft.IA3Config(target_modules=paths("k", "v", "ffn_out"), feedforward_modules=paths("ffn_out"), **fan)
    return peft.LoraConfig(r=r, lora_alpha=2 * r, target_modules=paths("q", "v", "ffn_in"), use_dora=kind == "dora",
                           **fan)


def valid_positions(model_type: str, inputs: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """Positions of the output that count (padding rows do not; decoder and image outputs: all)."""
    if CASES[model_type].inputs != "text":
        return None
    return inputs["attention_mask"].bool()
