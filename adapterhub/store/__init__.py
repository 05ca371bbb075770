"""The store: sources, the content-addressed cache, verification (see docs/pull-and-cache.md).

Import cost matters here (a warm ``adapterhub pull`` must finish in about 0.15 s), so most public
names load their module on first use (``__getattr__``): importing ``adapterhub.store.trust`` does not
drag in the cache listing, the lockfile puller or the HTTP sources. The three functions named like
their module (``pull``, ``gc``, ``verify``) are bound here eagerly: importing a submodule sets the
package attribute of that name to the module, which would hide a lazily bound function.
``requests``, ``huggingface_hub`` and ``torch`` are imported inside the functions that download or convert.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .gc import GcReport, gc
from .pull import PulledAdapter, pull, pull_manifest
from .verify import VerifyReport, verify

if TYPE_CHECKING:
    from ..transport import FetchOptions
    from .cache import CachedAdapter, blob_usage, list_cached, remove_cached
    from .layout import CacheLayout
    from .locked import pull_locked
    from .safetensors_check import SafetensorsHeader, TensorInfo, check_safetensors, check_safetensors_bytes
    from .sources import ContentDirSource, HttpMirrorSource, HttpSource, HubSource, LocalDirSource, Source

_EXPORTS = {
    "FetchOptions": "..transport",
    **dict.fromkeys(("CachedAdapter", "blob_usage", "list_cached", "remove_cached"), ".cache"),
    "CacheLayout": ".layout",
    "pull_locked": ".locked",
    **dict.fromkeys(("SafetensorsHeader", "TensorInfo", "check_safetensors", "check_safetensors_bytes"),
                    ".safetensors_check"),
    **dict.fromkeys(("ContentDirSource", "HttpMirrorSource", "HttpSource", "HubSource", "LocalDirSource", "Source"),
                    ".sources"),
}

__all__ = [
    "CachedAdapter", "blob_usage", "list_cached", "remove_cached", "GcReport", "gc", "CacheLayout",
    "FetchOptions", "PulledAdapter", "pull", "pull_locked", "pull_manifest", "SafetensorsHeader", "TensorInfo",
    "check_safetensors", "check_safetensors_bytes", "ContentDirSource", "HttpMirrorSource", "HttpSource",
    "HubSource", "LocalDirSource", "Source", "VerifyReport", "verify",
]


def __getattr__(name: str) -> Any:
    """Load the module that defines ``name`` on first use (see the module docstring for why)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
