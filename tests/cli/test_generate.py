"""Generation (``adapterhub.tasks.generate``) on tiny random GPT-2, Llama, T5 and BART bases with LoRA,
bottleneck and prefix-tuning adapters attached by the runtime.

Greedy output is checked against a decoding loop written here over full forwards (no KV cache, one
sequence at a time), in float64 so near-ties cannot flip an arg-max; sampling and EOS handling against
transformers' own ``generate`` called by hand on the same weights and random state.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support.generation_support import (
    CAUSAL,
    CHAT_TEMPLATE,
    METHODS,
    SEQ2SEQ,
    make_lm_adapter,
    reference_lm,
    save_tiny_lm,
)

from adapterhub.errors import InvalidArgumentError
from adapterhub.runtime.prefix_attention import continues_cache
from adapterhub.tasks.generate import Settings, generate
from adapterhub.tasks.textstream import IncrementalText

PROMPTS = ["the cat sat", "café crème brûlée à Paris , 東京"]


@pytest.fixture(scope="module")
def lms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lms")
    out: dict[str, Path] = {}
    for arch in (*CAUSAL, *SEQ2SEQ):
        out[arch] = save_tiny_lm(root / arch, arch)
        for method in METHODS:
            out[f"{arch}-{method}"] = make_lm_adapter(out[arch], root / f"{arch}-{method}", method)
    out["chat"] = save_tiny_lm(root / "chat", "llama", chat_template=CHAT_TEMPLATE)
    return out


def greedy_loop(model, tokenizer, prompt: str, steps: int, stops: set[int]) -> list[int]:
    """Arg-max decoding over full forwards of the whole sequence so far (no cache, no padding)."""
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    out: list[int] = []
    with torch.no_grad():
        for _ in range(steps):
            if model.config.is_encoder_decoder:
                dec = torch.tensor([[model.config.decoder_start_token_id, *out]])
                logits = model(input_ids=ids, decoder_input_ids=dec, use_cache=False).logits[0, -1]
            else:
                seq = torch.cat([ids, torch.tensor([out], dtype=torch.long)], dim=1)
                logits = model(input_ids=seq, use_cache=False).logits[0, -1]
            out.append(int(logits.argmax()))
            if out[-1] in stops:
                break
    return out


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("arch", [*CAUSAL, *SEQ2SEQ])
def test_greedy_matches_a_hand_written_decoding_loop(lms, arch, method):
    """Batched (left-padded), cached generation equals decoding each prompt alone by full forwards."""
    model, tok = reference_lm(lms[arch], lms[f"{arch}-{method}"], dtype=torch.float64)
    if arch in CAUSAL:  # the cache must be on for causal models, prefix tuning included
        assert continues_cache(model)
    got = generate(model, tok, PROMPTS, Settings(max_new_tokens=6), batch_size=2)
    for prompt, r in zip(PROMPTS, got, strict=True):
        assert list(r.token_ids) == greedy_loop(model, tok, prompt, 6, {2}), (arch, method, prompt)
        assert r.text == tok.decode([t for t in r.token_ids if t != 2], skip_special_tokens=True)
        assert r.prompt_tokens == len(tok(prompt)["input_ids"])
        assert r.generated_tokens == len(r.token_ids)


def test_the_adapter_changes_what_is_generated(lms):
    """The adapters are really attached: a base alone generates something else (for at least one prompt)."""
    plain = generate(*reference_lm(lms["llama"], None, dtype=torch.float64), PROMPTS, Settings(max_new_tokens=8))
    for method in METHODS:
        adapted = generate(*reference_lm(lms["llama"], lms[f"llama-{method}"], dtype=torch.float64), PROMPTS,
                           Settings(max_new_tokens=8))
        assert [r.token_ids for r in adapted] != [r.token_ids for r in plain], method


@pytest.mark.parametrize("arch", ["llama", "bart"])
def test_sampling_with_a_seed_is_reproducible_and_is_transformers_sampling(lms, arch):
    model, tok = reference_lm(lms[arch], lms[f"{arch}-prefix_tuning"])
    settings = Settings(max_new_tokens=12, do_sample=True, temperature=1.5, top_p=0.95, top_k=40, seed=7)
    before = torch.get_rng_state()
    first = generate(model, tok, PROMPTS, settings, batch_size=2)
    assert torch.equal(torch.get_rng_state(), before)  # the caller's random state is left alone
    assert [r.token_ids for r in generate(model, tok, PROMPTS, settings, batch_size=2)] == \
        [r.token_ids for r in first]
    other = generate(model, tok, PROMPTS, Settings(**{**settings.__dict__, "seed": 8}), batch_size=2)
    assert [r.token_ids for r in other] != [r.token_ids for r in first]
    # by hand: a padded batch (left for a decoder, right for an encoder), same seed, transformers' generate
    tok.padding_side = "right" if model.config.is_encoder_decoder else "left"
    enc = tok(PROMPTS, padding=True, return_tensors="pt")
    ids, mask, width = enc["input_ids"], enc["attention_mask"], enc["input_ids"].shape[1]
    torch.manual_seed(7)
    with torch.no_grad():
        want = model.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.5, top_p=0.95,
                              top_k=40, max_new_tokens=12, pad_token_id=0, eos_token_id=2)
    want = want[:, 1:] if model.config.is_encoder_decoder else want[:, width:]
    for r, row in zip(first, want.tolist(), strict=True):
        end = row.index(2) + 1 if 2 in row else len(row)
        assert list(r.token_ids) == row[:end]


@pytest.mark.parametrize("arch", [*CAUSAL, *SEQ2SEQ])
def test_streamed_pieces_concatenate_to_the_final_text(lms, arch):
    model, tok = reference_lm(lms[arch], lms[f"{arch}-lora"])
    pieces: dict[int, list[str]] = {}
    got = generate(model, tok, PROMPTS, Settings(max_new_tokens=16), batch_size=2,
                   stream=lambda i, s: pieces.setdefault(i, []).append(s))
    for i, r in enumerate(got):
        assert "".join(pieces.get(i, [])) == r.text
        assert all(p and not p.endswith("\ufffd") for p in pieces.get(i, [])[:-1])


def test_stops_at_the_eos_token_and_reports_it(lms):
    """A row that produces an EOS stops there (finish_reason eos, EOS counted, not in the text); the other
    row of the batch runs on to max_new_tokens; both as transformers' generate decides."""
    model, tok = reference_lm(lms["gpt2"], lms["gpt2-bottleneck"], dtype=torch.float64)
    free = generate(model, tok, PROMPTS, Settings(max_new_tokens=10))
    stop = free[0].token_ids[3]  # pretend the 4th greedy token of the first prompt is the base's EOS
    model.generation_config.eos_token_id = stop
    got = generate(model, tok, PROMPTS, Settings(max_new_tokens=10), batch_size=2)
    first = got[0]
    assert first.finish_reason == "eos" and first.token_ids[-1] == stop
    assert first.token_ids == free[0].token_ids[:free[0].token_ids.index(stop) + 1]
    assert first.text == tok.decode(list(first.token_ids[:-1]), skip_special_tokens=True)
    second = free[1].token_ids
    assert got[1].token_ids == (second[:second.index(stop) + 1] if stop in second else second)
    assert got[1].finish_reason == ("eos" if stop in second else "length")


def test_chat_template_is_applied_when_the_tokenizer_has_one(lms):
    model, tok = reference_lm(lms["chat"], None)
    rendered = tok.apply_chat_template([{"role": "user", "content": "the cat"}], tokenize=False,
                                       add_generation_prompt=True)
    assert rendered.startswith("<s>[user] the cat\n")
    templated = tok(rendered, add_special_tokens=False)["input_ids"]
    got = generate(model, tok, ["the cat"], Settings(max_new_tokens=6))[0]
    assert got.chat_template and got.prompt_tokens == len(templated)
    with torch.no_grad():
        want = model.generate(input_ids=torch.tensor([templated]), max_new_tokens=6, do_sample=False,
                              pad_token_id=0)[0, len(templated):].tolist()
    assert list(got.token_ids) == want[:want.index(2) + 1] if 2 in want else want
    plain = generate(model, tok, ["the cat"], Settings(max_new_tokens=6, chat=False))[0]
    assert not plain.chat_template and plain.prompt_tokens == len(tok("the cat")["input_ids"])


def test_no_chat_template_without_one_and_chat_then_refused(lms):
    model, tok = reference_lm(lms["llama"], None)
    got = generate(model, tok, ["the cat"], Settings(max_new_tokens=3))[0]
    assert not got.chat_template and got.prompt_tokens == len(tok("the cat")["input_ids"])
    with pytest.raises(InvalidArgumentError, match="chat template"):
        generate(model, tok, ["the cat"], Settings(max_new_tokens=3, chat=True))


@pytest.mark.parametrize("settings, match", [
    (Settings(max_new_tokens=0), "max_new_tokens"),
    (Settings(do_sample=True, temperature=0.0), "temperature must be greater than 0"),
    (Settings(do_sample=True, temperature=-1.0), "temperature must be greater than 0"),
    (Settings(temperature=0.7), "--temperature applies only when sampling"),
    (Settings(top_k=5, seed=1), "--top-k, --seed apply only when sampling"),
    (Settings(do_sample=True, top_p=1.5), "top_p"),
    (Settings(do_sample=True, top_k=-1), "top_k"),
    (Settings(max_new_tokens=60), "needs 66 positions"),
])
def test_bad_settings_are_typed_errors_before_anything_runs(lms, settings, match):
    model, tok = reference_lm(lms["gpt2"], None)
    with pytest.raises(InvalidArgumentError, match=match):
        generate(model, tok, ["the cat sat"], settings, max_length=64)


def test_a_classification_model_cannot_generate(lms):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(lms["gpt2"], num_labels=2)
    _, tok = reference_lm(lms["gpt2"], None)
    with pytest.raises(InvalidArgumentError, match="cannot generate"):
        generate(model, tok, ["the cat"])


def test_incremental_text_never_splits_a_character_or_releases_a_cleaned_space(lms):
    """One byte per token (emoji, CJK, accents), and the tokenizer's clean-up of spaces before punctuation
    and contractions: no piece ends in half a character, and the pieces always add up to the full decode."""
    _, tok = reference_lm(lms["gpt2"], None)
    text = "héllo wörld € 😀 東京 , do n't ."
    byte_ids = [tok.convert_tokens_to_ids(ch) for ch in tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str(text)
                for ch in ch[0]]
    assert tok.decode(byte_ids) == text
    for cleanup in (False, True):
        def decode(ids: list[int], cleanup: bool = cleanup) -> str:
            return tok.decode(ids, clean_up_tokenization_spaces=cleanup)

        stream = IncrementalText(decode)
        pieces = [stream.add([t]) for t in byte_ids]
        assert all("\ufffd" not in p for p in pieces)
        assert "".join(pieces) + stream.finish() == decode(byte_ids)
