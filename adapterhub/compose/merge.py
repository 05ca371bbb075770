"""``Merge``: fold several weight-space adapters (LoRA, DoRA, IA3, their soups) into the base, and back.

All or nothing: activation-space adapters are refused before any weight changes; if a merge still
fails midway (an adapter already merged), the ones merged before it are unmerged again (restored
within float rounding, <= 1e-6) and the error is raised. Unmerging goes in reverse order, so
DoRA's row rescaling (which depends on the weights it was merged onto) is undone exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import AdapterStateError

if TYPE_CHECKING:
    from ..runtime.handle import AdapterModel


class Merge:
    """``Merge(ah, "soup")`` merges now; ``.unmerge()`` (or leaving a ``with`` block) restores the base."""

    def __init__(self, ah: AdapterModel, *names: str) -> None:
        if not names:
            raise AdapterStateError("Merge needs at least one adapter name")
        from ..runtime.methods import REGISTRY

        self.ah = ah
        self.names: tuple[str, ...] = ()
        for n in names:  # refuse activation-space methods before touching any weight
            method = ah.package(n).method
            if not REGISTRY[method].weight_space:
                raise AdapterStateError(f"adapter {n!r} ({method}) works in activation space and cannot be merged",
                                        hint="Merge folds lora, dora, ia3 and bitdelta adapters (and soups of the first three)")
        done: list[str] = []
        try:
            for n in names:
                ah.merge(n)
                done.append(n)
        except BaseException:
            for n in reversed(done):
                ah.unmerge(n)
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
