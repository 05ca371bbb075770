"""A file located in a commit, ready to be sent: built by :mod:`.download`, reshaped by :mod:`.faults`.

Its own module so that the download endpoint and fault injection share it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .names import RepoRef
from .storage import FileEntry


@dataclass(frozen=True)
class ServedFile:
    """A file located in a commit, ready to be sent."""

    repo: RepoRef
    path: str
    commit_oid: str
    entry: FileEntry
    blob: Path
    pinned: bool
    """The URL named a commit id, so the answer can be cached forever."""
