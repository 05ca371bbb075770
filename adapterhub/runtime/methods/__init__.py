"""The one place that maps manifest method names to runtime implementations."""

from __future__ import annotations

from .base import Method
from .bitdelta import BitDelta
from .bottleneck import Bottleneck
from .coda import Coda
from .compacter import Compacter
from .dora import Dora
from .fusion import Fusion
from .ia3 import IA3
from .lora import Lora
from .prefix import PrefixTuning

REGISTRY: dict[str, type[Method]] = {
    "bottleneck": Bottleneck,
    "compacter": Compacter,
    "lora": Lora,
    "dora": Dora,
    "ia3": IA3,
    "prefix_tuning": PrefixTuning,
    "bitdelta": BitDelta,
    "coda": Coda,
    "fusion": Fusion,
}

__all__ = ["REGISTRY", "Method"]
