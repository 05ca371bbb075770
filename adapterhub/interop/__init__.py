"""Deprecated home of the foreign directory formats, kept so existing imports keep working.

The formats now live in :mod:`adapterhub.runtime.formats` (one dispatcher, one module per format) and
the archived AdapterHub index importer in :mod:`adapterhub.registry.archived`. Importing a name from
here warns once and returns the object from its new home.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

_MOVED = {
    "export_peft": "adapterhub.runtime.formats.peft",
    "read_peft_dir": "adapterhub.runtime.formats.peft",
    "read_adapters_dir": "adapterhub.runtime.formats.adapters_lib",
    "read_adapter_dir": "adapterhub.runtime.formats",
}


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"adapterhub.interop.{name} moved to {_MOVED[name]}.{name}", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(_MOVED[name]), name)
