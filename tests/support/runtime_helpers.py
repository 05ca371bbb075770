"""Tiny random transformers models for the runtime tests (one per architecture family)."""

from __future__ import annotations

import torch

TINY = {
    "bert": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=99),
    "roberta": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, vocab_size=99,
                    pad_token_id=1, max_position_embeddings=40),
    "xlm-roberta": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                        vocab_size=99, pad_token_id=1, max_position_embeddings=40),
    "distilbert": dict(dim=32, n_layers=2, n_heads=4, hidden_dim=37, vocab_size=99),
    "gpt2": dict(n_embd=32, n_layer=2, n_head=4, n_inner=37, vocab_size=99, bos_token_id=98, eos_token_id=98),
    "llama": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=37, vocab_size=99, pad_token_id=0, bos_token_id=1, eos_token_id=2),
    "mistral": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    intermediate_size=37, vocab_size=99, pad_token_id=0, bos_token_id=1, eos_token_id=2),
    "qwen2": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=37, vocab_size=99, pad_token_id=0, bos_token_id=1, eos_token_id=2),
    "t5": dict(d_model=32, d_kv=8, d_ff=37, num_layers=2, num_decoder_layers=2, num_heads=4,
               relative_attention_num_buckets=8, vocab_size=99, decoder_start_token_id=0),
}
ARCHS = tuple(TINY)


def tiny_config(model_type: str, **overrides):
    from transformers import AutoConfig

    return AutoConfig.for_model(model_type, **{**TINY[model_type], **overrides})


def tiny_model(model_type: str, seed: int = 0, cls=None, **overrides):
    from transformers import AutoModel

    torch.manual_seed(seed)
    config = tiny_config(model_type, **overrides)
    model = (cls or AutoModel).from_config(config)
    return model.eval()


def inputs_for(model_type: str, batch: int = 2, seq: int = 7, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 99, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[-1, -2:] = 0
    out = {"input_ids": ids, "attention_mask": mask}
    if model_type == "t5":
        out["decoder_input_ids"] = torch.randint(3, 99, (batch, 5), generator=g)
    return out


def hidden(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).last_hidden_state


def state_snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(model, snapshot: dict[str, torch.Tensor]) -> None:
    now = model.state_dict()
    assert set(now) == set(snapshot), sorted(set(now) ^ set(snapshot))[:5]
    for k, v in snapshot.items():
        assert torch.equal(now[k], v), k  # a state that must not change: the same bytes


def output_cache(output):
    """The KV cache a model call returned, whatever this transformers version names the field."""
    from adapterhub.runtime.kv_cache import is_cache

    return next((v for v in output.values() if is_cache(v)), None)


def cache_keyword(model) -> str:
    """The name this transformers version's ``model.forward`` takes the KV cache by (``cache`` from 5.24)."""
    import inspect

    from adapterhub.runtime.kv_cache import CACHE_KEYWORDS

    params = inspect.signature(model.forward).parameters
    return next(name for name in CACHE_KEYWORDS if name in params)
