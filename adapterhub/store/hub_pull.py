"""``pull hf:ORG/REPO[@REV][:SUBFOLDER]``: any adapter repo on the Hub, verified by the Hub's own hashes.

Order of work, and why:

1. The revision becomes a 40-hex commit (one resolve call; none when the reference already names a
   commit). Offline, a branch or tag uses the commit the last online pull resolved it to.
2. A manifest derived earlier for (repo, commit, subfolder) is in the cache: the pull is a regular
   pull of that manifest, so a warm pull touches no network and imports no client.
3. Otherwise the commit's files are listed with the hashes the Hub publishes. Plain git files (configs,
   cards) are fetched now, each checked against its git blob sha1 while it streams, and become blobs
   named by their sha256; the LFS files are named by the LFS sha256 the listing gives. The base
   model's ``config.json`` (for the shape facts) is fetched the same way from the base's repo.
4. :func:`~adapterhub.manifest.derive.derive_manifest` describes the repo (or takes its own
   ``adapterhub.json``); the store pulls that manifest from the repo at the commit, every LFS byte
   checked against the Hub's sha256 by the writer.
   Pickle weights are converted to safetensors here, after their bytes matched the Hub's sha256
   (:data:`PICKLE_WEIGHTS`).
5. Only after the view is published (:meth:`HubPlan.record`, called by :func:`~adapterhub.store.pull`)
   is the derived manifest recorded: a pull that failed anywhere
   leaves no view and no manifest (verified blobs may stay, as after any failed pull).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..errors import IntegrityError, JSONFormatError, NotFoundError, OfflineError
from ..fileio import atomic_write_text
from ..jsonio import dumps_pretty, loads_strict
from ..manifest import FileEntry, Manifest, manifest_to_dict, parse_manifest
from ..manifest.derive import HubOrigin, base_reference, derive_manifest
from ..names import HubReference
from ..transport import FetchOptions, TokenScope
from .convert import pickle_to_safetensors
from .http import HttpFetcher
from .hub_repo import (
    HubFile,
    HubRepo,
    MemorySink,
    RepoSnapshot,
    commit_of,
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
PICKLE_WEIGHTS = {"adapter_model.bin": "adapter_model.safetensors", "pytorch_adapter.bin": "adapter.safetensors",
                  "pytorch_model_head.bin": "model_head.safetensors",
                  "pytorch_model_adapter_fusion.bin": "model_adapter_fusion.safetensors"}
"""Pickle weight files of PEFT and ``adapters``-library repos, and the safetensors file each becomes: they
are converted at pull time, after their bytes matched the Hub's hash, by the weights-only loader
(:mod:`.convert`); the view holds only the safetensors file, so nothing is unpickled at runtime."""
CONVERTED_KEY = "x-adapterhub-converted"
PEFT_WEIGHTS = "adapter_model.safetensors"
"""The weights file whose tensor names a derivation may ask for (a pickle was converted to it already)."""


@dataclass(frozen=True)
class HubRecords:
    """What the cache remembers about Hub repos: derived manifests by (repo, commit, subfolder), and the
    commit each branch or tag last resolved to (for offline pulls)."""

    layout: CacheLayout

    def _repo_dir(self, repo_id: str) -> Path:
        return self.layout.root / "hub" / quote(repo_id, safe="")

    def manifest_path(self, repo_id: str, commit: str, subfolder: str | None) -> Path:
        tail = f"~{quote(subfolder, safe='')}" if subfolder else ""
        return self._repo_dir(repo_id) / "manifests" / f"{commit}{tail}.json"

    def manifest(self, repo_id: str, commit: str, subfolder: str | None) -> Manifest | None:
        path = self.manifest_path(repo_id, commit, subfolder)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        return parse_manifest(loads_strict(data, str(path)), str(path), memo=True)

    def save_manifest(self, repo_id: str, commit: str, subfolder: str | None, manifest: Manifest) -> None:
        path = self.manifest_path(repo_id, commit, subfolder)
        document = manifest_to_dict(manifest)
        # Validated (and remembered in the schema memo) before it is written: the warm pull's read of this
        # file then skips jsonschema, and an invalid manifest never reaches the cache.
        parse_manifest(document, str(path), memo=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, dumps_pretty(document))

    def _refs_path(self, repo_id: str) -> Path:
        return self._repo_dir(repo_id) / "refs.json"

    def ref_commit(self, repo_id: str, ref: str) -> str | None:
        try:
            refs = loads_strict(self._refs_path(repo_id).read_bytes(), "refs.json")
        except (FileNotFoundError, JSONFormatError):
            return None
        found = refs.get(ref) if isinstance(refs, dict) else None
        return found if isinstance(found, str) and commit_of(found) else None

    def remember_ref(self, repo_id: str, ref: str, commit: str) -> None:
        path = self._refs_path(repo_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            refs = loads_strict(path.read_bytes(), str(path))
        except (FileNotFoundError, JSONFormatError):
            refs = {}
        refs = refs if isinstance(refs, dict) else {}
        refs[ref] = commit
        atomic_write_text(path, dumps_pretty(refs))


@dataclass(frozen=True)
class HubPlan:
    """What pulling a Hub reference comes down to: this manifest, from this repo at this commit."""

    ref: HubReference
    commit: str
    manifest: Manifest
    source: HubSource
    records: HubRecords

    def record(self) -> None:
        """Remember the manifest (and the commit the branch or tag resolved to): call once the view exists."""
        self.records.save_manifest(self.ref.repo_id, self.commit, self.ref.subfolder, self.manifest)
        if commit_of(self.ref.revision) is None:
            self.records.remember_ref(self.ref.repo_id, self.ref.revision or "main", self.commit)


def plan_hub_pull(ref: HubReference, *, cache_dir: str | Path | None = None, offline: bool = False,
                  endpoint: str | None = None, token: str | bool | None = None,
                  options: FetchOptions | None = None) -> HubPlan:
    """Steps 1-4 of the module docstring: the manifest to pull for ``ref`` and the source to pull it from."""
    layout = CacheLayout.default(cache_dir)
    records = HubRecords(layout)
    repo = HubRepo(ref.repo_id, endpoint=endpoint, token=token)
    scope = TokenScope.configured([endpoint])
    commit = commit_of(ref.revision)
    snapshot: RepoSnapshot | None = None
    if commit is None:
        if offline:
            commit = records.ref_commit(ref.repo_id, ref.revision or "main")
            if commit is None:
                raise OfflineError(f"offline mode: {ref} was never resolved to a commit on this machine",
                                   hint="pull it once with network access, or name a commit (hf:ORG/REPO@<40 hex>)")
        else:
            snapshot = resolve_revision(repo, ref.revision, scope=scope)
            commit = snapshot.commit
    manifest = records.manifest(ref.repo_id, commit, ref.subfolder)
    if manifest is not None and not offline and converted_blobs_missing(manifest, layout):
        manifest = None  # a converted file was collected: convert again from the repo's pickle
    if manifest is None:
        if offline:
            raise OfflineError(f"offline mode: {ref.at(commit)} is not in the cache",
                               hint="pull it once with network access (unset ADAPTERHUB_OFFLINE / HF_HUB_OFFLINE)")
        snapshot = snapshot or resolve_revision(repo, commit, scope=scope)
        manifest = _derive(ref, repo, snapshot, layout, scope, endpoint, token, options)
    source = HubSource(ref.repo_id, commit, subfolder=ref.subfolder, endpoint=endpoint, token=token)
    return HubPlan(ref, commit, manifest, source, records)


def member_references(plan: HubPlan) -> list[HubReference]:
    """The members of a derived ``adapters`` fusion layer: sibling folders of the repo at the same commit."""
    derived = plan.manifest.extensions.get("x-adapterhub-derived")
    members = derived.get("members") if isinstance(derived, dict) else None
    if not isinstance(members, dict):
        return []
    return [HubReference(plan.ref.repo_id, plan.commit, folder) for folder in members.values()
            if isinstance(folder, str)]


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


def converted_blobs_missing(manifest: Manifest, layout: CacheLayout) -> bool:
    """Whether a file this pull made from a pickle is gone from the cache (the Hub cannot serve it: re-derive)."""
    made = manifest.extensions.get(CONVERTED_KEY) or {}
    return any(not layout.blob(f.sha256).is_file() for f in manifest.files if f.path in made)


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
        for file in files:
            rel = _relative(file.path, ref.subfolder)
            wanted = rel in CONFIG_FILES and file.size <= MAX_CONFIG
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


def cached_hub_manifest(ref: HubReference, *, cache_dir: str | Path | None = None) -> Manifest | None:
    """The derived manifest the cache holds for ``ref`` (a commit, or a ref resolved before), no network."""
    records = HubRecords(CacheLayout.default(cache_dir))
    commit = commit_of(ref.revision) or records.ref_commit(ref.repo_id, ref.revision or "main")
    return None if commit is None else records.manifest(ref.repo_id, commit, ref.subfolder)
