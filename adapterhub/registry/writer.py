"""Changing a local index directory: add a release, yank/unyank, rebuild the search summary.

Releases are immutable: adding an existing name@version with different content is refused (the same
content again is a no-op). Every file is replaced atomically, so a reader never sees half a line and
a failed add leaves the index as it was. Writers serialise on an advisory lock; readers take none.
"""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock

from ..errors import ConflictError, NotFoundError
from ..fileio import atomic_write_bytes
from ..jsonio import dumps_canonical, dumps_pretty, iter_json_lines
from ..manifest import Manifest
from .entries import IndexEntry, entry_for, parse_entry_file
from .layout import CONFIG_FILE, METADATA_DIR, MIRROR_DIR, SEARCH_FILE, entry_path
from .searching import summary_line


def index_lock(root: Path) -> FileLock:
    """The writers' advisory lock of an index directory (adding, yanking, signing); readers take none."""
    return FileLock(str(root / ".index.lock"), timeout=60)


def _read_entries(root: Path, name: str) -> list[IndexEntry]:
    path = root / entry_path(name)
    if not path.exists():
        return []
    return parse_entry_file(path.read_bytes(), str(path), name)


def _write_entries(root: Path, name: str, entries: list[IndexEntry]) -> None:
    data = "".join(dumps_canonical(e.to_json()) + "\n" for e in entries).encode()
    atomic_write_bytes(root / entry_path(name), data)


def _update_search(root: Path, name: str, entries: list[IndexEntry]) -> None:
    path = root / SEARCH_FILE
    rows = []
    if path.exists():
        rows = [row for _, row in iter_json_lines(path.read_bytes(), str(path)) if row.get("name") != name]
    line = summary_line(entries)
    if line is not None:
        rows.append(line)
    rows.sort(key=lambda r: r["name"])
    atomic_write_bytes(path, "".join(dumps_canonical(r) + "\n" for r in rows).encode())


def add_release(root: str | Path, manifest: Manifest, *, update_search: bool = True) -> IndexEntry:
    """Append ``manifest`` as a new version line of its name (refusing to change an existing release)."""
    return add_releases(root, [manifest], update_search=update_search)[0]


def add_releases(root: str | Path, manifests: list[Manifest], *, update_search: bool = True) -> list[IndexEntry]:
    """Add several releases, reading and writing each name's entry file once (an importer adding many
    versions of one name one by one would re-read and re-validate the growing file every time).

    Per name, all or nothing: a conflicting version leaves that name's file as it was.
    """
    root = Path(root)
    if not (root / CONFIG_FILE).exists():
        raise NotFoundError(f"{root}: not a registry index (no {CONFIG_FILE}); create one with `adapterhub index init`")
    by_name: dict[str, list[Manifest]] = {}
    for m in manifests:
        by_name.setdefault(m.name, []).append(m)
    added: dict[int, IndexEntry] = {}
    with index_lock(root):
        for name, group in by_name.items():
            entries = _read_entries(root, name)
            changed = False
            for manifest in group:
                new = entry_for(manifest, source=str(root / entry_path(manifest.name)))
                existing = next((e for e in entries if e.parsed_version == new.parsed_version), None)
                if existing is None:
                    entries.append(new)
                    changed = True
                elif existing.manifest_sha256 != new.manifest_sha256:
                    raise ConflictError(f"{manifest.name} {manifest.version} is already in {root} with different "
                                        "content; releases are immutable: publish a new version")
                added[id(manifest)] = existing or new
            if changed:
                entries.sort(key=lambda e: e.parsed_version)
                _write_entries(root, name, entries)
                if update_search:
                    _update_search(root, name, entries)
    return [added[id(m)] for m in manifests]


def set_yanked(root: str | Path, name: str, version: str, reason: str | bool) -> IndexEntry:
    """Yank (``reason`` string) or unyank (``False``) one version; the only change an entry allows."""
    from packaging.version import Version

    root = Path(root)
    with index_lock(root):
        entries = _read_entries(root, name)
        wanted = Version(version)
        for i, e in enumerate(entries):
            if e.parsed_version == wanted:
                entries[i] = IndexEntry(e.name, e.version, reason, e.manifest_sha256, e.raw_manifest, e.source)
                _write_entries(root, name, entries)
                _update_search(root, name, entries)
                return entries[i]
    raise NotFoundError(f"{name} {version} is not in the index at {root}")


def init_index(root: str | Path, name: str, description: str = "") -> Path:
    """Create an empty index directory with its ``config.json``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / CONFIG_FILE
    if path.exists():
        raise ConflictError(f"{path} already exists")
    config = {"index_format": "1.0", "name": name}
    if description:
        config["description"] = description
    atomic_write_bytes(path, dumps_pretty(config).encode())
    atomic_write_bytes(root / SEARCH_FILE, b"")
    return root


def iter_entry_files(root: Path):
    """Every entry file under an index directory (skips config, search summary, mirror, metadata, dotfiles)."""
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = [d for d in dirnames
                       if not d.startswith(".") and not (rel_dir == Path(".") and d in (MIRROR_DIR, METADATA_DIR))]
        for fn in filenames:
            if fn.startswith(".") or (rel_dir == Path(".") and fn in (CONFIG_FILE, SEARCH_FILE)):
                continue
            yield Path(dirpath) / fn


def rebuild_search(root: str | Path) -> int:
    """Regenerate ``search-index.jsonl`` from every entry file; returns the number of names."""
    root = Path(root)
    rows = []
    for path in iter_entry_files(root):
        line = summary_line(parse_entry_file(path.read_bytes(), str(path), path.name, validate=False))
        if line is not None:
            rows.append(line)
    rows.sort(key=lambda r: r["name"])
    with index_lock(root):
        atomic_write_bytes(root / SEARCH_FILE, "".join(dumps_canonical(r) + "\n" for r in rows).encode())
    return len(rows)
