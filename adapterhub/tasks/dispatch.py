"""Which task runs an adapter: the manifest's head type names the kind, the kind names the :class:`Task`.

Head types (``schemas/adapter-manifest.v1.json``) map to kinds: the sequence heads to ``classify``,
``token-classification`` to ``tokens``, ``question-answering`` to ``qa``, ``multiple-choice`` to
``choice``, and ``lm`` to ``seq2seq`` when the base config says ``is_encoder_decoder``, else ``causal``.
A kind is served once its module's ``TASK`` (or ``TASKS``) is listed in :data:`TASKS` below.
"""

from __future__ import annotations

from ..errors import SchemaError, SchemaProblem
from . import choice, classify, generate, qa, tokens
from .types import Task

HEAD_KINDS: dict[str, str] = {
    "classification": "classify",
    "multilabel-classification": "classify",
    "regression": "classify",
    "token-classification": "tokens",
    "question-answering": "qa",
    "multiple-choice": "choice",
}
"""Manifest head type -> task kind (``lm`` is decided by :func:`task_kind`)."""

TASKS: dict[str, Task] = {t.kind: t for t in (classify.TASK, tokens.TASK, qa.TASK, choice.TASK, *generate.TASKS)}
"""Task kind -> its task; a module adds itself here."""


def task_kind(head_type: str, *, is_encoder_decoder: bool = False) -> str:
    """The task kind for a manifest head type (``lm``: ``seq2seq`` or ``causal``)."""
    if head_type == "lm":
        return "seq2seq" if is_encoder_decoder else "causal"
    if head_type not in HEAD_KINDS:
        raise SchemaError("head", [SchemaProblem("/head/type", f"unknown head type {head_type!r}; known: "
                                                 f"{', '.join(sorted([*HEAD_KINDS, 'lm']))}")])
    return HEAD_KINDS[head_type]


def task_for(kind: str, where: str = "adapter") -> Task:
    """The registered task of ``kind``; a typed error naming what can run when none serves it."""
    if kind not in TASKS:
        raise SchemaError(where, [SchemaProblem("/head/type", f"`run` has no {kind!r} task yet; it runs "
                                                f"{', '.join(sorted(t for task in TASKS.values() for t in task.head_types))} heads")])
    return TASKS[kind]


def kinds_for(head_type: str) -> tuple[str, ...]:
    """Every task kind a head type may run as (``lm``: both, until the base config decides)."""
    return ("causal", "seq2seq") if head_type == "lm" else (task_kind(head_type),)


def check_served(head_type: str, where: str = "adapter") -> None:
    """Refuse a head type no registered task can run, before anything is fetched or loaded."""
    kinds = kinds_for(head_type)
    if not any(k in TASKS for k in kinds):
        task_for(kinds[0], where)
