"""Tiny random language-model bases (GPT-2, Llama, T5, BART) with a byte-level BPE tokenizer, and
language-model adapters (LoRA, bottleneck, prefix tuning) on them, for the generation tests.

The tokenizer is trained on a few sentences with accented letters, CJK and an emoji, so random models
produce multi-byte characters split across tokens (what streaming must not cut). Token ids: ``<pad>`` 0,
``<s>`` 1, ``</s>`` 2. Adapters get random non-zero weights, so every output depends on them.
"""

from __future__ import annotations

from pathlib import Path

from support.base_fetch_support import pin_base

REPO_ID = "tiny-org/tiny-lm"
CORPUS = ["the cat sat on the mat, and the dog is n't happy .", "café crème brûlée à Paris", "naïve façade über",
          "東京 大阪 日本語 テキスト", "emoji 😀 🎉 ok", "summarize: a long text . translate English to German:"]
CHAT_TEMPLATE = ("{% for m in messages %}<s>[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}[assistant] {% endif %}")
CAUSAL = ("gpt2", "llama")
SEQ2SEQ = ("t5", "bart")
METHODS = {"lora": {"r": 4, "alpha": 8}, "bottleneck": {"variant": "pfeiffer"},
           "prefix_tuning": {"prefix_length": 3, "bottleneck_size": 8}}


def save_tokenizer(directory: Path, *, seq2seq: bool, chat_template: str | None = None) -> int:
    """A byte-level BPE tokenizer over :data:`CORPUS` (causal: ``<s>`` first; seq2seq: ``</s>`` last); its size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    single = "$A </s>" if seq2seq else "<s> $A"
    tok.post_processor = processors.TemplateProcessing(single=single, special_tokens=[("<s>", 1), ("</s>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   model_max_length=64)
    if chat_template is not None:
        fast.chat_template = chat_template
    fast.save_pretrained(directory)
    return len(fast)


def lm_config(arch: str, vocab: int):
    from transformers import AutoConfig

    ids = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2, "vocab_size": vocab}
    shapes = {
        "gpt2": dict(n_embd=32, n_layer=2, n_head=4, n_inner=37, n_positions=64),
        "llama": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=37, max_position_embeddings=64),
        "t5": dict(d_model=32, d_kv=8, d_ff=37, num_layers=2, num_decoder_layers=2, num_heads=4,
                   relative_attention_num_buckets=8, decoder_start_token_id=0),
        "bart": dict(d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                     decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64,
                     decoder_start_token_id=2, forced_eos_token_id=None, forced_bos_token_id=None),
    }[arch]
    return AutoConfig.for_model(arch, **ids, **shapes)


def save_tiny_lm(directory: Path, arch: str, *, seed: int = 0, chat_template: str | None = None) -> Path:
    """A random 2-layer ``arch`` language model (64 positions) and its tokenizer, in ``directory``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    directory.mkdir(parents=True)
    vocab = save_tokenizer(directory, seq2seq=arch in SEQ2SEQ, chat_template=chat_template)
    torch.manual_seed(seed)
    cls = AutoModelForSeq2SeqLM if arch in SEQ2SEQ else AutoModelForCausalLM
    model = cls.from_config(lm_config(arch, vocab))
    model.save_pretrained(directory)
    return directory


def make_lm_adapter(base_dir: Path, out: Path, method: str, seed: int = 3) -> Path:
    """A ``method`` language-model adapter (no head; task text-generation) with random non-zero weights."""
    import torch

    from adapterhub.runtime import wrap
    from adapterhub.tasks.loading import load_task_model

    model, _ = load_task_model(base_dir, "lm")
    ah = wrap(model)
    ah.add("tiny-lm", method, seed=seed, **METHODS[method])
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.adapterhub_adapters.parameters():
            p.normal_(0, 0.3)
    ah.save("tiny-lm", out, version="1.0.0", license="apache-2.0", task={"type": "text-generation", "name": method})
    return pin_base(out, REPO_ID, None)


def reference_lm(base_dir: Path, adapter: Path | None, dtype=None):
    """``(model, tokenizer)`` built by hand with transformers, the adapter attached by the runtime API."""
    import transformers

    from adapterhub.runtime import wrap

    config = transformers.AutoConfig.from_pretrained(base_dir)
    cls = transformers.AutoModelForSeq2SeqLM if config.is_encoder_decoder else transformers.AutoModelForCausalLM
    model = cls.from_pretrained(base_dir).eval()
    if dtype is not None:
        model = model.to(dtype)
    if adapter is not None:
        wrap(model).load(adapter, force=dtype is not None)  # the fingerprint is of the float32 weights
    return model, transformers.AutoTokenizer.from_pretrained(base_dir)
