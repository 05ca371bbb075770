"""Extractive question answering: the best answer span in the context, with its character offsets.

A context longer than one window is read in overlapping windows (``doc_stride`` tokens shared by
neighbours, the question repeated in each). In each window the start and end logits are turned into
probabilities over that window's context tokens only (question, special and padding tokens can never
be part of an answer); a span's score is ``p_start * p_end``, spans are at most
``max_answer_length`` tokens, and the best-scoring span over all windows wins. Offsets come from the
fast tokenizer's offset mapping: ``context[start:end]`` is the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidArgumentError
from .types import Task, TaskSpec, batches, fixed_columns, inference, record_text

MAX_SEQ_LENGTH = 384
DEFAULT_DOC_STRIDE = 128
DEFAULT_MAX_ANSWER_LENGTH = 30
DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class QAInput:
    question: str
    context: str


def coerce_qa(record: Any) -> QAInput:
    """A :class:`QAInput` or a mapping with ``question`` (or ``text``) and ``context`` (or ``text_pair``)."""
    if isinstance(record, QAInput):
        record = {"question": record.question, "context": record.context}
    if isinstance(record, str):
        raise InvalidArgumentError(f"question {record!r} has no context",
                                   hint="give the passage to search with --context (or a 'context' field)")
    if not isinstance(record, Mapping):
        raise InvalidArgumentError(f"a question-answering input is a mapping, got {type(record).__name__}")
    question = record_text(record, "question", "text", where="question-answering input")
    context = record_text(record, "context", "text_pair", where=f"question {question!r}")
    assert question is not None and context is not None
    return QAInput(question, context)


@dataclass(frozen=True)
class Answer:
    """The best span: ``context[start:end] == answer``."""

    question: str
    answer: str
    score: float
    start: int
    end: int

    def to_json(self) -> dict[str, Any]:
        return {"question": self.question, "answer": self.answer, "score": round(self.score, 6),
                "start": self.start, "end": self.end}

    def table_rows(self) -> list[dict[str, str]]:
        return [{"answer": self.answer, "score": f"{self.score:.4f}", "span": f"{self.start}-{self.end}",
                 "question": self.question}]


def best_span(start_probs: Any, end_probs: Any, max_answer_length: int) -> tuple[float, int, int]:
    """``(p_start[i] * p_end[j], i, j)`` maximal over ``i <= j < i + max_answer_length``."""
    import torch

    scores = start_probs[:, None] * end_probs[None, :]
    n = scores.shape[0]
    idx = torch.arange(n)
    allowed = (idx[None, :] >= idx[:, None]) & (idx[None, :] - idx[:, None] < max_answer_length)
    scores = torch.where(allowed, scores, torch.zeros_like(scores))
    flat = int(torch.argmax(scores))
    return float(scores.flatten()[flat]), flat // n, flat % n


def check_window(tokenizer: Any, question: str, max_length: int, stride: int) -> None:
    """Each window holds the question, the special tokens and more context tokens than the stride (the
    tokenizer would otherwise abort the process-wide, with an exception no ``except Exception`` catches)."""
    used = len(tokenizer(question.lstrip(), add_special_tokens=False)["input_ids"])
    room = max_length - used - tokenizer.num_special_tokens_to_add(pair=True)
    if room <= stride:
        raise InvalidArgumentError(
            f"question {question!r} ({used} tokens) leaves {max(room, 0)} context tokens in a window of {max_length}, "
            f"not more than the stride {stride}", hint="shorten the question, or lower --doc-stride / raise --max-length")


def answer(model: Any, tokenizer: Any, inputs: Sequence[QAInput], spec: TaskSpec, *,
           batch_size: int = DEFAULT_BATCH_SIZE, on_batch: Callable[[int], None] | None = None,
           doc_stride: int | None = None, max_answer_length: int = DEFAULT_MAX_ANSWER_LENGTH,
           max_length: int | None = None) -> list[Answer]:
    """The best answer of each question in its context, in input order."""
    import torch

    if not getattr(tokenizer, "is_fast", False):
        raise InvalidArgumentError(f"{spec.adapter}: question answering needs a fast tokenizer (character offsets); "
                                   f"{type(tokenizer).__name__} is not one")
    limit = min(MAX_SEQ_LENGTH, spec.max_length or MAX_SEQ_LENGTH)
    max_length = limit if max_length is None else max_length
    if not 8 <= max_length <= limit:
        raise InvalidArgumentError(f"max_length must be between 8 and {limit} (this base's limit), got {max_length}")
    stride = min(DEFAULT_DOC_STRIDE, max_length // 4) if doc_stride is None else doc_stride
    if stride < 0 or max_answer_length < 1:
        raise InvalidArgumentError(f"doc_stride must be >= 0 and max_answer_length >= 1, got {stride}, "
                                   f"{max_answer_length}")
    for item in inputs:
        check_window(tokenizer, item.question, max_length, stride)
    question_first = getattr(tokenizer, "padding_side", "right") == "right"
    context_id = 1 if question_first else 0
    out: list[Answer] = []
    with inference(model):
        for chunk in batches(inputs, batch_size, on_batch):
            questions = [i.question.lstrip() for i in chunk]  # leading blanks only waste the window
            contexts = [i.context for i in chunk]
            first, second = (questions, contexts) if question_first else (contexts, questions)
            enc = tokenizer(first, second, truncation="only_second" if question_first else "only_first",
                            max_length=max_length, stride=stride, return_overflowing_tokens=True,
                            return_offsets_mapping=True, padding=True, return_tensors="pt")
            sample = enc.pop("overflow_to_sample_mapping").tolist()
            offsets = enc.pop("offset_mapping").tolist()
            logits = model(**enc)
            starts, ends = logits.start_logits.float(), logits.end_logits.float()
            best: list[tuple[float, int, int] | None] = [None] * len(chunk)
            for row, n in enumerate(sample):
                in_context = torch.tensor([s == context_id for s in enc.sequence_ids(row)])
                if not bool(in_context.any()):
                    continue
                p_start = torch.softmax(starts[row].masked_fill(~in_context, float("-inf")), dim=-1)
                p_end = torch.softmax(ends[row].masked_fill(~in_context, float("-inf")), dim=-1)
                score, i, j = best_span(p_start, p_end, max_answer_length)
                if best[n] is None or score > best[n][0]:  # type: ignore[index]
                    best[n] = (score, offsets[row][i][0], offsets[row][j][1])
            for item, found in zip(chunk, best, strict=True):
                if found is None:
                    raise InvalidArgumentError(f"question {item.question!r}: no window holds any of the context",
                                               hint="shorten the question or raise --max-length")
                score, start, end = found
                out.append(Answer(item.question, item.context[start:end], score, start, end))
    return out


TASK = Task("qa", frozenset({"question-answering"}), answer, coerce_qa, fixed_columns("answer", "score", "span", "question"),
            frozenset({"doc_stride", "max_answer_length", "max_length"}), ("question", "context"))
