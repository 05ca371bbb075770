"""LoHa's typed config (``config_loha`` in the schema) and the keys that matter only in training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..config import MethodConfig

TRAINING_ONLY = frozenset({"rank_dropout", "module_dropout", "init_weights"})
"""Keys that change how LoHa trains, never what a trained LoHa computes (PEFT applies both dropouts only
in training; ``init_weights`` only picks the starting point)."""


@dataclass(frozen=True)
class LohaConfig(MethodConfig):
    """``r`` and ``alpha`` as PEFT's ``LoHaConfig`` (scaling ``alpha / r``); targets are our neutral names."""

    DEFAULTS: ClassVar[dict[str, Any]] = {
        "target_modules": ("q", "v"), "rank_dropout": 0.0, "module_dropout": 0.0, "init_weights": True,
        "leave_out": (),
    }
    r: int
    alpha: float
    target_modules: tuple[str, ...] | None = None
    rank_dropout: float | None = None
    module_dropout: float | None = None
    init_weights: bool | None = None
    leave_out: tuple[int, ...] | None = None

    @property
    def scaling(self) -> float:
        """``alpha / r`` (PEFT's ``LoHaLayer.update_layer``; LoHa has no rsLoRA variant)."""
        return self.alpha / self.r
