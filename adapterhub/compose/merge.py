"""``Merge``: run weight-space adapters (LoRA, DoRA, IA3, BitDelta, their soups) folded into the base, and back.

``Merge(ah, "a", "b")`` makes ``Stack("a", "b")`` the active composition, prediction head included
(exactly ``ah.activate("a", "b")``: the adapters named are what runs, as loading one makes it run), then
folds them into the weights in that order, so the model computes what that activation computes at no
extra inference cost. All or nothing: activation-space adapters are refused before anything changes;
a merge the weights cannot express (:class:`~adapterhub.errors.MergeConflictError`, see
:meth:`AdapterModel.merge`) undoes the merges before it (within float rounding, <= 1e-6) and
restores the previous activation. Unmerging goes in reverse order, so DoRA's row rescaling (which
depends on the weights it was merged onto) is undone exactly; the adapters stay active, now from hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import AdapterStateError
from ..runtime.methods import REGISTRY, method_names

if TYPE_CHECKING:
    from ..runtime.handle import AdapterModel


class Merge:
    """``Merge(ah, "soup")`` merges now; ``.unmerge()`` (or leaving a ``with`` block) restores the base."""

    def __init__(self, ah: AdapterModel, *names: str) -> None:
        if not names:
            raise AdapterStateError("Merge needs at least one adapter name")
        self.ah = ah
        self.names: tuple[str, ...] = ()
        for n in names:  # refuse activation-space methods before touching any weight
            method = ah.method_name(n)
            if method not in REGISTRY or not REGISTRY[method].weight_space:
                raise AdapterStateError(f"adapter {n!r} ({method}) works in activation space and cannot be merged",
                                        hint=f"Merge folds {', '.join(method_names(weight_space=True))} adapters "
                                             "(and soups of them)")
            if n in ah.merged:
                raise AdapterStateError(f"adapter {n!r} is already merged", hint=f"ah.unmerge({n!r}) first")
        previous = ah.active
        ah.activate(*names)  # what runs now: these adapters (and the head of the last one that has one)
        done: list[str] = []
        try:
            for n in names:
                ah.merge(n)
                done.append(n)
        except BaseException:
            for n in reversed(done):
                ah.unmerge(n)
            ah.activate(*previous)
            raise
        self.names = tuple(done)

    def unmerge(self) -> None:
        for n in reversed(self.names):
            self.ah.unmerge(n)
        self.names = ()

    def __enter__(self) -> Merge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.unmerge()
