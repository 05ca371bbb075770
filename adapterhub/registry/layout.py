"""Where a name's entry file lives inside an index (Cargo's sharding, for names of 2+ characters).

``ab`` → ``2/ab``; ``abc`` → ``3/a/abc``; longer names → ``ab/cd/abcdef``. Sharding keeps every
directory small at 100,000+ names and lets a static HTTP server or CDN serve one file per name.
"""

from __future__ import annotations

from ..names import normalize_name, validate_name

CONFIG_FILE = "config.json"
SEARCH_FILE = "search-index.jsonl"
MIRROR_DIR = "mirror"
"""Content-addressed blobs (``mirror/<sha256>``): verified by the manifests' hashes, not by index signing."""
METADATA_DIR = "metadata"
"""Signed TUF metadata (root, timestamp, snapshot, targets): see :mod:`adapterhub.registry.signing`."""


def entry_path(name: str) -> str:
    """Relative POSIX path of the entry file for ``name`` (normalised and validated first)."""
    n = validate_name(normalize_name(name))
    if len(n) == 2:
        return f"2/{n}"
    if len(n) == 3:
        return f"3/{n[0]}/{n}"
    return f"{n[0:2]}/{n[2:4]}/{n}"
