"""Text generation with a language-model adapter: causal LMs continue a prompt, seq2seq LMs (T5, BART)
transform an input (summaries, translations).

Decoding is transformers' ``generate`` with settings built here: greedy unless ``do_sample``; sampling
parameters left unset take the base's ``generation_config.json`` values; the KV cache is on unless an
attached prefix sits on an attention that cannot continue a cache (T5 in transformers 4.x); a seed
forks the random state, so the same inputs, batch size and seed give the same text without touching the
caller's generator. Decoder-only prompts are left-padded to batch them (encoder inputs right-padded).
A causal base whose tokenizer has a chat template gets each prompt as a user message (``chat=None``, the default; ``False`` turns it off).
Nothing here imports torch at module level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from ..errors import InvalidArgumentError
from .textstream import TokenStreamer
from .types import Task, TaskSpec, batches, fixed_columns, inference, record_text

DEFAULT_MAX_NEW_TOKENS = 64
DEFAULT_BATCH_SIZE = 8
PROMPT_FIELDS = ("prompt", "text", "input")
SAMPLING = ("temperature", "top_p", "top_k", "seed")
OPTIONS = frozenset({"max_new_tokens", "do_sample", *SAMPLING, "chat", "stream"})
"""What ``Runner.run`` accepts for a language-model adapter (``stream``: ``on_text(index, piece)``)."""


@dataclass(frozen=True)
class Prompt:
    """One input: a prompt to continue (causal) or a text to transform (seq2seq)."""

    text: str


def coerce_prompt(record: Any) -> Prompt:
    """A string, a :class:`Prompt`, or a mapping with ``prompt`` (or ``text``/``input``)."""
    if isinstance(record, Prompt):
        return record
    if isinstance(record, str):
        if not record.strip():
            raise InvalidArgumentError("generation input is empty", hint="give a non-empty prompt")
        return Prompt(record)
    text = record_text(record, *PROMPT_FIELDS, where="generation input")
    assert text is not None  # required=True
    return Prompt(text)


@dataclass(frozen=True)
class Settings:
    """How to decode; :meth:`check` refuses what ``generate`` would ignore or fail on."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    chat: bool | None = None
    """None: apply the tokenizer's chat template when it has one (causal bases only); True: require one."""

    def check(self) -> Settings:
        if isinstance(self.max_new_tokens, bool) or not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise InvalidArgumentError(f"max_new_tokens must be an integer of at least 1, got {self.max_new_tokens!r}")
        given = [name for name in SAMPLING if getattr(self, name) is not None]
        if given and not self.do_sample:
            flags = ", ".join("--" + n.replace("_", "-") for n in given)
            raise InvalidArgumentError(f"{flags} appl{'ies' if len(given) == 1 else 'y'} only when sampling; "
                                       "decoding is greedy by default",
                                       hint="add --sample (Python: do_sample=True), or drop " + flags)
        if self.temperature is not None and not self.temperature > 0:
            raise InvalidArgumentError(f"temperature must be greater than 0 when sampling, got {self.temperature}",
                                       hint="for deterministic output drop --sample (greedy decoding)")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise InvalidArgumentError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 0:
            raise InvalidArgumentError(f"top_k must be 0 (off) or more, got {self.top_k}")
        return self


@dataclass(frozen=True)
class Generation:
    """One input's generated text; token counts exclude padding, ``generated_tokens`` includes the EOS."""

    prompt: str
    text: str
    prompt_tokens: int
    generated_tokens: int
    finish_reason: str
    """``eos``: the model ended the text; ``length``: ``max_new_tokens`` was reached."""
    token_ids: tuple[int, ...] = ()
    """The generated token ids (with the EOS token when ``finish_reason`` is ``eos``)."""
    chat_template: bool = False
    """The prompt was formatted with the tokenizer's chat template."""

    def to_json(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "text": self.text, "prompt_tokens": self.prompt_tokens,
                "generated_tokens": self.generated_tokens, "finish_reason": self.finish_reason,
                "chat_template": self.chat_template}

    def table_rows(self) -> list[dict[str, str]]:
        return [{"text": self.text, "finish": self.finish_reason, "prompt": self.prompt}]


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def uses_chat(tokenizer: Any, settings: Settings, encoder_decoder: bool) -> bool:
    """Whether prompts go through the chat template (see :attr:`Settings.chat`)."""
    if settings.chat is False:
        return False
    if settings.chat and (encoder_decoder or not has_chat_template(tokenizer)):
        raise InvalidArgumentError("--chat needs a causal base whose tokenizer has a chat template; "
                                   + ("this base is encoder-decoder" if encoder_decoder else "this one has none"),
                                   hint="drop --chat (prompts are then used as they are)")
    return not encoder_decoder and has_chat_template(tokenizer)


def prompt_ids(tokenizer: Any, text: str, chat: bool) -> list[int]:
    """The prompt's token ids: the chat template's rendering (it holds its own special tokens), or the text
    with the tokenizer's special tokens."""
    if chat:
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                 add_generation_prompt=True)
        return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    return list(tokenizer(text)["input_ids"])


def stop_ids(model: Any, tokenizer: Any) -> list[int]:
    """The tokens that end a text: the base's generation config's EOS id(s), else the tokenizer's."""
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    return [] if eos is None else [eos] if isinstance(eos, int) else list(eos)


def generation_config(model: Any, settings: Settings, stops: Sequence[int], pad_id: int) -> Any:
    """The base's generation config with our decoding choices: greedy or sampling, one beam, no length
    limit but ``max_new_tokens``; neutral sampling values when greedy (transformers warns otherwise)."""
    config = model.generation_config.__class__.from_dict(model.generation_config.to_dict())
    config.max_new_tokens = settings.max_new_tokens
    config.num_beams = 1
    config.do_sample = settings.do_sample
    config.eos_token_id = list(stops) or None
    config.pad_token_id = pad_id
    if settings.do_sample:
        for name in ("temperature", "top_p", "top_k"):
            if getattr(settings, name) is not None:
                setattr(config, name, getattr(settings, name))
    else:
        config.temperature = config.top_p = config.top_k = None
    return config


def pad_id_of(tokenizer: Any, stops: Sequence[int]) -> int:
    for candidate in (tokenizer.pad_token_id, *stops, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def continues_cache(model: Any) -> bool:
    """Whether the attached adapters let ``generate`` keep a KV cache (see the runtime's prefix tuning)."""
    from ..runtime.prefix_attention import continues_cache as attached_continue  # deferred: torch

    return attached_continue(model)


def generate(model: Any, tokenizer: Any, prompts: Sequence[str | Prompt], settings: Settings | None = None, *,
             batch_size: int = DEFAULT_BATCH_SIZE, max_length: int | None = None,
             on_batch: Callable[[int], None] | None = None,
             stream: Callable[[int, str], None] | None = None) -> list[Generation]:
    """Generate for each prompt, in input order (a causal or seq2seq transformers model, adapters attached).

    ``max_length`` is the base's input limit: a prompt that does not fit (with ``max_new_tokens`` for a
    causal base) is refused before anything runs. ``stream(index, piece)`` receives each input's text as
    it becomes final (see :mod:`.textstream`); with ``batch_size > 1`` the pieces of a batch's inputs
    interleave. ``on_batch(n)`` is called after each batch of ``n`` inputs.
    """

    settings = (settings or Settings()).check()
    if not callable(getattr(model, "generate", None)) or not model.can_generate():
        raise InvalidArgumentError(f"{type(model).__name__} cannot generate text: generation needs a language-model "
                                   "adapter (head type lm) on a causal or seq2seq base")
    encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
    chat = uses_chat(tokenizer, settings, encoder_decoder)
    items = [coerce_prompt(p) for p in prompts]
    encoded = [prompt_ids(tokenizer, item.text, chat) for item in items]
    check_lengths(encoded, settings, max_length, encoder_decoder)
    stops = stop_ids(model, tokenizer)
    pad_id = pad_id_of(tokenizer, stops)
    config = generation_config(model, settings, stops, pad_id)
    use_cache = continues_cache(model)
    device = next(model.parameters()).device
    out: list[Generation] = []
    with inference(model), seeded(settings.seed, device):
        for chunk in batches(range(len(items)), batch_size, on_batch):
            start = chunk[0]
            ids = encoded[start:start + len(chunk)]
            input_ids, mask = padded(ids, pad_id, device, left=not encoder_decoder)
            streamer = None if stream is None else TokenStreamer(
                lambda t: tokenizer.decode(t, skip_special_tokens=True), stream, len(ids), stops, start)
            output = model.generate(input_ids=input_ids, attention_mask=mask, generation_config=config,
                                    use_cache=use_cache, streamer=streamer)
            new = output[:, 1:] if encoder_decoder else output[:, input_ids.shape[1]:]
            for item, prompt, row in zip(items[start:start + len(chunk)], ids, new.tolist(), strict=True):
                out.append(result(tokenizer, item.text, len(prompt), row, stops, chat))
    return out


def check_lengths(encoded: Sequence[Sequence[int]], settings: Settings, limit: int | None,
                  encoder_decoder: bool) -> None:
    """Refuse a prompt the base cannot take: empty once tokenized, or longer than its position limit."""
    for n, ids in enumerate(encoded, start=1):
        if not ids:
            raise InvalidArgumentError(f"input {n} has no tokens", hint="give a non-empty prompt")
        need = len(ids) if encoder_decoder else len(ids) + settings.max_new_tokens
        if limit is not None and need > limit:
            what = "tokens" if encoder_decoder else f"prompt tokens + max_new_tokens {settings.max_new_tokens}"
            raise InvalidArgumentError(f"input {n} needs {need} positions ({what}); the base takes {limit}",
                                       hint="shorten the input" + ("" if encoder_decoder else " or lower --max-new-tokens"))


def padded(rows: Sequence[Sequence[int]], pad_id: int, device: Any, *, left: bool) -> tuple[Any, Any]:
    """``(input_ids, attention_mask)`` with every row padded to the longest: on the left for decoder-only
    models (they continue from the last position), on the right for encoders (BART's positions are absolute,
    so a left pad would shift every token)."""
    import torch

    width = max(len(r) for r in rows)

    def pad(row: Sequence[int], fill: Sequence[int], gap: int) -> list[int]:
        extra = [gap] * (width - len(row))
        return [*extra, *fill] if left else [*fill, *extra]

    ids = torch.tensor([pad(r, r, pad_id) for r in rows], dtype=torch.long, device=device)
    mask = torch.tensor([pad(r, [1] * len(r), 0) for r in rows], dtype=torch.long, device=device)
    return ids, mask


def result(tokenizer: Any, prompt: str, prompt_tokens: int, row: Sequence[int], stops: Sequence[int],
           chat: bool) -> Generation:
    """One row of ``generate``'s output as a :class:`Generation`: cut after the first stop token (what
    follows is padding), decoded without special tokens."""
    end = next((i for i, t in enumerate(row) if t in stops), None)
    kept = list(row) if end is None else list(row[:end + 1])
    text = tokenizer.decode(kept if end is None else kept[:-1], skip_special_tokens=True)
    return Generation(prompt, text, prompt_tokens, len(kept), "length" if end is None else "eos", tuple(kept), chat)


@contextmanager
def seeded(seed: int | None, device: Any) -> Iterator[None]:
    """Within the block, torch's random state is seeded with ``seed`` (None: left alone) and restored after."""
    if seed is None:
        yield
        return
    import torch

    cuda = [device.index or 0] if getattr(device, "type", "cpu") == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(seed)
        yield


def settings_of(options: Mapping[str, Any]) -> tuple[Settings, Callable[[int, str], None] | None]:
    """``Runner.run`` options -> :class:`Settings` and the stream callback."""
    opts = dict(options)
    stream = opts.pop("stream", None)
    if stream is not None and not callable(stream):
        raise InvalidArgumentError(f"stream must be a callable on_text(index, piece), got {type(stream).__name__}")
    unknown = sorted(set(opts) - OPTIONS)
    if unknown:
        raise InvalidArgumentError(f"unknown generation option(s): {', '.join(unknown)}")
    settings = replace(Settings(), **{k: v for k, v in opts.items() if v is not None or k == "chat"})
    return settings, stream


def check_generation_options(options: Mapping[str, Any]) -> None:
    """Check the decoding settings among ``options`` (others are left to their task), so that a bad one is
    refused before any model is loaded."""
    settings_of({k: v for k, v in options.items() if k in OPTIONS})[0].check()


def run(model: Any, tokenizer: Any, inputs: Sequence[Prompt], spec: TaskSpec, *,
        batch_size: int = DEFAULT_BATCH_SIZE, on_batch: Callable[[int], None] | None = None,
        **options: Any) -> list[Generation]:
    """The :class:`Task` entry point for both kinds (the model's config says causal or seq2seq)."""
    if spec.head_type != "lm":
        raise InvalidArgumentError(f"{spec.adapter} has a {spec.head_type} head; only language-model adapters "
                                   "(head type lm) generate text")
    settings, stream = settings_of(options)
    return generate(model, tokenizer, inputs, settings, batch_size=batch_size, max_length=spec.max_length,
                    on_batch=on_batch, stream=stream)


COLUMNS = fixed_columns("text", "finish", "prompt")
TASKS = (Task("causal", frozenset({"lm"}), run, coerce_prompt, COLUMNS, OPTIONS, PROMPT_FIELDS),
         Task("seq2seq", frozenset({"lm"}), run, coerce_prompt, COLUMNS, OPTIONS, PROMPT_FIELDS))
"""Both generation kinds; :mod:`.dispatch` lists them."""
