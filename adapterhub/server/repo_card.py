"""What the Hub derives from a commit's own files: which files are LFS, and the model card's metadata.

On the Hub a file lives in LFS (listed with an ``lfs`` block carrying its sha256) when its path matches a
``filter=lfs`` pattern of the commit's ``.gitattributes``, or when it is too large for plain git
(10 MiB); every other file is plain git and is listed with only its git blob ``oid`` (a sha1). A commit
without a ``.gitattributes`` gets the patterns a new Hub repository starts with. ``cardData`` is the
YAML front matter of ``README.md``; ``library_name`` and ``tags`` come from it.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .storage import Commit, FileEntry, HubStorage

PLAIN_GIT_LIMIT = 10 << 20
"""Files from this size on are always LFS on the Hub."""

DEFAULT_LFS_PATTERNS = (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*", "*.mlmodel",
    "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt",
    "*.pth", "*.rar", "*.safetensors", "saved_model/**/*", "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm",
    "*.xz", "*.zip", "*.zst", "*tfevents*",
)
"""The ``filter=lfs`` patterns of the ``.gitattributes`` the Hub writes into a new model repository."""

_CARD_LIMIT = 1 << 20
_ATTRIBUTES_LIMIT = 1 << 20


def _read_small(storage: HubStorage, entry: FileEntry, limit: int) -> bytes | None:
    if entry.size > limit:
        return None
    return storage.blob_path(entry.sha256).read_bytes()


def lfs_patterns(text: str) -> tuple[str, ...]:
    """The patterns of a ``.gitattributes`` whose attributes include ``filter=lfs``."""
    found = []
    for line in text.splitlines():
        parts = line.strip().split()
        if parts and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
            found.append(parts[0])
    return tuple(found)


def _pattern_matches(pattern: str, path: str) -> bool:
    """gitattributes matching, as far as the Hub's default patterns need: a pattern without ``/`` matches
    the file name at any depth; one with ``/`` matches the whole path (``**`` spans folders)."""
    if "/" not in pattern.rstrip("/"):
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
    return fnmatch.fnmatchcase(path, pattern.lstrip("/").replace("**/", "*"))


@dataclass(frozen=True)
class LfsRule:
    """Decides, for one commit, which files the Hub would list as LFS."""

    patterns: tuple[str, ...]

    def is_lfs(self, path: str, entry: FileEntry) -> bool:
        return entry.size >= PLAIN_GIT_LIMIT or any(_pattern_matches(p, path) for p in self.patterns)


@lru_cache(maxsize=256)
def _rule_for(attributes: bytes | None) -> LfsRule:
    if attributes is None:
        return LfsRule(DEFAULT_LFS_PATTERNS)
    return LfsRule(lfs_patterns(attributes.decode("utf-8", "replace")))


def lfs_rule(storage: HubStorage, files: Mapping[str, FileEntry]) -> LfsRule:
    """The rule of a commit with these ``files`` (its ``.gitattributes``, else the Hub's defaults)."""
    entry = files.get(".gitattributes")
    return _rule_for(None if entry is None else _read_small(storage, entry, _ATTRIBUTES_LIMIT))


_FRONT_MATTER = re.compile(rb"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)


def front_matter(text: bytes) -> dict[str, Any] | None:
    """The YAML front matter of a model card as a mapping; None when it has none or it does not parse."""
    import yaml  # deferred: only repo info of a repo with a card parses YAML

    match = _FRONT_MATTER.match(text)
    if match is None:
        return None
    try:
        data = yaml.safe_load(match.group(1).decode("utf-8", "replace"))
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def card_data(storage: HubStorage, commit: Commit) -> dict[str, Any] | None:
    """``cardData`` of a commit: its README.md front matter."""
    entry = commit.files.get("README.md")
    body = None if entry is None else _read_small(storage, entry, _CARD_LIMIT)
    return None if body is None else front_matter(body)


def card_fields(card: Mapping[str, Any] | None) -> dict[str, Any]:
    """``library_name``, ``pipeline_tag`` and ``tags`` as the Hub lists them (the library is also a tag)."""
    card = card or {}
    library = card.get("library_name") if isinstance(card.get("library_name"), str) else None
    tags = card.get("tags")
    tags = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else [tags] if isinstance(tags, str) else []
    if library and library not in tags:
        tags = [library, *tags]
    out: dict[str, Any] = {"tags": tags}
    if library:
        out["library_name"] = library
    if isinstance(card.get("pipeline_tag"), str):
        out["pipeline_tag"] = card["pipeline_tag"]
    base = card.get("base_model")
    if isinstance(base, str):
        out["tags"] = [*tags, f"base_model:{base}"]
    return out
