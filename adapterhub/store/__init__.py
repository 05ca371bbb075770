"""The store: sources, the content-addressed cache, verification (see docs/pull-and-cache.md).

Import cost matters here (a warm ``adapterhub pull`` must finish in about 0.15 s), so most public
names load their module on first use (:mod:`adapterhub.lazy`): importing ``adapterhub.store.trust`` does
not drag in the cache listing, the lockfile puller or the HTTP sources. ``pull`` is named like its module,
so it is imported eagerly (see :mod:`adapterhub.lazy`); ``gc`` and ``verify`` live in ``cache_gc`` and
``cache_verify`` so that they can load on first use.
``requests``, ``huggingface_hub`` and ``torch`` are imported inside the functions that download or convert.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports
from .pull import PulledAdapter, pull, pull_cached, pull_manifest

if TYPE_CHECKING:
    from ..transport import FetchOptions
    from .cache import CachedAdapter, blob_usage, list_cached, remove_cached
    from .cache_gc import GcReport, gc
    from .cache_verify import VerifyReport, verify
    from .layout import CacheLayout
    from .locked import pull_locked
    from .safetensors_check import SafetensorsHeader, TensorInfo, check_safetensors, check_safetensors_bytes
    from .sources import ContentDirSource, HttpMirrorSource, HttpSource, HubSource, LocalDirSource, Source

_EXPORTS = {
    "FetchOptions": "..transport",
    **dict.fromkeys(("CachedAdapter", "blob_usage", "list_cached", "remove_cached"), ".cache"),
    **dict.fromkeys(("GcReport", "gc"), ".cache_gc"),
    **dict.fromkeys(("VerifyReport", "verify"), ".cache_verify"),
    "CacheLayout": ".layout",
    "pull_locked": ".locked",
    **dict.fromkeys(("SafetensorsHeader", "TensorInfo", "check_safetensors", "check_safetensors_bytes"),
                    ".safetensors_check"),
    **dict.fromkeys(("ContentDirSource", "HttpMirrorSource", "HttpSource", "HubSource", "LocalDirSource", "Source"),
                    ".sources"),
}

__all__ = [
    "CachedAdapter", "blob_usage", "list_cached", "remove_cached", "GcReport", "gc", "CacheLayout",
    "FetchOptions", "PulledAdapter", "pull", "pull_cached", "pull_locked", "pull_manifest", "SafetensorsHeader", "TensorInfo",
    "check_safetensors", "check_safetensors_bytes", "ContentDirSource", "HttpMirrorSource", "HttpSource",
    "HubSource", "LocalDirSource", "Source", "VerifyReport", "verify",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
