"""Numbers read from a foreign config (PEFT's or the ``adapters`` library's ``adapter_config.json``).

Those files come from strangers: ``int()``/``float()`` would take ``"8"``, ``True`` or ``8.7`` silently (a
different adapter than stated) and raise an untyped error for a list. Here a value is the number it claims
to be, or a :class:`SchemaError` naming the key.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import SchemaError, SchemaProblem

MAX_SIZE = 1 << 16
"""Largest rank, bottleneck or prefix size read from a config: far beyond any trained adapter's, small
enough that no shape built from it can exhaust memory before the tensors are compared with it."""


def config_float(value: Any, key: str, where: str, pointer: str | None = None) -> float:
    """``value`` as a finite float (an int or float in JSON, never a bool or a string)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SchemaError(where, [SchemaProblem(pointer or f"/{key}", f"{key}={value!r} is not a finite number")])
    return float(value)


def config_size(value: Any, key: str, where: str, pointer: str | None = None, *, low: int = 1) -> int:
    """``value`` as an integer in ``low``..:data:`MAX_SIZE` (a rank, a bottleneck size, a prefix length)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_SIZE:
        raise SchemaError(where, [SchemaProblem(pointer or f"/{key}",
                                                f"{key}={value!r} is not an integer in {low}..{MAX_SIZE}")])
    return value


def config_layers(value: Any, key: str, where: str, pointer: str | None = None) -> list[int]:
    """``value`` (absent: ``[]``) as a sorted list of layer indices (``leave_out``)."""
    value = value or []
    if not isinstance(value, list) or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in value):
        raise SchemaError(where, [SchemaProblem(pointer or f"/{key}",
                                                f"{key}={value!r} is not a list of layer indices")])
    return sorted(value)
