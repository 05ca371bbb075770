"""Where things live in the cache, and how temp files name their owner.

Layout under :func:`adapterhub.settings.cache_dir` (``LAYOUT_VERSION`` 1)::

    blobs/sha256/<hex>                       verified content, read-only, named by its sha256
    blobs/partial/.<hex>~<owner>.part        a download in progress (one per writer; its own directory, so a
                                             writer looking for a dead writer's file to resume scans only these)
    blobs/sha256/.<hex>~<owner>.bad          a corrupted blob on its way out (see store/reuse.py)
    adapters/<name>/<version>/               a view: hard links to blobs + adapterhub.json
    adapters/<name>/<version>/.adapterhub-view.json   what the view holds (read by gc, warm pulls)
    adapters/<name>/.<version>~<owner>.tmp   a view being assembled, renamed into place when complete
    leases/<owner>.json                      blobs a running pull needs; gc keeps them
    derived/<archive-sha256>.json            manifest of files converted from a legacy archive
    tmp/<what>~<owner>/                      scratch space (archive extraction)
    validated/<ab>/<key>                     schema validations that passed (adapterhub/schema.py)
    index/                                   the HTTP index cache (registry)

Views live under ``adapters/`` rather than at the top level so that no adapter name (``blobs`` is a
legal one) can collide with the cache's own directories.

``<owner>`` is ``<host>~<pid>~<random>``: gc removes a temp file when its owner process is gone (same
host) or when it has not been modified for a long time (any host, pid reuse). Nothing here needs a
lock to be correct; every final name appears by one atomic rename.
"""

from __future__ import annotations

import os
import re
import time
from functools import cache
from pathlib import Path
from typing import NamedTuple

from .. import settings
from ..records import frozen_record

LAYOUT_VERSION = 1
VIEW_MARKER = ".adapterhub-view.json"
MAX_FILE_SIZE = 1 << 40
"""Largest file a manifest or a Hub listing may state (1 TiB): a bigger size is a hostile or broken source."""
STALE_AFTER_SECONDS = 6 * 3600
"""A temp file untouched this long is garbage even if its owner pid looks alive (pid reuse, NFS)."""
EMPTY_DIR_GRACE_SECONDS = 60
"""gc leaves an empty ``adapters/<name>/`` alone this long: a pull may have just made it for a view."""

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_OWNER_RE = re.compile(r"^(?P<host>[A-Za-z0-9-]{1,64})~(?P<pid>[0-9]{1,10})~(?P<rand>[0-9a-f]{8})$")


@cache
def _host() -> str:
    """This machine's name as an owner tag may hold it (``os.uname`` where there is one: the ``socket``
    module costs a warm pull more than the pull's own work)."""
    if hasattr(os, "uname"):
        node = os.uname().nodename
    else:  # pragma: no cover - Windows
        import socket

        node = socket.gethostname()
    name = re.sub(r"[^A-Za-z0-9-]", "-", node)[:64]
    return name or "host"


def new_owner() -> str:
    """A fresh owner tag for this process: host, pid and 32 random bits."""
    return f"{_host()}~{os.getpid()}~{os.urandom(4).hex()}"


class Owner(NamedTuple):
    host: str
    pid: int

    def is_dead(self) -> bool:
        """True only when we can tell for sure: same host and no such process."""
        if self.host != _host():
            return False
        if self.pid == os.getpid():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except (PermissionError, OSError):
            return False
        return _is_zombie(self.pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def parse_owner(tag: str) -> Owner | None:
    m = _OWNER_RE.match(tag)
    return Owner(m["host"], int(m["pid"])) if m else None


def is_stale(path: Path, owner_tag: str, *, now: float | None = None, max_age: float = STALE_AFTER_SECONDS) -> bool:
    """Whether a temp file or directory may be removed: its owner is dead or it is very old."""
    owner = parse_owner(owner_tag)
    if owner is not None and owner.is_dead():
        return True
    try:
        age = (now or time.time()) - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    return age > max_age


def is_sha256(text: str) -> bool:
    return bool(_HEX64.match(text))


@frozen_record
class CacheLayout:
    """Paths inside one cache root. Creating the object touches nothing on disk."""

    root: Path

    @classmethod
    def default(cls, root: str | os.PathLike[str] | None = None) -> CacheLayout:
        return cls(Path(root) if root is not None else settings.cache_dir())

    @property
    def blobs(self) -> Path:
        return self.root / "blobs" / "sha256"

    @property
    def adapters(self) -> Path:
        return self.root / "adapters"

    @property
    def leases(self) -> Path:
        return self.root / "leases"

    @property
    def derived(self) -> Path:
        return self.root / "derived"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def gc_lock(self) -> Path:
        return self.root / "gc.lock"

    def blob(self, sha256: str) -> Path:
        if not is_sha256(sha256):
            raise ValueError(f"not a lowercase sha256 hex digest: {sha256!r}")
        return self.blobs / sha256

    @property
    def partials(self) -> Path:
        """Downloads in progress: few, so finding a dead writer's file costs nothing however many blobs exist
        (a writer used to scan ``blobs/sha256`` whole: 26 ms per file at 20,000 blobs)."""
        return self.root / "blobs" / "partial"

    def blob_temp(self, sha256: str, owner: str) -> Path:
        return self.partials / f".{sha256}~{owner}.part"

    def view(self, name: str, version: str) -> Path:
        return self.adapters / name / version

    def view_temp(self, name: str, version: str, owner: str) -> Path:
        return self.adapters / name / f".{version}~{owner}.tmp"

    def lease(self, owner: str) -> Path:
        return self.leases / f"{owner}.json"

    def derived_manifest(self, archive_sha256: str) -> Path:
        return self.derived / f"{archive_sha256}.json"


_TEMP_RE = re.compile(r"^\.(?P<key>[^~]+)~(?P<owner>[A-Za-z0-9-]+~[0-9]+~[0-9a-f]{8})\.(?P<kind>part|tmp|old|gc|bad)$")


def parse_temp_name(name: str) -> tuple[str, str, str] | None:
    """``(key, owner, kind)`` of a temp entry named ``.<key>~<owner>.<kind>``, else None."""
    m = _TEMP_RE.match(name)
    return (m["key"], m["owner"], m["kind"]) if m else None
