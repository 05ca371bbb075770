"""What every task kind shares: its inputs' record shape, its run function, its typed results.

A task kind registers one :class:`Task` (see :mod:`.dispatch`). Inputs reach it as plain records
(``str`` or a mapping with the fields the task names), which :attr:`Task.coerce` turns into the task's
own input type or refuses with an :class:`~adapterhub.errors.InvalidArgumentError`; results are
dataclasses with ``to_json()`` (one JSON Lines object) and ``table_rows()`` (the CLI table).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import InvalidArgumentError


class TaskResult(Protocol):
    """One input's result."""

    def to_json(self) -> dict[str, Any]: ...

    def table_rows(self) -> list[dict[str, str]]: ...


@dataclass(frozen=True)
class TaskSpec:
    """What a task needs to know about the adapter besides the model: its head and label names."""

    head_type: str
    labels: tuple[str, ...] = ()
    adapter: str = "adapter"
    max_length: int | None = None
    """The base's longest input in tokens (None: the tokenizer's own limit)."""


RunFn = Callable[..., list[Any]]
"""``run(model, tokenizer, inputs, spec, *, batch_size, on_batch, **options) -> list[TaskResult]``:
``inputs`` already coerced, ``on_batch(n)`` called after each ``n`` inputs, ``options`` only names in
:attr:`Task.options`."""


@dataclass(frozen=True)
class Task:
    """A task kind: which head types it serves, how its inputs look, how it runs."""

    kind: str
    head_types: frozenset[str]
    run: RunFn
    coerce: Callable[[Any], Any]
    """One input record (``str`` or mapping) -> the task's input object; raises InvalidArgumentError."""
    columns: Callable[[str], tuple[str, ...]]
    """Head type -> column names of the CLI table (keys of ``table_rows()``)."""
    options: frozenset[str] = field(default_factory=frozenset)
    """Keyword options ``run`` accepts (the CLI refuses a task option this task does not use)."""
    fields: tuple[str, ...] = ("text",)
    """Record fields the task reads (documentation and error messages)."""


def record_text(record: Mapping[str, Any], *names: str, where: str, required: bool = True) -> str | None:
    """The first of ``names`` present in a mapping record; ``required``: it must be non-blank."""
    if isinstance(record, Mapping):
        value = next((record[n] for n in names if record.get(n) is not None), None)
    else:
        raise InvalidArgumentError(f"{where}: an input is a string or a mapping of fields, got {type(record).__name__}")
    if value is not None and not isinstance(value, str):
        raise InvalidArgumentError(f"{where}: field {names[0]!r} must be a string, got {type(value).__name__}")
    if required and (value is None or not value.strip()):
        raise InvalidArgumentError(f"{where}: input needs a non-empty {names[0]!r}",
                                   hint=f"give it as field {' / '.join(repr(n) for n in names)}")
    return value


def check_options(task: Task, options: Mapping[str, Any]) -> None:
    """Refuse options the task does not use, naming the ones it does."""
    unknown = sorted(set(options) - task.options)
    if unknown:
        uses = ", ".join(sorted(task.options)) or "none"
        raise InvalidArgumentError(f"option(s) {', '.join(unknown)} do not apply to {task.kind} "
                                   f"(head types {', '.join(sorted(task.head_types))}); its options: {uses}")


def batches(items: Sequence[Any], size: int, on_batch: Callable[[int], None] | None = None) -> Iterator[Sequence[Any]]:
    """``items`` in consecutive chunks of ``size`` (input order kept); ``on_batch(n)`` after each chunk of ``n``."""
    if size < 1:
        raise InvalidArgumentError(f"batch size must be at least 1, got {size}")
    return chunks(items, size, on_batch)


def chunks(items: Sequence[Any], size: int, on_batch: Callable[[int], None] | None) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        chunk = items[start:start + size]
        yield chunk
        if on_batch is not None:
            on_batch(len(chunk))


@contextmanager
def inference(model: Any) -> Iterator[None]:
    """The model in eval mode under ``torch.inference_mode()``; its training flag restored afterwards."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def fixed_columns(*names: str) -> Callable[[str], tuple[str, ...]]:
    """:attr:`Task.columns` of a task whose table looks the same for every head type."""
    return lambda head_type: names
