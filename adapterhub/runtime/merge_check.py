"""Merged adapters and the active composition must compute one function; otherwise refuse.

A merged adapter lives in a projection's weight, so on that projection it acts before every hook, in
the order adapters were merged. The active composition orders its members too (the top-level Stack,
member by member). For each projection two sequences of weight operations (:mod:`adapterhub.runtime.folds`)
are compared:

* **wanted**: merged adapters the composition does not use (they are part of the base now), in merge
  order; then the composition's operations in Stack order, input scalings last (an input scaling acts
  on everything the output hooks add, since they read the scaled input);
* **actual**: every merged adapter in merge order; then the composition's unmerged operations as above.

They are the same function exactly when every two operations that do not commute come in the same
order in both, and an operation that reads the weight (DoRA's row norm) finds only base operations
folded into it. Merging an adapter that sits inside a block (Parallel, Mix, Route, Fuse, Ensemble...)
would apply it to every branch, row or member, so that is refused too. Callers run :func:`check_merged`
on the state they are about to create, before any weight changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..blocks import Block, leaf_names, summary, top_chain
from ..errors import MergeConflictError
from .attached import Attachments
from .folds import Fold, combined, commute, overlap

DESCRIBE = {"add": "adds to the output", "scale": "scales the output", "scale_in": "scales the input",
            "other": "rescales output rows by the weight's norms"}


@dataclass(frozen=True)
class _Op:
    key: tuple
    """Identity: ("base", name, site kind) or ("use", position in the top-level Stack, site kind)."""
    who: str
    fold: Fold
    merged: bool

    @property
    def base(self) -> bool:
        return self.key[0] == "base"


def check_merged(handle: Attachments, block: Block | None, merged: Sequence[str], *, doing: str,
                 hint: str) -> None:
    """Raise :class:`MergeConflictError` unless ``block`` with adapters ``merged`` (in merge order)
    folded into the weights computes what ``block`` computes unmerged. ``doing`` and ``hint`` word the error."""
    if not merged:  # nothing in the weights: every operation runs from hooks, in the composition's order
        return
    chain = top_chain(block)
    used = set(leaf_names(block))
    for name in merged:
        if name not in used:
            continue
        spots = [i for i, item in enumerate(chain) if item == name]
        if len(spots) != 1 or leaf_names(block).count(name) != 1:
            where = "more than once" if len(spots) > 1 else "inside a block"
            raise MergeConflictError(
                f"{doing}: the active composition {summary(block)} uses adapter {name!r} {where}; merged into the "
                "weights it would act once, on every branch, row and member",
                hint="keep it unmerged there, or activate a plain Stack that uses it once")
    folds = {n: _folds(handle, n) for n in set(merged) | used}
    wanted: dict[Any, list[_Op]] = {}
    actual: dict[Any, list[_Op]] = {}
    position = {item: i for i, item in enumerate(chain) if isinstance(item, str)}
    for name in merged:  # the weights, in merge order
        for (kind, module), fold in folds[name].items():
            key = ("use", position[name], kind) if name in used else ("base", name, kind)
            op = _Op(key, name, fold, True)
            actual.setdefault(module, []).append(op)
            if op.base:
                wanted.setdefault(module, []).append(op)
    hooks: dict[Any, list[_Op]] = {}
    for kind_order in ("out", "in"):  # input scalings act on all that output hooks add: they come last
        for i, item in enumerate(chain):
            for (kind, module), fold in _item_folds(item, folds).items():
                if kind != kind_order:
                    continue
                is_merged = isinstance(item, str) and item in merged
                op = _Op(("use", i, kind), _who(item, handle), fold, is_merged)
                wanted.setdefault(module, []).append(op)
                if not is_merged:
                    hooks.setdefault(module, []).append(op)
    for module, ops in hooks.items():
        actual.setdefault(module, []).extend(ops)
    for module, want in wanted.items():
        _compare(handle, module, want, actual.get(module, []), doing, hint)


def _item_folds(item: Block, folds: dict[str, dict[tuple, Fold]]) -> dict[tuple, Fold]:
    """One top-level item's operation per site: an adapter's own, or its members' combined."""
    if isinstance(item, str):
        return folds[item]
    per_site: dict[tuple, list[Fold]] = {}
    for leaf in item.leaves():
        for site, fold in folds[leaf].items():
            per_site.setdefault(site, []).append(fold)
    out = {}
    for site, items in per_site.items():
        fold = combined(items)
        if fold is not None:
            out[site] = fold
    return out


def _compare(handle: Attachments, module: Any, want: list[_Op], actual: list[_Op], doing: str, hint: str) -> None:
    at = {op.key: i for i, op in enumerate(actual)}
    for i, first in enumerate(want):
        for second in want[i + 1:]:
            if not commute(first.fold, second.fold) and at[first.key] > at[second.key]:
                raise MergeConflictError(
                    f"{doing}: at {_module_name(handle, module)} the active composition applies {first.who} "
                    f"({DESCRIBE[first.fold.kind]}) before {second.who} ({DESCRIBE[second.fold.kind]}), but "
                    f"{second.who} would be merged into the weight and act first; the two do not commute, "
                    "so the model would compute something else", hint=hint)
    for i, op in enumerate(actual):
        if not op.fold.reads_weight:
            continue
        for earlier in actual[:i]:
            if earlier.merged and not earlier.base and overlap(earlier.fold, op.fold):
                raise MergeConflictError(
                    f"{doing}: at {_module_name(handle, module)} {op.who} reads the weight (DoRA's row norm), "
                    f"which would hold merged {earlier.who} from the same composition; the model would compute "
                    "something else", hint=hint)


def check_unmerge_order(handle: Attachments, name: str, merged: Sequence[str]) -> None:
    """Unmerging ``name`` undoes its fold on the current weight: exact only if every adapter merged after
    it on a shared projection commutes with it."""
    mine = _folds(handle, name)
    later = list(merged)[list(merged).index(name) + 1:]
    for other in later:
        for site, fold in _folds(handle, other).items():
            for my_site, my_fold in mine.items():
                if my_site[1] is site[1] and not commute(my_fold, fold):
                    raise MergeConflictError(
                        f"cannot unmerge {name!r}: {other!r} was merged after it into "
                        f"{_module_name(handle, site[1])} and the two do not commute, so removing {name!r} "
                        "from the weight would not restore it",
                        hint=f"unmerge {other!r} first: undo merges in reverse order")


def _who(item: Block, handle: Attachments) -> str:
    if isinstance(item, str):
        return f"{handle.entry(item).method.name} adapter {item!r}"
    return summary(item)


def _module_name(handle: Attachments, module: Any) -> str:
    for name, m in handle.model.named_modules():
        if m is module:
            return name
    return type(module).__name__  # pragma: no cover - sites are modules of this model


def _folds(handle: Attachments, name: str) -> dict[tuple, Fold]:
    return handle.entry(name).method.folds()
