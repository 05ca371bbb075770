"""Sequence-level heads: classification (softmax), multilabel (sigmoid, every label over a threshold)
and regression (the raw score), on single texts or text pairs (NLI: the tokenizer gets both).

Batches are taken in input order and padded to their longest member (dynamic padding), so the same
inputs and batch size always give the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgumentError
from .types import Task, TaskSpec, batches, inference, record_text

DEFAULT_BATCH_SIZE = 32
MAX_LENGTH = 512  # BERT-family position limit; longer inputs are truncated
DEFAULT_THRESHOLD = 0.5
TEXT_FIELDS = ("text", "sentence", "sentence1", "premise")
PAIR_FIELDS = ("text_pair", "sentence2", "hypothesis")


@dataclass(frozen=True)
class TextInput:
    """One text, or a pair of texts (premise and hypothesis, question and passage...)."""

    text: str
    text_pair: str | None = None


def coerce_text(record: Any) -> TextInput:
    """A string, a :class:`TextInput`, or a mapping with ``text`` (and optionally ``text_pair``)."""
    if isinstance(record, TextInput):
        return record
    if isinstance(record, str):
        return TextInput(record)
    text = record_text(record, *TEXT_FIELDS, where="classification input", required=False)
    if text is None:
        raise InvalidArgumentError(f"classification input {dict(record)!r} has no 'text' field")
    return TextInput(text, record_text(record, *PAIR_FIELDS, where="classification input", required=False))


def coerce_pair(record: Any) -> TextInput:
    """Like :func:`coerce_text`, but the pair is required (a head trained on pairs needs both)."""
    item = coerce_text(record)
    if item.text_pair is None:
        raise InvalidArgumentError(f"input {item.text!r} has no second text", hint="give it as text_pair")
    return item


@dataclass(frozen=True)
class Prediction:
    """One input's result: the label with the highest probability, and every label's probability."""

    text: str
    label: str
    label_id: int
    probability: float
    probabilities: dict[str, float]
    text_pair: str | None = None

    def to_json(self) -> dict[str, Any]:
        pair = {} if self.text_pair is None else {"text_pair": self.text_pair}
        return {"text": self.text, **pair, "label": self.label, "label_id": self.label_id,
                "probability": round(self.probability, 6),
                "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()}}

    def table_rows(self) -> list[dict[str, str]]:
        return [{"label": self.label, "probability": f"{self.probability:.4f}", "text": shown(self.text, self.text_pair)}]


@dataclass(frozen=True)
class MultilabelPrediction:
    """Every label whose sigmoid probability reaches the threshold (possibly none), and all probabilities."""

    text: str
    labels: list[str]
    probabilities: dict[str, float]
    threshold: float
    text_pair: str | None = None

    def to_json(self) -> dict[str, Any]:
        pair = {} if self.text_pair is None else {"text_pair": self.text_pair}
        return {"text": self.text, **pair, "labels": self.labels, "threshold": self.threshold,
                "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()}}

    def table_rows(self) -> list[dict[str, str]]:
        return [{"labels": ",".join(self.labels) or "-", "text": shown(self.text, self.text_pair)}]


@dataclass(frozen=True)
class Score:
    """A regression head's output (e.g. a similarity score), as the model computes it."""

    text: str
    score: float
    text_pair: str | None = None

    def to_json(self) -> dict[str, Any]:
        pair = {} if self.text_pair is None else {"text_pair": self.text_pair}
        return {"text": self.text, **pair, "score": round(self.score, 6)}

    def table_rows(self) -> list[dict[str, str]]:
        return [{"score": f"{self.score:.4f}", "text": shown(self.text, self.text_pair)}]


def shown(text: str, pair: str | None) -> str:
    """How the table shows an input: the text, or both texts joined by `` | ``."""
    return text if pair is None else f"{text} | {pair}"


def logits_of(model: Any, tokenizer: Any, items: Sequence[TextInput], *, batch_size: int, max_length: int,
              on_batch: Callable[[int], None] | None) -> list[tuple[Sequence[TextInput], Any]]:
    """Float32 logits of each batch, in input order (model in eval mode, restored afterwards)."""
    pairs = {item.text_pair is None for item in items}
    if len(pairs) > 1:
        raise InvalidArgumentError("some inputs have a text_pair and some do not; a head reads one or the other")
    out = []
    with inference(model):
        for chunk in batches(items, batch_size, on_batch):
            texts = [i.text for i in chunk]
            second = None if chunk[0].text_pair is None else [i.text_pair for i in chunk]
            enc = tokenizer(texts, second, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            out.append((chunk, model(**enc).logits.float()))
    return out


def classify(model: Any, tokenizer: Any, texts: Sequence[str | TextInput], labels: Sequence[str], *,
             batch_size: int = DEFAULT_BATCH_SIZE, max_length: int = MAX_LENGTH,
             on_batch: Callable[[int], None] | None = None) -> list[Prediction]:
    """Softmax predictions of a sequence-classification model, in input order.

    ``on_batch(n)`` is called after each batch of ``n`` inputs (a progress bar).
    """
    import torch

    out: list[Prediction] = []
    items = [coerce_text(t) for t in texts]
    for chunk, logits in logits_of(model, tokenizer, items, batch_size=batch_size, max_length=max_length,
                                   on_batch=on_batch):
        for item, row in zip(chunk, torch.softmax(logits, dim=-1).tolist(), strict=True):
            best = max(range(len(row)), key=row.__getitem__)
            out.append(Prediction(item.text, labels[best], best, row[best], dict(zip(labels, row, strict=True)),
                                  item.text_pair))
    return out


def multilabel(model: Any, tokenizer: Any, items: Sequence[TextInput], labels: Sequence[str], *,
               threshold: float = DEFAULT_THRESHOLD, batch_size: int = DEFAULT_BATCH_SIZE,
               max_length: int = MAX_LENGTH, on_batch: Callable[[int], None] | None = None) -> list[MultilabelPrediction]:
    """Independent sigmoid probabilities; every label at or over ``threshold``, in label order."""
    import torch

    if not 0.0 <= threshold <= 1.0:
        raise InvalidArgumentError(f"threshold must be between 0 and 1, got {threshold}")
    out: list[MultilabelPrediction] = []
    for chunk, logits in logits_of(model, tokenizer, items, batch_size=batch_size, max_length=max_length,
                                   on_batch=on_batch):
        for item, row in zip(chunk, torch.sigmoid(logits).tolist(), strict=True):
            out.append(MultilabelPrediction(item.text, [lab for lab, p in zip(labels, row, strict=True) if p >= threshold],
                                            dict(zip(labels, row, strict=True)), threshold, item.text_pair))
    return out


def regress(model: Any, tokenizer: Any, items: Sequence[TextInput], *, batch_size: int = DEFAULT_BATCH_SIZE,
            max_length: int = MAX_LENGTH, on_batch: Callable[[int], None] | None = None) -> list[Score]:
    """The single output of a regression head, unchanged."""
    out: list[Score] = []
    for chunk, logits in logits_of(model, tokenizer, items, batch_size=batch_size, max_length=max_length,
                                   on_batch=on_batch):
        out += [Score(item.text, float(row[0]), item.text_pair) for item, row in zip(chunk, logits.tolist(), strict=True)]
    return out


def run(model: Any, tokenizer: Any, inputs: Sequence[TextInput], spec: TaskSpec, *,
        batch_size: int = DEFAULT_BATCH_SIZE, on_batch: Callable[[int], None] | None = None,
        **options: Any) -> list[Any]:
    """The :class:`Task` entry point: the head type picks softmax, sigmoid or the raw score."""
    max_length = min(MAX_LENGTH, spec.max_length or MAX_LENGTH)
    common: Mapping[str, Any] = {"batch_size": batch_size, "max_length": max_length, "on_batch": on_batch}
    if spec.head_type == "regression":
        if options:
            raise InvalidArgumentError(f"a regression head takes no options, got {', '.join(sorted(options))}")
        return regress(model, tokenizer, inputs, **common)
    if spec.head_type == "multilabel-classification":
        return multilabel(model, tokenizer, inputs, spec.labels, threshold=options.get("threshold", DEFAULT_THRESHOLD),
                          **common)
    if options:
        raise InvalidArgumentError(f"--threshold applies to multilabel heads; this one is {spec.head_type}")
    return classify(model, tokenizer, inputs, spec.labels, **common)


def columns(head_type: str) -> tuple[str, ...]:
    """The CLI table's columns for a sequence head."""
    return {"regression": ("score", "text"), "multilabel-classification": ("labels", "text")}.get(
        head_type, ("label", "probability", "text"))


TASK = Task("classify", frozenset({"classification", "multilabel-classification", "regression"}), run, coerce_text,
            columns, frozenset({"threshold"}), ("text", "text_pair"))
