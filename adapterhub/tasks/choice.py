"""Multiple choice (SWAG, COPA style): which of an input's candidate continuations the head prefers.

Each candidate is paired with the input text (the tokenizer gets ``(text, choice)``) and the head gives
one logit per candidate; probabilities are the softmax over the input's candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgumentError
from .classify import DEFAULT_BATCH_SIZE, MAX_LENGTH
from .types import Task, TaskSpec, batches, fixed_columns, inference, record_text


@dataclass(frozen=True)
class ChoiceInput:
    text: str
    choices: tuple[str, ...]


def coerce_choice(record: Any) -> ChoiceInput:
    """A :class:`ChoiceInput` or a mapping with ``text`` and ``choices`` (at least two strings)."""
    if isinstance(record, ChoiceInput):
        return record
    if isinstance(record, str):
        raise InvalidArgumentError(f"input {record!r} has no choices", hint="give them with --choice (or 'choices')")
    if not isinstance(record, Mapping):
        raise InvalidArgumentError(f"a multiple-choice input is a mapping, got {type(record).__name__}")
    text = record_text(record, "text", "question", "context", where="multiple-choice input")
    choices = record.get("choices")
    if not isinstance(choices, list | tuple) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        raise InvalidArgumentError(f"input {text!r} needs 'choices': a list of at least two strings, got {choices!r}")
    assert text is not None
    return ChoiceInput(text, tuple(choices))


@dataclass(frozen=True)
class ChoicePrediction:
    """The preferred candidate (``choices[choice] == answer``) and every candidate's probability."""

    text: str
    choices: tuple[str, ...]
    choice: int
    probabilities: list[float]

    @property
    def answer(self) -> str:
        return self.choices[self.choice]

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "choices": list(self.choices), "choice": self.choice, "answer": self.answer,
                "probability": round(self.probabilities[self.choice], 6),
                "probabilities": [round(p, 6) for p in self.probabilities]}

    def table_rows(self) -> list[dict[str, str]]:
        return [{"answer": self.answer, "probability": f"{self.probabilities[self.choice]:.4f}", "text": self.text}]


def choose(model: Any, tokenizer: Any, inputs: Sequence[ChoiceInput], spec: TaskSpec, *,
           batch_size: int = DEFAULT_BATCH_SIZE, on_batch: Callable[[int], None] | None = None) -> list[ChoicePrediction]:
    """Softmax over each input's candidates, in input order (a batch holds inputs with equal candidate counts)."""
    import torch

    max_length = min(MAX_LENGTH, spec.max_length or MAX_LENGTH)
    out: list[ChoicePrediction] = []
    with inference(model):
        for chunk in batches(inputs, batch_size, on_batch):
            groups = [chunk] if len({len(i.choices) for i in chunk}) == 1 else [[i] for i in chunk]
            for group in groups:
                n = len(group[0].choices)
                enc = tokenizer([i.text for i in group for _ in i.choices], [c for i in group for c in i.choices],
                                padding=True, truncation=True, max_length=max_length, return_tensors="pt")
                logits = model(**{k: v.view(len(group), n, -1) for k, v in enc.items()}).logits.float()
                for item, row in zip(group, torch.softmax(logits, dim=-1).tolist(), strict=True):
                    out.append(ChoicePrediction(item.text, item.choices, max(range(n), key=row.__getitem__), row))
    return out


TASK = Task("choice", frozenset({"multiple-choice"}), choose, coerce_choice,
            fixed_columns("answer", "probability", "text"), frozenset(), ("text", "choices"))
