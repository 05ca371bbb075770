"""Steps 1, 3 and 4 of :mod:`.hub_pull` for a Hub reference the cache cannot answer: resolve the revision,
list the commit's files with the hashes the Hub publishes, fetch the small ones (each checked against its
git blob sha1 as it streams), convert pickle weights, fetch the base's ``config.json`` and derive the
manifest. Kept apart from :mod:`.hub_pull` so that a warm pull never imports the Hub client, the
transport or the derivation.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from ..errors import IntegrityError, NotFoundError, SizeLimitError
from ..jsonio import loads_strict
from ..manifest import FileEntry, Manifest
from ..manifest.derive import HubOrigin, base_reference, derive_manifest
from ..names import HubReference
from ..transport import FetchOptions, TokenScope
from .convert import CONVERT_HINT, pickle_to_safetensors
from .http import HttpFetcher
from .hub_records import CONVERTED_KEY, HubRecords, converted_blobs_missing
from .hub_repo import (
    HubFile,
    HubRepo,
    MemorySink,
    RepoSnapshot,
    file_info,
    list_files,
    resolve_revision,
)
from .layout import CacheLayout
from .safetensors_check import check_safetensors
from .sources import HubSource
from .writer import BlobWriter

CONFIG_FILES = frozenset({"adapter_config.json", "head_config.json", "adapter_fusion_config.json",
                          "adapterhub.json"})
"""Small config files the derivation reads (paths relative to the subfolder)."""
MAX_CONFIG = 4 << 20
MAX_PICKLE = 4 << 30
"""Largest pickle weights file converted at pull time (read whole into memory by the weights-only loader)."""
PICKLE_WEIGHTS = {"adapter_model.bin": "adapter_model.safetensors", "pytorch_adapter.bin": "adapter.safetensors",
                  "pytorch_model_head.bin": "model_head.safetensors",
                  "pytorch_model_adapter_fusion.bin": "model_adapter_fusion.safetensors"}
"""Pickle weight files of PEFT and ``adapters``-library repos, and the safetensors file each becomes: they
are converted at pull time, after their bytes matched the Hub's hash, by the weights-only loader
(:mod:`.convert`); the view holds only the safetensors file, so nothing is unpickled at runtime."""
PEFT_WEIGHTS = "adapter_model.safetensors"
"""The weights file whose tensor names a derivation may ask for (a pickle was converted to it already)."""

def _relative(path: str, subfolder: str | None) -> str:
    return path[len(subfolder) + 1:] if subfolder else path


def _fetch_plain(source: HubSource, file: HubFile, rel: str, where: str) -> tuple[bytes, str]:
    """A small file's bytes, checked against the Hub's hash as they arrive, and their sha256."""
    sink = MemorySink(file, f"{where}: {rel}")
    source.stream(rel, file.size, sink)
    return sink.finish()


def _store_blob(layout: CacheLayout, body: bytes, sha256: str, where: str) -> None:
    """Make verified bytes a cache blob (so the pull that follows finds them and fetches nothing)."""
    if layout.blob(sha256).is_file():
        return
    with BlobWriter(layout, sha256, len(body), where=where) as writer:
        writer.write(body)
        writer.commit()


def _convert(source: HubSource, file: HubFile, rel: str, layout: CacheLayout, where: str) -> tuple[FileEntry, str]:
    """Fetch a pickle weights file (checked against the Hub's hash first), convert it with the weights-only
    loader, and store the safetensors result; returns its entry and the pickle's sha256."""
    label = f"{where}: {rel}"
    if file.is_lfs:
        sha256 = file.lfs_sha256 or ""
        if not layout.blob(sha256).is_file():
            with BlobWriter(layout, sha256, file.size, where=label) as writer:
                source.stream(rel, file.size, writer)
                writer.commit()
        body = layout.blob(sha256).read_bytes()
    else:
        body, sha256 = _fetch_plain(source, file, rel, where)
    data = pickle_to_safetensors(body, label)
    out = hashlib.sha256(data).hexdigest()
    _store_blob(layout, data, out, f"{where}: {PICKLE_WEIGHTS[rel]} (converted from {rel})")
    return FileEntry(PICKLE_WEIGHTS[rel], len(data), out), sha256


def _parse_config(body: bytes, where: str) -> Any:
    return loads_strict(body, where)


def _derive(ref: HubReference, repo: HubRepo, snapshot: RepoSnapshot, layout: CacheLayout, scope: TokenScope,
            endpoint: str | None, token: str | bool | None, options: FetchOptions | None) -> Manifest:
    """List, fetch the small files (verified), fetch the base's config, derive the manifest."""
    commit = snapshot.commit
    where = str(ref.at(commit))
    files = list_files(repo, commit, ref.subfolder, scope=scope)
    fetcher = HttpFetcher(options, scope=scope)
    try:
        source = HubSource(ref.repo_id, commit, subfolder=ref.subfolder, endpoint=endpoint, token=token,
                           fetcher=fetcher)
        entries: list[FileEntry] = []
        configs: dict[str, Any] = {}
        converted: dict[str, dict[str, str]] = {}
        names = {_relative(f.path, ref.subfolder) for f in files}
        _check_sizes(files, ref.subfolder, where)
        for file in files:
            rel = _relative(file.path, ref.subfolder)
            wanted = rel in CONFIG_FILES
            if rel in PICKLE_WEIGHTS:
                if PICKLE_WEIGHTS[rel] not in names:  # else the repo has safetensors too: the pickle is not needed
                    entry, original = _convert(source, file, rel, layout, where)
                    entries.append(entry)
                    converted[entry.path] = {"from": rel, "sha256": original}
                continue
            if file.is_lfs and not wanted:
                entries.append(FileEntry(rel, file.size, file.lfs_sha256))  # type: ignore[arg-type]
                continue
            body, sha256 = _fetch_plain(source, file, rel, where)
            _store_blob(layout, body, sha256, f"{where}: {rel}")
            entries.append(FileEntry(rel, file.size, sha256))
            if wanted:
                configs[rel] = _parse_config(body, f"{where}: {rel}")
        origin = HubOrigin(ref.repo_id, commit, ref.subfolder, endpoint, snapshot.card_data)
        base_config = None
        if "adapterhub.json" not in configs:
            base_config = _base_config(configs, origin, endpoint, token, scope, fetcher)
        weights = next((f for f in entries if f.path == PEFT_WEIGHTS), None)
        manifest = derive_manifest(configs, entries, origin, base_config,
                                   lambda: _tensor_names(source, weights, layout, where))
        if converted:
            manifest = dataclasses.replace(manifest, extensions={**manifest.extensions, CONVERTED_KEY: converted})
        return manifest
    finally:
        fetcher.close()


def _check_sizes(files: list[HubFile], subfolder: str | None, where: str) -> None:
    """:class:`SizeLimitError` before anything is fetched when a file this pull reads into memory is too large:
    a config over :data:`MAX_CONFIG` (a few kB normally; skipping it would misdescribe the repo), a pickle to
    convert over :data:`MAX_PICKLE`."""
    for file in files:
        rel = _relative(file.path, subfolder)
        if rel in CONFIG_FILES and file.size > MAX_CONFIG:
            raise SizeLimitError(f"{where}: {rel} is {file.size} bytes, larger than the {MAX_CONFIG} bytes a config "
                                 "file may be; refusing to read it", hint="the repo is broken or hostile; nothing was stored")
        if rel in PICKLE_WEIGHTS and file.size > MAX_PICKLE:
            raise SizeLimitError(f"{where}: {rel} is {file.size} bytes; pickle weights over {MAX_PICKLE} bytes are not "
                                 "converted (the conversion holds them in memory)", hint=CONVERT_HINT)


def _tensor_names(source: HubSource, entry: FileEntry | None, layout: CacheLayout, where: str) -> list[str]:
    """The tensor names of the PEFT weights file, for a derivation that needs them: the file is fetched into the
    cache now (checked against the Hub's sha256 as it streams, so the pull that follows reuses the blob) and its
    header is read by the store's strict safetensors gate."""
    if entry is None:
        raise NotFoundError(f"{where}: where this adapter's targets land depends on its tensors, but the repo holds "
                            f"no {PEFT_WEIGHTS}")
    blob = layout.blob(entry.sha256)
    if not blob.is_file():
        with BlobWriter(layout, entry.sha256, entry.size, where=f"{where}: {entry.path}") as writer:
            source.stream(entry.path, entry.size, writer)
            writer.commit()
    return [t.name for t in check_safetensors(blob).tensors]


def _base_config(configs: dict[str, Any], origin: HubOrigin, endpoint: str | None, token: str | bool | None,
                 scope: TokenScope, fetcher: Any) -> dict[str, Any] | None:
    """The base model's ``config.json`` from the Hub (at the revision the adapter pins, else main),
    checked against its listed hash; None when the adapter names no base (derive says what is missing)."""
    base_id, base_revision = base_reference(configs, origin)
    if base_id is None:
        return None
    base = HubRepo(base_id, endpoint=endpoint, token=token)
    commit = resolve_revision(base, base_revision, scope=scope).commit
    file = file_info(base, commit, "config.json", scope=scope)
    where = f"hf:{base_id}@{commit[:12]} (base of {origin})"
    source = HubSource(base_id, commit, endpoint=endpoint, token=token, fetcher=fetcher)
    body, _ = _fetch_plain(source, file, "config.json", where)
    config = _parse_config(body, f"{where}: config.json")
    if not isinstance(config, dict):
        raise IntegrityError(f"{where}: config.json is not a JSON object")
    return config


def resolve_and_derive(ref: HubReference, commit: str | None, records: HubRecords, layout: CacheLayout, *,
                       endpoint: str | None, token: str | bool | None,
                       options: FetchOptions | None) -> tuple[str, Manifest]:
    """The commit ``ref`` names (``commit`` when it is already pinned) and its manifest: the one derived
    before when the cache holds it and nothing it converted is gone, else derived now."""
    repo = HubRepo(ref.repo_id, endpoint=endpoint, token=token)
    scope = TokenScope.configured([endpoint])
    snapshot: RepoSnapshot | None = None
    if commit is None:
        snapshot = resolve_revision(repo, ref.revision, scope=scope)
        commit = snapshot.commit
        manifest = records.manifest(ref.repo_id, commit, ref.subfolder)
        if manifest is not None and not converted_blobs_missing(manifest, layout):
            return commit, manifest
    snapshot = snapshot or resolve_revision(repo, commit, scope=scope)
    return commit, _derive(ref, repo, snapshot, layout, scope, endpoint, token, options)
