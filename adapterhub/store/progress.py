"""Download progress: one tqdm bar per pulled adapter, on stderr, only when someone is watching."""

from __future__ import annotations

import sys
import threading
from typing import Any


class Progress:
    """A byte counter that draws a tqdm bar when enabled and costs nothing otherwise."""

    def __init__(self, enabled: bool | None, total: int, desc: str) -> None:
        if enabled is None:
            enabled = sys.stderr.isatty()
        self._bar: Any = None
        self._lock = threading.Lock()  # files of one adapter download in parallel
        if enabled and total > 0:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                             leave=False, file=sys.stderr, dynamic_ncols=True)

    def update(self, n: int) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(n)

    @property
    def callback(self):
        return self.update if self._bar is not None else None

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
