"""Transfer settings (timeouts, retries, redirects, deadline, minimum rate), with environment overrides.

- ``ADAPTERHUB_CONNECT_TIMEOUT`` (seconds, default 10) and ``ADAPTERHUB_READ_TIMEOUT`` (default 30):
  a server that sends nothing for that long is treated as stalled; the status line and headers must
  arrive within the two together.
- ``ADAPTERHUB_RETRIES`` (default 4): extra attempts per URL on connection errors, timeouts, 429
  and 5xx answers, with exponential backoff starting at ``ADAPTERHUB_BACKOFF`` seconds (default 0.5).
- ``ADAPTERHUB_DEADLINE`` (default 3600): seconds one URL may take in all, retries included.
- ``ADAPTERHUB_MIN_RATE`` (bytes/s, default 1024) over ``ADAPTERHUB_RATE_WINDOW`` seconds (default
  30): a body arriving slower than that is abandoned (a server trickling bytes never times out).
- ``ADAPTERHUB_MAX_REDIRECTS`` (default 10).
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
    deadline: float = 3600.0
    """Seconds one URL may take, all attempts and backoff included."""
    min_rate: float = 1024.0
    """Bytes per second a body must keep up, measured over ``rate_window`` (0 turns the check off)."""
    rate_window: float = 30.0
    max_redirects: int = 10

    @classmethod
    def from_env(cls) -> FetchOptions:
        return cls(
            connect_timeout=_env_float("ADAPTERHUB_CONNECT_TIMEOUT", cls.connect_timeout),
            read_timeout=_env_float("ADAPTERHUB_READ_TIMEOUT", cls.read_timeout),
            retries=int(_env_float("ADAPTERHUB_RETRIES", cls.retries)),
            backoff=_env_float("ADAPTERHUB_BACKOFF", cls.backoff),
            deadline=_env_float("ADAPTERHUB_DEADLINE", cls.deadline),
            min_rate=_env_float("ADAPTERHUB_MIN_RATE", cls.min_rate),
            rate_window=_env_float("ADAPTERHUB_RATE_WINDOW", cls.rate_window),
            max_redirects=int(_env_float("ADAPTERHUB_MAX_REDIRECTS", cls.max_redirects)),
        )

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)

    def delay(self, attempt: int) -> float:
        """Backoff before retry number ``attempt`` (1-based)."""
        return min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
