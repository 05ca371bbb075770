"""Room on the cache's filesystem: a pull that cannot fit is refused before its first byte, and a write
that runs out of space (another process took it meanwhile, a quota) becomes a typed error.

A hostile or mistaken repository can list thousands of large files; what bounds a pull is the disk it
writes to, so the check is against the free space there, not an arbitrary cap.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from ..errors import DiskSpaceError

FULL = {errno.ENOSPC, errno.EDQUOT}
"""The errnos of a write that found no room."""


def ensure_room(directory: Path, needed: int, what: str) -> None:
    """:class:`DiskSpaceError` when ``needed`` bytes cannot fit on ``directory``'s filesystem (the nearest
    existing parent is asked when the directory is not made yet)."""
    if needed <= 0:
        return
    probe = directory
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return  # no answer (a filesystem without statvfs): a write that runs out still fails typed
    if needed > free:
        raise DiskSpaceError(f"{what} needs {needed:,} bytes in {directory}, and its filesystem has {free:,} bytes "
                             "free",
                             hint="free some space (`adapterhub cache gc`), or point ADAPTERHUB_CACHE elsewhere")


def full_disk(exc: OSError, where: str) -> DiskSpaceError | None:
    """The typed error for a write that failed for want of room, else None."""
    if exc.errno not in FULL:
        return None
    return DiskSpaceError(f"{where}: no space left to write the download ({os.strerror(exc.errno or 0)})",
                          hint="free some space (`adapterhub cache gc`), or point ADAPTERHUB_CACHE elsewhere")

