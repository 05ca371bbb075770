"""The on-disk trust state of one index location: its pinned root and python-tuf's trusted metadata.

Its own module because both sides use it: :mod:`.trust` pins and lists entries, :mod:`.tuf_client`
verifies reads with one; neither has to import the other to share it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .layout import METADATA_DIR

if TYPE_CHECKING:
    from filelock import FileLock

LOCK_TIMEOUT = 120
"""Seconds to wait for another process's update of the same index's trusted metadata."""


@dataclass(frozen=True)
class TrustEntry:
    """The pinned root and trusted-metadata directory of one index location."""

    location: str
    directory: Path

    @property
    def root_path(self) -> Path:
        return self.directory / "root.json"

    @property
    def metadata_dir(self) -> Path:
        return self.directory / METADATA_DIR

    def root_bytes(self) -> bytes:
        return self.root_path.read_bytes()

    def lock(self) -> FileLock:
        """Held around every change of ``metadata/`` (python-tuf's updater is not safe across processes)."""
        from filelock import FileLock  # importing filelock costs ~20 ms; only a signed index's refresh locks

        return FileLock(str(self.directory / ".lock"), timeout=LOCK_TIMEOUT)

    def to_json(self) -> dict[str, Any]:
        return {"location": self.location, "root_sha256": hashlib.sha256(self.root_bytes()).hexdigest(),
                "state": str(self.directory)}
