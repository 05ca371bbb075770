"""Token classification (NER, POS): a label per token, and entities grouped with character offsets.

Every non-special token gets its arg-max label and that label's softmax probability; offsets come
from the fast tokenizer's offset mapping, so ``text[start:end]`` is exactly what was labelled.
Grouping follows the transformers pipeline's ``"simple"`` aggregation: consecutive tokens join an
entity while their tag (the label without ``B-``/``I-``) stays the same and the new token is not a
``B-``; a plain label (``PER``) counts as ``I-PER``; the entity's score is the mean of its tokens'
scores; ``O`` is never an entity. ``aggregation="first"`` labels whole words first, each by its first
sub-token (how such heads are usually trained: the other sub-tokens get no loss), then groups words.
A text longer than the base's input limit is read in consecutive windows, so no token is dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgumentError
from .classify import DEFAULT_BATCH_SIZE, MAX_LENGTH, TextInput, coerce_text
from .types import Task, TaskSpec, batches, fixed_columns, inference

AGGREGATIONS = ("simple", "first")
OUTSIDE = "O"


@dataclass(frozen=True)
class TokenLabel:
    """One labelled piece of the text: a sub-token, or a word with ``aggregation="first"``."""

    token: str
    label: str
    score: float
    start: int
    end: int

    def to_json(self) -> dict[str, Any]:
        return {"token": self.token, "label": self.label, "score": round(self.score, 6), "start": self.start,
                "end": self.end}


@dataclass(frozen=True)
class Entity:
    """A run of tokens with one tag; ``word`` is ``text[start:end]``."""

    entity_group: str
    score: float
    word: str
    start: int
    end: int

    def to_json(self) -> dict[str, Any]:
        return {"entity_group": self.entity_group, "score": round(self.score, 6), "word": self.word,
                "start": self.start, "end": self.end}


@dataclass(frozen=True)
class TokenPrediction:
    """One text's token labels and entities."""

    text: str
    tokens: list[TokenLabel]
    entities: list[Entity]

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "entities": [e.to_json() for e in self.entities],
                "tokens": [t.to_json() for t in self.tokens]}

    def table_rows(self) -> list[dict[str, str]]:
        if not self.entities:
            return [{"entity": "-", "score": "", "span": "", "word": "", "text": self.text}]
        return [{"entity": e.entity_group, "score": f"{e.score:.4f}", "span": f"{e.start}-{e.end}", "word": e.word,
                 "text": self.text} for e in self.entities]


def coerce_single(record: Any) -> TextInput:
    item = coerce_text(record)
    if item.text_pair is not None:
        raise InvalidArgumentError(f"input {item.text!r} has a text_pair; token classification labels one text")
    return item


def tag_of(label: str) -> tuple[str, str]:
    """``("B", "PER")`` for ``B-PER``, ``("I", "PER")`` for ``I-PER`` and for a plain ``PER``."""
    if label.startswith(("B-", "I-")):
        return label[0], label[2:]
    return "I", label


def group(text: str, pieces: Sequence[TokenLabel]) -> list[Entity]:
    """The pipeline's "simple" grouping of labelled pieces (in text order); ``O`` groups are dropped."""
    runs: list[list[TokenLabel]] = []
    for piece in pieces:
        bi, tag = tag_of(piece.label)
        if runs and bi != "B" and tag == tag_of(runs[-1][-1].label)[1]:
            runs[-1].append(piece)
        else:
            runs.append([piece])
    out = []
    for run in runs:
        tag = tag_of(run[0].label)[1]
        if tag != OUTSIDE:
            start, end = run[0].start, run[-1].end
            out.append(Entity(tag, sum(p.score for p in run) / len(run), text[start:end], start, end))
    return out


def first_subtoken_words(text: str, pieces: Sequence[TokenLabel], word_ids: Sequence[int]) -> list[TokenLabel]:
    """One piece per word: the first sub-token's label and score, spanning all its sub-tokens."""
    words: list[TokenLabel] = []
    last = None
    for piece, word in zip(pieces, word_ids, strict=True):
        if words and word == last:
            w = words[-1]
            words[-1] = TokenLabel(text[w.start:piece.end], w.label, w.score, w.start, piece.end)
        else:
            words.append(TokenLabel(text[piece.start:piece.end], piece.label, piece.score, piece.start, piece.end))
        last = word
    return words


def label_tokens(model: Any, tokenizer: Any, inputs: Sequence[TextInput], spec: TaskSpec, *,
                 batch_size: int = DEFAULT_BATCH_SIZE, on_batch: Callable[[int], None] | None = None,
                 aggregation: str = "simple") -> list[TokenPrediction]:
    """Token labels and entities for each text, in input order."""
    import torch

    if aggregation not in AGGREGATIONS:
        raise InvalidArgumentError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, got {aggregation!r}")
    if not getattr(tokenizer, "is_fast", False):
        raise InvalidArgumentError(f"{spec.adapter}: token classification needs a fast tokenizer (character "
                                   f"offsets); {type(tokenizer).__name__} is not one")
    max_length = min(MAX_LENGTH, spec.max_length or MAX_LENGTH)
    out: list[TokenPrediction] = []
    with inference(model):
        for chunk in batches(inputs, batch_size, on_batch):
            texts = [i.text for i in chunk]
            enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, stride=0,
                            return_overflowing_tokens=True, return_offsets_mapping=True,
                            return_special_tokens_mask=True, return_tensors="pt")
            sample = enc.pop("overflow_to_sample_mapping").tolist()
            offsets = enc.pop("offset_mapping").tolist()
            special = enc.pop("special_tokens_mask").tolist()
            probs = torch.softmax(model(**enc).logits.float(), dim=-1)
            best = probs.max(dim=-1)
            pieces: list[list[TokenLabel]] = [[] for _ in chunk]
            words: list[list[int]] = [[] for _ in chunk]
            for row, n in enumerate(sample):
                ids = enc.word_ids(row)
                tokens = enc.tokens(row)
                for k, (start, end) in enumerate(offsets[row]):
                    if special[row][k] or ids[k] is None or not enc["attention_mask"][row][k]:
                        continue
                    label_id = int(best.indices[row, k])
                    pieces[n].append(TokenLabel(tokens[k], spec.labels[label_id], float(best.values[row, k]),
                                                start, end))
                    words[n].append(ids[k])
            for item, mine, ids in zip(chunk, pieces, words, strict=True):
                grouped = first_subtoken_words(item.text, mine, ids) if aggregation == "first" else mine
                out.append(TokenPrediction(item.text, mine, group(item.text, grouped)))
    return out


TASK = Task("tokens", frozenset({"token-classification"}), label_tokens, coerce_single,
            fixed_columns("entity", "score", "span", "word", "text"),
            frozenset({"aggregation"}), ("text",))
