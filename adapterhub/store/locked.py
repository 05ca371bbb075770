"""``pull -r adapterhub.lock``: pull exactly the releases a lockfile pins, and nothing else.

The registry matches each locked adapter to its index entry and refuses any difference in manifest or
file hashes (:func:`adapterhub.registry.lockfile.check_lock`); the store then verifies every byte against
those same hashes while downloading. So the lock, not the index, decides what is installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import settings
from ..transport import FetchOptions
from .pull import PulledAdapter, index_location, pull_manifest
from .trust import Trust


def pull_locked(lock: Any, *, index: Any = None, require_hashes: bool = False, only: Sequence[str] = (),
                offline: bool | None = None, cache_dir: str | Path | None = None, endpoint: str | None = None,
                token: str | bool | None = None, progress: bool | None = False,
                options: FetchOptions | None = None, trust: Trust | None = None) -> list[PulledAdapter]:
    """Pull the adapters of ``lock`` (a :class:`~adapterhub.registry.lockfile.Lockfile` or a path).

    ``only``: names to pull (with the locked adapters they pulled in); a name outside the lock is refused.
    ``require_hashes``: every adapter must carry locked hashes and every dependency must be locked.
    Dependencies come first, as in the lock. ``trust``: as in :func:`~adapterhub.store.pull`.
    """
    from ..registry import Index, open_index  # deferred: CLI import cost (registry)
    from ..registry.lockfile import Lockfile, check_lock, load_lock  # deferred: CLI import cost (registry)

    if not isinstance(lock, Lockfile):
        lock = load_lock(lock)
    off = settings.offline() if offline is None else offline
    idx = index if isinstance(index, Index) else open_index(index, offline=off)
    check = check_lock(lock, idx, require_hashes=require_hashes, only=list(only))
    where = index_location(idx)
    return [pull_manifest(entry.manifest, cache_dir=cache_dir, offline=off, index_config=idx.config, endpoint=endpoint,
                          token=token, progress=progress, options=options, index_location=where,
                          trust=trust)
            for entry in check.entries]
