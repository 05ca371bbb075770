"""The Hugging Face cache as adapterhub uses it for base models, and which of its snapshots are unverified.

Base models are fetched into the standard cache of ``huggingface_hub`` (``HF_HUB_CACHE``, laid out as
``models--ORG--NAME/{blobs,snapshots/<commit>,refs}``), so transformers, ``hf`` and the base locator
find them like any other download. The client writes a file there *before* adapterhub has checked it,
so a fetch first leaves a marker ``models--ORG--NAME/.adapterhub-unverified/<commit>`` and removes it
only once every file matched the Hub's hash and the weights matched the adapter's fingerprint. The
locator skips a marked snapshot: an interrupted or refused fetch never looks like a usable base. (The
client's cache scan reads only ``blobs``, ``snapshots`` and ``refs``; the marker stays out of ``hf cache``.)
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from ..errors import InvalidArgumentError
from ..fileio import atomic_write_text

MARKER_DIR = ".adapterhub-unverified"
_REF_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def hf_cache_root() -> Path:
    """The cache ``huggingface_hub`` downloads into (``HF_HUB_CACHE``, read when the client was imported)."""
    from huggingface_hub import constants  # deferred: only base lookups and fetches need the client

    return Path(constants.HF_HUB_CACHE)


def snapshot_dir(repo_id: str, commit: str) -> Path:
    """Where the client puts the files of model ``repo_id`` at ``commit``."""
    return hf_cache_root() / ("models--" + repo_id.replace("/", "--")) / "snapshots" / commit


def _marker(snapshot: Path) -> Path:
    return snapshot.parent.parent / MARKER_DIR / snapshot.name


def unverified_reason(snapshot: Path) -> str | None:
    """Why the snapshot at ``snapshot`` must not be used (its marker's text), or None when it is not marked."""
    try:
        return _marker(snapshot).read_text(encoding="utf-8").strip() or "not verified"
    except (FileNotFoundError, NotADirectoryError):
        return None


def mark_unverified(snapshot: Path, reason: str) -> None:
    """Mark ``snapshot`` as not to be used, saying why (kept until :func:`mark_verified`)."""
    atomic_write_text(_marker(snapshot), reason.strip() + "\n")


def mark_verified(snapshot: Path) -> None:
    """Lift the mark: every check passed, lookups may use the snapshot."""
    with contextlib.suppress(FileNotFoundError):
        _marker(snapshot).unlink()


def is_ref_name(ref: str) -> bool:
    """A branch or tag name :func:`record_ref` writes (one path segment, starting with a letter or digit)."""
    return bool(_REF_RE.fullmatch(ref))


def record_ref(snapshot: Path, ref: str) -> None:
    """Point branch ``ref`` at this snapshot's commit, as the client does after downloading a branch, so a
    lookup by branch (a manifest without a pinned revision) finds it offline afterwards."""
    if not is_ref_name(ref):
        raise InvalidArgumentError(f"not a branch name the cache can record: {ref!r}")
    atomic_write_text(snapshot.parent.parent / "refs" / ref, snapshot.name)


def discard_file(snapshot: Path, relative: str) -> None:
    """Remove a file of ``snapshot`` and the blob it points to (bytes that failed a check are never reused:
    the client names blobs by the Hub's etag, so a bad blob would otherwise look like the right one)."""
    pointer = snapshot / relative
    blob = pointer.resolve() if pointer.is_symlink() else None
    with contextlib.suppress(FileNotFoundError):
        pointer.unlink()
    if blob is not None and blob.parent.name == "blobs":
        with contextlib.suppress(FileNotFoundError):
            blob.unlink()
