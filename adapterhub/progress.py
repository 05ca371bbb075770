"""Progress output for long local work: our own tqdm bars, and silence for the libraries' bars.

One rule everywhere: a bar is drawn on stderr only when stderr is a terminal and the command was not
asked for machine-readable output (``--json``, ``-q``); otherwise nothing is printed, so piped and JSON
output stays exactly what the command prints. transformers and huggingface_hub draw their own bars
("Loading weights" in transformers 5.x) on stderr even when it is a pipe; :func:`quiet_hf_loading`
turns those off around our model loading.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import Any


class Progress:
    """A counter that draws a tqdm bar when enabled and costs nothing otherwise.

    ``enabled=None`` means: only if stderr is a terminal. ``unit="B"`` counts bytes (scaled to KiB/MiB).
    Thread-safe: the files of one download are fetched in parallel. A total not known up front (pass 0)
    arrives with the first :meth:`report`.
    """

    def __init__(self, enabled: bool | None, total: int, desc: str, *, unit: str = "B") -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.desc, self.unit = desc, unit
        self._bar: Any = None
        self._lock = threading.Lock()
        self._start(total)

    def _start(self, total: int) -> None:
        if self.enabled and total > 0 and self._bar is None:
            from tqdm.auto import tqdm

            scaled = {"unit_scale": True, "unit_divisor": 1024} if self.unit == "B" else {}
            self._bar = tqdm(total=total, desc=self.desc, unit=self.unit, leave=False, file=sys.stderr,
                             dynamic_ncols=True, **scaled)

    def update(self, n: int) -> None:
        if self._bar is not None:
            with self._lock:
                self._bar.update(n)

    def report(self, done: int, total: int) -> None:
        """A ``(done, total)`` callback: moves the bar to ``done`` (creating it on the first call)."""
        if not self.enabled:
            return
        with self._lock:
            self._start(total)
            if self._bar is not None and done > self._bar.n:
                self._bar.update(done - self._bar.n)

    @property
    def callback(self):
        """``update`` when a bar is drawn, else ``None`` (callers skip the call entirely)."""
        return self.update if self._bar is not None else None

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def quiet_hf_loading() -> Iterator[None]:
    """Silence transformers' and huggingface_hub's progress bars and transformers' warnings while a model
    loads (then restore them): a local load has nothing to report but what the caller says itself.

    The same names exist in transformers 4.57 and 5.x (``transformers.utils.logging``) and in
    huggingface_hub 0.36 and 1.x+ (``huggingface_hub.utils``).
    """
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    hub_was_off = hub_utils.are_progress_bars_disabled()
    tf_was_on = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()  # also disables huggingface_hub's bars
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if tf_was_on:
            hf_logging.enable_progress_bar()
        if hub_was_off:
            hub_utils.disable_progress_bars()
        else:
            hub_utils.enable_progress_bars()


@contextlib.contextmanager
def hub_download_bars(enabled: bool | None) -> Iterator[None]:
    """huggingface_hub's own download bars on (``enabled``; None: only when stderr is a terminal) or off
    for the duration, then as they were: a download the client does for us (a base model) shows the
    client's bars on a terminal, and nothing in piped or ``--json`` output."""
    from huggingface_hub import utils as hub_utils

    show = sys.stderr.isatty() if enabled is None else enabled
    was_off = hub_utils.are_progress_bars_disabled()
    if show:
        hub_utils.enable_progress_bars()
    else:
        hub_utils.disable_progress_bars()
    try:
        yield
    finally:
        if was_off:
            hub_utils.disable_progress_bars()
        else:
            hub_utils.enable_progress_bars()
