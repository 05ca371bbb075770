"""The one place that maps manifest method names to runtime implementations.

Each method's module owns its config type, defaults, math, averaging algebra and foreign key mapping
(the contract is in :mod:`.base`); the one line below makes it known to the config checks, the
runtime, averaging/merging, the PEFT and ``adapters`` directory readers and their messages.
"""

from __future__ import annotations

from .base import Method
from .bitdelta import BitDelta
from .bottleneck import Bottleneck
from .coda import Coda
from .compacter import Compacter
from .config import MethodConfig
from .dora import Dora
from .fusion import Fusion
from .ia3 import IA3
from .loha import Loha
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
    "loha": Loha,
}


def method_names(**having: object) -> list[str]:
    """Registered method names whose class attributes equal ``having`` (e.g. ``weight_space=True``), for messages."""
    return [name for name, cls in REGISTRY.items() if all(getattr(cls, k) == v for k, v in having.items())]


__all__ = ["REGISTRY", "Method", "MethodConfig", "method_names"]
