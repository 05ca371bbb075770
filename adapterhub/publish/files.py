"""The files of an adapter directory as a manifest lists them: which files, their role, size and sha256."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..fileio import sha256_file
from ..manifest import MANIFEST_FILENAME, SIGNATURE_FILENAME
from ..manifest.roles import CARD_FILE, TOKENIZER_NAMES, guess_role

__all__ = ["CARD_FILE", "TOKENIZER_NAMES", "file_entries", "guess_role", "payload_files"]

def payload_files(directory: Path) -> list[str]:
    """Every regular file under ``directory`` except the manifest, its signature and dot-files, as sorted
    POSIX paths."""
    out = []
    for p in directory.rglob("*"):
        rel = p.relative_to(directory).as_posix()
        if not p.is_file() or p.is_symlink() or rel in (MANIFEST_FILENAME, SIGNATURE_FILENAME) \
                or any(s.startswith(".") for s in rel.split("/")):
            continue
        out.append(rel)
    return sorted(out)


def file_entries(directory: Path, paths: list[str], roles: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Manifest ``files`` entries for ``paths`` (hashing each file), keeping known roles."""
    roles = roles or {}
    entries = []
    for rel in paths:
        p = directory / rel
        entries.append({"path": rel, "size": p.stat().st_size, "sha256": sha256_file(p),
                        "role": roles.get(rel) or guess_role(rel)})
    return entries
