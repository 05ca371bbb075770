"""Transfer settings (timeouts, retries), with environment overrides, in one small object.

- ``ADAPTERHUB_CONNECT_TIMEOUT`` (seconds, default 10) and ``ADAPTERHUB_READ_TIMEOUT`` (default 30):
  a server that sends nothing for that long is treated as stalled.
- ``ADAPTERHUB_RETRIES`` (default 4): extra attempts per source on connection errors, timeouts, 429
  and 5xx answers, with exponential backoff starting at ``ADAPTERHUB_BACKOFF`` seconds (default 0.5).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        return float(raw) if raw else default
    except ValueError:
        return default


@dataclass(frozen=True)
class FetchOptions:
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    retries: int = 4
    backoff: float = 0.5
    max_backoff: float = 8.0

    @classmethod
    def from_env(cls) -> FetchOptions:
        return cls(
            connect_timeout=_env_float("ADAPTERHUB_CONNECT_TIMEOUT", cls.connect_timeout),
            read_timeout=_env_float("ADAPTERHUB_READ_TIMEOUT", cls.read_timeout),
            retries=int(_env_float("ADAPTERHUB_RETRIES", cls.retries)),
            backoff=_env_float("ADAPTERHUB_BACKOFF", cls.backoff),
        )

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)

    def delay(self, attempt: int) -> float:
        """Backoff before retry number ``attempt`` (1-based)."""
        return min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
