"""LoHa (Hyeon-Woo et al. 2022, FedPara; PEFT's ``LoHaConfig``): a low-rank Hadamard product update.

Everything adapterhub knows about LoHa lives in this folder: the typed config and its training-only
keys (:mod:`.config`), the layer math, merge folds and the Average refusal (:mod:`.method`), and the
mapping to and from PEFT's ``LOHA`` directories (:mod:`.peft`).
"""

from __future__ import annotations

from .config import LohaConfig
from .method import Loha

__all__ = ["Loha", "LohaConfig"]
