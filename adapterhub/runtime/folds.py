"""What folding a weight-space adapter into a projection does, and which folds commute.

Merging an adapter rewrites a projection's weight ``W`` (and bias); the hooks of unmerged adapters then
act on that projection's output (or input) in the order of the active Stack. Whether a merged adapter
still computes what the composition says depends only on how the operations on ``W`` compose:

* ``add``: ``W + D`` (LoRA, BitDelta), output rows only;
* ``scale``: ``diag(l) W`` and ``l * b`` (IA3 on the output);
* ``scale_in``: ``W diag(l)`` (IA3 on the input, ``feedforward_modules``): its hook scales the input every
  later output hook reads, so it acts on everything they add;
* ``other``: anything else (DoRA's ``m / ||W + s B A||`` rescaling), which commutes with nothing; a fold
  with ``reads_weight`` also depends on the weight it is applied to.

Two adds commute, and so do any two scalings (rows and columns); operations on disjoint output rows of
a fused projection (GPT-2's ``c_attn`` thirds) always commute. Everything else is order-dependent:
``l * (W x + D x) != (l * W) x + D x``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

KINDS = ("add", "scale", "scale_in", "other")
_COMMUTING = {("add", "add"), ("scale", "scale"), ("scale", "scale_in"), ("scale_in", "scale"),
              ("scale_in", "scale_in")}


@dataclass(frozen=True)
class Fold:
    """One adapter's operation on one projection weight (see the module docstring)."""

    kind: str
    rows: frozenset[int] | None = None
    """First output row of every fused-projection slice it touches; None: every row."""
    reads_weight: bool = False
    """Its result depends on the weight it acts on (DoRA's row norm), not only on its own tensors."""


def commute(a: Fold, b: Fold) -> bool:
    """Whether applying ``a`` then ``b`` to a weight equals applying ``b`` then ``a``."""
    if a.rows is not None and b.rows is not None and not a.rows & b.rows:
        return True
    return (a.kind, b.kind) in _COMMUTING


def overlap(a: Fold, b: Fold) -> bool:
    """Whether the two touch a common output row."""
    return a.rows is None or b.rows is None or bool(a.rows & b.rows)


def combined(folds: Iterable[Fold]) -> Fold | None:
    """The operation of a block whose members act at one projection (a Mix, a Route, a nested Stack).

    Members of one kind give that kind (a weighted sum or a per-row choice of adds is an add, of
    scalings a scaling); a mixture is ``other``. None when no member acts there.
    """
    items = list(folds)
    if not items:
        return None
    kinds = {f.kind for f in items}
    rows: frozenset[int] | None = frozenset()
    for f in items:
        rows = None if rows is None or f.rows is None else rows | f.rows
    kind = kinds.pop() if len(kinds) == 1 else "other"
    return Fold(kind, rows, any(f.reads_weight for f in items))
