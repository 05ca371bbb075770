"""What the cache remembers about Hub repos (see :mod:`.hub_pull`): the manifest derived for each
(repo, commit, subfolder) and the commit each branch or tag last resolved to. Read by every warm
``hf:`` pull, written by :mod:`.hub_derive`'s pulls once their view exists.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from ..errors import JSONFormatError
from ..fileio import atomic_write_text
from ..jsonio import dumps_pretty, loads_strict
from ..manifest import Manifest, manifest_to_dict, parse_manifest
from ..names import HubReference, commit_of
from ..records import frozen_record
from .layout import CacheLayout

CONVERTED_KEY = "x-adapterhub-converted"


@frozen_record
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


def converted_blobs_missing(manifest: Manifest, layout: CacheLayout) -> bool:
    """Whether a file this pull made from a pickle is gone from the cache (the Hub cannot serve it: re-derive)."""
    made = manifest.extensions.get(CONVERTED_KEY) or {}
    return any(not layout.blob(f.sha256).is_file() for f in manifest.files if f.path in made)


def cached_hub_manifest(ref: HubReference, *, cache_dir: str | Path | None = None) -> Manifest | None:
    """The derived manifest the cache holds for ``ref`` (a commit, or a ref resolved before), no network."""
    records = HubRecords(CacheLayout.default(cache_dir))
    commit = commit_of(ref.revision) or records.ref_commit(ref.repo_id, ref.revision or "main")
    return None if commit is None else records.manifest(ref.repo_id, commit, ref.subfolder)
