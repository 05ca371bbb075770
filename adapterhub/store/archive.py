"""Legacy archive sources (old AdapterHub zips, PEFT tarballs): download, pin, extract, convert.

An archive is not a per-file source: its files only exist after extraction and conversion. So a
manifest whose ``files`` list is empty and which names an ``archive`` source is handled here:

1. fetch the archive into a blob (pinned sha256; size cap), through the one writer;
2. read the blob into memory and hash *those* bytes again, so what we unpack is exactly what matched
   the pin (no window for the file to change between check and use);
3. extract with path filtering (:mod:`.extract`) and convert pickle weights (:mod:`.convert`);
4. store every produced file as a blob (safetensors header-checked) and record the result in
   ``derived/<archive-sha256>.json``: the derived manifest, whose files the view then holds.

A later pull, online or offline, reuses the derived record and never unpacks the archive again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import (
    AdapterHubError,
    IntegrityError,
    OfflineError,
    UnsafeFileError,
)
from ..jsonio import dumps_pretty, loads_strict
from ..manifest import ArchiveSource, FileEntry, Manifest, atomic_write_text, manifest_digest
from .convert import pickle_to_safetensors
from .extract import Member, read_archive
from .layout import CacheLayout
from .reuse import open_blob, quarantine, verified_blob
from .safetensors_check import temp_file_check
from .views import write_lease
from .writer import BlobWriter

MAX_ARCHIVE_SIZE = 512 * 1024 * 1024
DERIVED_FORMAT = 1


@dataclass(frozen=True)
class ArchivePull:
    """What archive handling needs from the pull that asks for it (``store/pull.py`` builds one).

    ``download(url, writer)`` streams a URL into a blob writer through the pull's one transport,
    which is built on first use, so an offline pull or a warm one never creates it.
    """

    requested: Manifest
    layout: CacheLayout
    owner: str
    """The pull's owner id: the name of its lease and of its temp files."""
    download: Callable[[str, BlobWriter], None]

# name in the archive -> (name in the view, role, needs conversion)
LAYOUT_FILES: dict[str, dict[str, tuple[str, str, bool]]] = {
    "adapters-library": {
        "pytorch_adapter.bin": ("adapter.safetensors", "weights", True),
        "adapter.safetensors": ("adapter.safetensors", "weights", False),
        "pytorch_model_head.bin": ("head.safetensors", "head", True),
        "head.safetensors": ("head.safetensors", "head", False),
        "adapter_config.json": ("adapter_config.json", "config", False),
        "head_config.json": ("head_config.json", "config", False),
    },
    "peft": {
        "adapter_model.bin": ("adapter_model.safetensors", "weights", True),
        "adapter_model.safetensors": ("adapter_model.safetensors", "weights", False),
        "adapter_config.json": ("adapter_config.json", "config", False),
    },
}


def _derived_manifest(requested: Manifest, files: tuple[FileEntry, ...], archive: str) -> Manifest:
    ext = dict(requested.extensions)
    ext["x-adapterhub-derived"] = {"from_archive_sha256": archive, "converter": "adapterhub.store.convert"}
    return dataclasses.replace(requested, files=files, extensions=ext)


def load_derived(layout: Any, archive_sha256: str, requested: Manifest) -> Manifest:
    """The derived manifest recorded for ``archive_sha256`` (raises if missing or for another manifest)."""
    path = layout.derived_manifest(archive_sha256)
    data = loads_strict(path.read_bytes(), str(path))
    if data.get("format") != DERIVED_FORMAT or data.get("manifest_digest") != manifest_digest(requested):
        raise IntegrityError(f"{path}: derived record does not belong to {requested.id}")
    files = tuple(FileEntry(f["path"], int(f["size"]), f["sha256"], f.get("role")) for f in data["files"])
    return _derived_manifest(requested, files, archive_sha256)


def _try_derived(layout: Any, archive_sha256: str, requested: Manifest) -> Manifest | None:
    try:
        return load_derived(layout, archive_sha256, requested)
    except (OSError, AdapterHubError, KeyError, TypeError, ValueError, AttributeError):
        return None


def offline_manifest(puller: ArchivePull) -> tuple[Manifest, str | None]:
    """Without network: the manifest itself, or the derived record of an archive already ingested."""
    requested = puller.requested
    archives = [s for s in requested.sources or () if isinstance(s, ArchiveSource)]
    if requested.files or not archives:
        return requested, None
    for arch in archives:
        derived = _try_derived(puller.layout, arch.sha256, requested)
        if derived is not None:
            return derived, arch.sha256
    raise OfflineError(f"offline mode: {requested.id} comes from a legacy archive that was never ingested "
                       f"({archives[0].url})", hint="pull it once with network access")


def ingest_archive(puller: ArchivePull, archives: list[ArchiveSource]) -> Manifest:
    """Derived manifest for the first archive that works (see module docstring)."""
    layout = puller.layout
    for arch in archives:
        derived = _try_derived(layout, arch.sha256, puller.requested)
        if derived is not None and all(verified_blob(layout, f.sha256, f.size, puller.owner) is not None
                                       for f in derived.files):
            return derived  # a bad blob is quarantined above, and re-made from the archive below
    errors: list[AdapterHubError] = []
    for arch in archives:
        try:
            return _ingest(puller, arch)
        except AdapterHubError as exc:
            errors.append(exc)
    # The leases _ingest wrote protect blobs for a view that will not be built: drop them.
    with contextlib.suppress(FileNotFoundError):
        layout.lease(puller.owner).unlink()
    if len(errors) == 1:
        raise errors[0]
    raise type(errors[0])(f"{puller.requested.id}: no archive source worked: " + "; ".join(map(str, errors)))


def _ingest(puller: ArchivePull, arch: ArchiveSource) -> Manifest:
    layout = puller.layout
    requested = puller.requested
    where = f"{requested.id}: archive {arch.url}"
    write_lease(layout, puller.owner, {arch.sha256})
    data = _read_archive_blob(layout, arch.sha256, puller.owner)
    if data is None:
        with BlobWriter(layout, arch.sha256, arch.size, max_size=MAX_ARCHIVE_SIZE, where=where) as w:
            puller.download(arch.url, w)
            w.commit()
        data = _read_archive_blob(layout, arch.sha256, puller.owner)
        if data is None:
            raise IntegrityError(f"{where}: the archive blob was replaced while it was being stored")
    produced = [(path, role, body, hashlib.sha256(body).hexdigest())
                for path, role, body in _convert_members(read_archive(data, arch.format, where), arch.layout, where)]
    write_lease(layout, puller.owner, {arch.sha256, *(sha for *_, sha in produced)})
    files = []
    for path, role, body, sha in produced:
        if verified_blob(layout, sha, len(body), puller.owner) is None:
            with BlobWriter(layout, sha, len(body), where=f"{requested.id}: {path}",
                            validator=temp_file_check(path, len(body))) as w:
                w.write(body)
                w.commit()
        files.append(FileEntry(path, len(body), sha, role))
    record = {"format": DERIVED_FORMAT, "manifest_digest": manifest_digest(requested), "archive_sha256": arch.sha256,
              "files": [{"path": f.path, "size": f.size, "sha256": f.sha256, "role": f.role} for f in files]}
    layout.derived.mkdir(parents=True, exist_ok=True)
    atomic_write_text(layout.derived_manifest(arch.sha256), dumps_pretty(record))
    return _derived_manifest(requested, tuple(files), arch.sha256)


def _read_archive_blob(layout: CacheLayout, sha256: str, owner: str) -> bytes | None:
    """The archive's bytes when its blob is a regular file that hashes right (read once into memory,
    so what is unpacked is what matched); None when absent, or bad (then quarantined)."""
    opened = open_blob(layout, sha256, owner)
    if opened is None:
        return None
    fh, _ = opened
    with fh:
        data = fh.read(MAX_ARCHIVE_SIZE + 1)
    if hashlib.sha256(data).hexdigest() != sha256:
        quarantine(layout, sha256, owner)
        return None
    return data


def _convert_members(members: list[Member], layout_name: str, where: str) -> list[tuple[str, str, bytes]]:
    """``(path, role, bytes)`` for each file the layout knows; pickle weights converted."""
    known = LAYOUT_FILES[layout_name]
    out: list[tuple[str, str, bytes]] = []
    targets: set[str] = set()
    for m in members:
        base = os.path.basename(m.path)
        if m.path != base or base not in known:
            continue  # READMEs, optimizer states, nested folders: not part of the adapter
        target, role, convert = known[base]
        if target in targets:
            raise UnsafeFileError(f"{where}: both a pickle and a safetensors file would become {target}")
        targets.add(target)
        if convert:
            body = pickle_to_safetensors(m.data, f"{where}: {m.path}")
        else:
            body = m.data
            if target.endswith(".json"):
                loads_strict(body, f"{where}: {m.path}")
        out.append((target, role, body))
    if not any(role == "weights" for _, role, _ in out):
        raise UnsafeFileError(f"{where}: no adapter weights found for layout {layout_name!r} "
                              f"(looked for {', '.join(k for k, v in known.items() if v[1] == 'weights')})")
    return out
