"""``pull hf:ORG/REPO[@REV][:SUBFOLDER]``: any adapter repo on the Hub, verified by the Hub's own hashes.

Order of work, and why:

1. The revision becomes a 40-hex commit (one resolve call; none when the reference already names a
   commit). Offline, a branch or tag uses the commit the last online pull resolved it to.
2. A manifest derived earlier for (repo, commit, subfolder) is in the cache: the pull is a regular
   pull of that manifest, so a warm pull touches no network and imports no client (nor the listing,
   fetching and derivation of step 3-4, which live in :mod:`.hub_derive`).
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

from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import OfflineError
from ..manifest import Dependency, Manifest
from ..names import HubReference, commit_of
from ..records import frozen_record
from .hub_deps import registry_dependencies
from .hub_records import HubRecords, converted_blobs_missing
from .layout import CacheLayout

if TYPE_CHECKING:
    from ..transport import FetchOptions
    from .sources import HubSource

@frozen_record
class HubPlan:
    """What pulling a Hub reference comes down to: this manifest, from this repo at this commit."""

    ref: HubReference
    commit: str
    manifest: Manifest
    records: HubRecords
    endpoint: str | None = None
    token: str | bool | None = None

    @cached_property
    def source(self) -> HubSource:
        """Where the pull fetches missing files (built on first use: a warm pull fetches nothing)."""
        from .sources import HubSource  # deferred: warm pulls skip the download stack (start-up cost)

        return HubSource(self.ref.repo_id, self.commit, subfolder=self.ref.subfolder, endpoint=self.endpoint,
                         token=self.token)

    def record(self) -> None:
        """Remember the manifest (and the commit the branch or tag resolved to): call once the view exists."""
        self.records.save_manifest(self.ref.repo_id, self.commit, self.ref.subfolder, self.manifest)
        if commit_of(self.ref.revision) is None:
            self.records.remember_ref(self.ref.repo_id, self.ref.revision or "main", self.commit)


def plan_hub_pull(ref: HubReference, *, cache_dir: str | Path | None = None, offline: bool = False,
                  endpoint: str | None = None, token: str | bool | None = None,
                  options: FetchOptions | None = None) -> HubPlan:
    """Steps 1-4 of the module docstring: the manifest to pull for ``ref`` and the source to pull it from.

    A commit whose manifest the cache holds needs nothing more (no client, no listing); everything
    else is :mod:`.hub_derive`'s work.
    """
    layout = CacheLayout.default(cache_dir)
    records = HubRecords(layout)
    commit = commit_of(ref.revision)
    if commit is not None:
        manifest = records.manifest(ref.repo_id, commit, ref.subfolder)
        if manifest is not None and (offline or not converted_blobs_missing(manifest, layout)):
            return HubPlan(ref, commit, manifest, records, endpoint, token)
    elif offline:
        commit = records.ref_commit(ref.repo_id, ref.revision or "main")
        if commit is None:
            raise OfflineError(f"offline mode: {ref} was never resolved to a commit on this machine",
                               hint="pull it once with network access, or name a commit (hf:ORG/REPO@<40 hex>)")
        manifest = records.manifest(ref.repo_id, commit, ref.subfolder)
        if manifest is not None:
            return HubPlan(ref, commit, manifest, records, endpoint, token)
    if offline:
        raise OfflineError(f"offline mode: {ref.at(commit)} is not in the cache",
                           hint="pull it once with network access (unset ADAPTERHUB_OFFLINE / HF_HUB_OFFLINE)")
    from .hub_derive import resolve_and_derive  # deferred: warm pulls skip the Hub client and derivation

    commit, manifest = resolve_and_derive(ref, commit, records, layout, endpoint=endpoint, token=token,
                                          options=options)
    return HubPlan(ref, commit, manifest, records, endpoint, token)


def member_references(plan: HubPlan) -> list[HubReference]:
    """The members of a derived ``adapters`` fusion layer: sibling folders of the repo at the same commit."""
    derived = plan.manifest.extensions.get("x-adapterhub-derived")
    members = derived.get("members") if isinstance(derived, dict) else None
    if not isinstance(members, dict):
        return []
    return [HubReference(plan.ref.repo_id, plan.commit, folder) for folder in members.values()
            if isinstance(folder, str)]


def index_dependencies(plan: HubPlan) -> list[Dependency]:
    """The dependencies of the planned manifest an index has to provide: those it names by registry name, except
    the members of a derived fusion layer (named by their derived names; :func:`member_references` pulls them)."""
    derived = plan.manifest.extensions.get("x-adapterhub-derived")
    members = derived.get("members") if isinstance(derived, dict) else None
    siblings = set(members) if isinstance(members, dict) else set()
    return [dep for dep in registry_dependencies(plan.manifest) if dep.name not in siblings]
