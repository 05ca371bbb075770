"""Helper threads kept for the life of the process, lent out one ordered lane at a time.

A cold pull needs a few helper threads: sha256 beside the stream, the background fdatasync, the
adapter's small files beside its weights. Starting a thread
costs more than some of that work: ``Thread.start`` waits until the new thread holds the GIL, which
takes up to the interpreter's switch interval (5 ms) while another thread runs Python, and these
starts sit on the download's critical path. So threads are kept: a lane is a one-thread executor
(its tasks run one after the other, in order), :func:`take` lends an idle one (or makes one), and
:func:`give_back` keeps it for the next borrower once its tasks are done. A child process after
``fork`` does not use its parent's lanes (their threads do not exist there).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

KEEP = 8
"""Idle lanes kept; more are shut down when given back."""

_idle: list[ThreadPoolExecutor] = []
_owner = os.getpid()
_lock = threading.Lock()


def take() -> ThreadPoolExecutor:
    """An idle lane of this process, or a new one."""
    global _owner
    with _lock:
        if _owner != os.getpid():  # forked: the parent's lanes have no threads here
            _idle.clear()
            _owner = os.getpid()
        if _idle:
            return _idle.pop()
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="adapterhub-lane")


def give_back(lane: ThreadPoolExecutor) -> None:
    """Keep ``lane`` for the next :func:`take`. Only once every task submitted to it has finished (the
    caller waited for its last future): the next borrower's tasks must not queue behind old ones."""
    with _lock:
        if _owner == os.getpid() and len(_idle) < KEEP:
            _idle.append(lane)
            return
    lane.shutdown(wait=False)


def drop(lane: ThreadPoolExecutor) -> None:
    """Retire ``lane`` whose tasks may still run (a failure left them unobserved)."""
    lane.shutdown(wait=False)
