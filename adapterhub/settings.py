"""Settings read from the environment, in one place (documented in docs/configuration.md).

- ``ADAPTERHUB_CACHE``: cache root (default: the per-user cache dir, e.g. ``~/.cache/adapterhub``).
- ``ADAPTERHUB_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``: use the cache only, never the network.
- ``ADAPTERHUB_INDEX``: default registry index (directory or http(s) URL); unset = bundled index.
- ``ADAPTERHUB_TRUST_DIR``: pinned index roots and the newest signed metadata seen per index (default: the
  per-user config dir, e.g. ``~/.config/adapterhub/trust``; not the cache, so cleaning the cache keeps
  rollback protection).
- ``ADAPTERHUB_REQUIRE_SIGNED_INDEX=1``: refuse every index (but the bundled one) whose root is not pinned.
- ``ADAPTERHUB_INDEX_KEYS``: keyring directory that ``publish`` and ``index add/yank`` sign a signed index with.
- ``HF_ENDPOINT`` / ``HF_TOKEN``: honoured by the Hub source through huggingface_hub; our own code reads
  ``HF_ENDPOINT`` only through :func:`hub_endpoint`.
- ``ADAPTERHUB_TRUST_KEYS`` / ``ADAPTERHUB_TRUST_CERT_CHAINS``: public keys / CA certificate chains (PEM
  files, ``os.pathsep``-separated) whose adapter signatures ``pull`` requires; ``ADAPTERHUB_TRUST_INDEX_SIGNERS=1``
  also trusts the signers the index config names (see docs/security.md).
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


def _path_list(var: str) -> tuple[Path, ...]:
    return tuple(Path(p).expanduser() for p in os.environ.get(var, "").split(os.pathsep) if p.strip())


def trust_key_files() -> tuple[Path, ...]:
    """Public keys (PEM) whose adapter signatures ``pull`` requires (``ADAPTERHUB_TRUST_KEYS``)."""
    return _path_list("ADAPTERHUB_TRUST_KEYS")


TRUST_VARIABLES = ("ADAPTERHUB_TRUST_KEYS", "ADAPTERHUB_TRUST_CERT_CHAINS", "ADAPTERHUB_TRUST_INDEX_SIGNERS")
"""The variables that make ``pull`` require adapter signatures."""


def trust_variables_set() -> tuple[str, ...]:
    """Which of :data:`TRUST_VARIABLES` are present in the environment (even empty: the command line parses and
    validates them, so a caller that does not must step aside)."""
    return tuple(var for var in TRUST_VARIABLES if os.environ.get(var) is not None)


def trust_cert_chain_files() -> tuple[Path, ...]:
    """CA certificate chains (PEM) for certificate-signed adapters (``ADAPTERHUB_TRUST_CERT_CHAINS``)."""
    return _path_list("ADAPTERHUB_TRUST_CERT_CHAINS")


def trust_index_signers() -> bool:
    """Whether the signers an index config names are trusted (``ADAPTERHUB_TRUST_INDEX_SIGNERS=1``)."""
    return os.environ.get("ADAPTERHUB_TRUST_INDEX_SIGNERS", "").strip().lower() in _TRUE


def trust_dir() -> Path:
    """Where pinned index roots and per-index trusted metadata live (see docs/security.md)."""
    env = os.environ.get("ADAPTERHUB_TRUST_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("adapterhub", appauthor=False)) / "trust"


def require_signed_index() -> bool:
    """True when indexes without a pinned root must be refused."""
    return os.environ.get("ADAPTERHUB_REQUIRE_SIGNED_INDEX", "").strip().lower() in _TRUE


def index_keys() -> Path | None:
    """The keyring used to re-sign a signed index after a change, when no ``--keys`` is given."""
    env = os.environ.get("ADAPTERHUB_INDEX_KEYS")
    return Path(env).expanduser() if env else None


PUBLIC_HUB = "https://huggingface.co"


def hub_endpoint() -> str:
    """The Hub endpoint the user configured (``HF_ENDPOINT``, else the public Hub), without a trailing '/'.

    The only reader of ``HF_ENDPOINT`` in adapterhub. Read at every call, so a change made after import
    counts; huggingface_hub itself reads it once, when it is imported (see ``publish/hub.py``).
    """
    return ((os.environ.get("HF_ENDPOINT") or "").strip() or PUBLIC_HUB).rstrip("/")


def token_endpoints() -> list[str]:
    """Endpoints the user configured, the only places a Hub token may be sent.

    ``HF_ENDPOINT`` (the public Hub when unset) and ``ADAPTERHUB_TOKEN_ENDPOINTS``. An endpoint named
    by an index or a manifest is never on this list; an explicit ``--endpoint`` is added per call.
    """
    hub = hub_endpoint()
    extra = os.environ.get("ADAPTERHUB_TOKEN_ENDPOINTS", "")
    return [hub, *(e.strip() for e in extra.split(",") if e.strip())]
