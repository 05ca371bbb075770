"""Settings read from the environment, in one place (documented in docs/configuration.md).

- ``ADAPTERHUB_CACHE``: cache root (default: the per-user cache dir, e.g. ``~/.cache/adapterhub``).
- ``ADAPTERHUB_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``: use the cache only, never the network.
- ``ADAPTERHUB_INDEX``: default registry index (directory or http(s) URL); unset = bundled index.
- ``HF_ENDPOINT`` / ``HF_TOKEN``: honoured by the Hub source through huggingface_hub.
- ``ADAPTERHUB_TOKEN_ENDPOINTS``: more endpoints (comma-separated URLs) that may receive the token;
  see :func:`token_endpoints`.
"""

from __future__ import annotations

import os
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}


def cache_dir() -> Path:
    """Root of adapterhub's cache (blobs, views, index cache)."""
    env = os.environ.get("ADAPTERHUB_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("adapterhub", appauthor=False))


def offline() -> bool:
    """True when the user asked for no network at all."""
    return any(os.environ.get(var, "").strip().lower() in _TRUE for var in ("ADAPTERHUB_OFFLINE", "HF_HUB_OFFLINE"))


def default_index() -> str | None:
    return os.environ.get("ADAPTERHUB_INDEX") or None


PUBLIC_HUB = "https://huggingface.co"


def token_endpoints() -> list[str]:
    """Endpoints the user configured, the only places a Hub token may be sent.

    ``HF_ENDPOINT`` (the public Hub when unset) and ``ADAPTERHUB_TOKEN_ENDPOINTS``. An endpoint named
    by an index or a manifest is never on this list; an explicit ``--endpoint`` is added per call.
    """
    hub = (os.environ.get("HF_ENDPOINT") or PUBLIC_HUB).strip()
    extra = os.environ.get("ADAPTERHUB_TOKEN_ENDPOINTS", "")
    return [hub, *(e.strip() for e in extra.split(",") if e.strip())]
