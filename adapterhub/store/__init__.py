"""The store: sources, the content-addressed cache, verification (see docs/pull-and-cache.md).

Import cost matters here (a warm ``adapterhub pull`` must finish in well under 0.3 s), so this
package imports nothing heavy: ``requests``, ``huggingface_hub`` and ``torch`` are imported inside
the functions that download or convert.
"""

from ..transport import FetchOptions
from .cache import CachedAdapter, blob_usage, list_cached, remove_cached
from .gc import GcReport, gc
from .layout import CacheLayout
from .locked import pull_locked
from .pull import PulledAdapter, pull, pull_manifest
from .safetensors_check import SafetensorsHeader, TensorInfo, check_safetensors, check_safetensors_bytes
from .sources import ContentDirSource, HttpMirrorSource, HttpSource, HubSource, LocalDirSource, Source
from .verify import VerifyReport, verify

__all__ = [
    "CachedAdapter", "blob_usage", "list_cached", "remove_cached", "GcReport", "gc", "CacheLayout",
    "FetchOptions", "PulledAdapter", "pull", "pull_locked", "pull_manifest", "SafetensorsHeader", "TensorInfo",
    "check_safetensors", "check_safetensors_bytes", "ContentDirSource", "HttpMirrorSource", "HttpSource",
    "HubSource", "LocalDirSource", "Source", "VerifyReport", "verify",
]
