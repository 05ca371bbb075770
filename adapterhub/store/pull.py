"""``pull``: requirement → manifest → verified blobs → a view, and nothing half-done on failure.

Order of work, and why:

1. Resolve the requirement through the index (or take a Manifest as given) and check it for the
   store (paths, hashes, pinned commits) before touching disk.
2. Warm path: if the view exists, its record matches the manifest and its files are still the
   verified bytes (:mod:`adapterhub.store.reuse`: small files hashed, large ones hashed when their
   stat changed), return it. No network, no imports of requests, huggingface_hub or torch. A view
   whose bytes changed is retired and rebuilt.
3. Write a lease naming every blob we need, *then* look for the blobs, so a concurrent ``cache gc``
   either sees the lease or has already removed the blob (which we then fetch). Each cached blob
   is hashed before a new view links it; a bad one is quarantined and fetched again.
4. Fetch each missing blob (once per distinct sha256) through the one writer, trying sources in
   order; safetensors files are checked by our header validator before they become blobs.
5. Publish the view atomically (each link must land on the inode we verified); drop the lease.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import settings
from ..errors import DownloadError, OfflineError
from ..manifest import ArchiveSource, Dependency, FileEntry, Manifest, manifest_digest
from ..names import (
    HubReference,
    Requirement,
    commit_of,
    dependency_requirement,
    is_hub_reference,
    parse_hub_reference,
)
from ..records import frozen_record
from .hub_deps import HubChain, check_dependency_manifest, hub_dependencies, registry_dependencies
from .layout import CacheLayout, new_owner
from .plan import check_manifest_for_store
from .registry_deps import IndexForPull
from .reuse import rehash_limit
from .signatures import SignatureGate
from .trust import Trust, TrustedSigner
from .views import (
    BlobMissingError,
    ViewRecord,
    check_view,
    publish_view,
    read_record,
    retire_view,
    rewrite_record,
    write_lease,
)

if TYPE_CHECKING:
    from ..transport import FetchOptions
    from .fetching import BlobFetch
    from .sources import Source

@frozen_record
class PulledAdapter:
    """A verified adapter in the cache: its directory, manifest and file paths."""

    path: Path
    manifest: Manifest
    files: dict[str, Path]
    downloaded: int = 0
    """Bytes fetched by this pull (0 for a warm pull)."""
    dependencies: tuple[PulledAdapter, ...] = field(default=())
    hashed: int = 0
    """Files whose bytes this pull hashed. Less than ``len(files)`` only for a warm pull that
    trusted large files whose stat had not changed since they were verified."""
    reference: str | None = None
    """For a Hub repo: ``hf:ORG/REPO@<commit>[:SUBFOLDER]``, the commit its manifest was derived at."""

    @property
    def fully_hashed(self) -> bool:
        return self.hashed >= len(self.files)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "path": str(self.path),
                "files": {k: str(v) for k, v in self.files.items()}, "downloaded_bytes": self.downloaded,
                "hashed_files": self.hashed, "dependencies": [d.to_json() for d in self.dependencies],
                **({"reference": self.reference} if self.reference else {})}


def _record_files(files: Sequence[FileEntry]) -> tuple[FileEntry, ...]:
    return tuple(FileEntry(f.path, f.size, f.sha256) for f in files)


def _result(view: Path, manifest: Manifest, record: ViewRecord, downloaded: int, hashed: int) -> PulledAdapter:
    return PulledAdapter(view, manifest, {f.path: view / f.path for f in record.files}, downloaded, hashed=hashed)


class _Puller:
    """The state of one pull of one manifest (see module docstring)."""

    def __init__(self, manifest: Manifest, layout: CacheLayout, *, offline: bool,
                 sources: list[Source] | Callable[[], Sequence[Source]] | None,
                 index_config: dict[str, Any] | None, endpoint: str | None, token: str | bool | None,
                 progress: bool | None, options: FetchOptions | None, index_location: Path | str | None = None,
                 signers: Sequence[TrustedSigner] = (), built_only: bool = False) -> None:
        self.requested = manifest
        self.built_only = built_only
        self.layout = layout
        self.offline = offline
        self.fetch_args: dict[str, Any] = dict(sources=sources, index_config=index_config, endpoint=endpoint,
                                               token=token, progress=progress, options=options,
                                               index_location=index_location)
        self.owner = new_owner()
        self.digest = manifest_digest(manifest)
        self.signatures = SignatureGate(manifest, signers)  # adapter signatures: store/signatures.py

    def warm(self) -> PulledAdapter | None:
        name, version = self.requested.name, self.requested.version
        view = self.layout.view(name, version)
        record = read_record(view)
        if record is None or record.manifest_digest != self.digest:
            return None
        found = check_view(view, record, limit=rehash_limit())
        if not found.ok:
            retire_view(self.layout, name, version, self.owner)  # its bytes changed: rebuild it
            return None
        if not self.signatures.view_is_trusted(view):  # signature hook: rebuild (and re-verify) the view
            retire_view(self.layout, name, version, self.owner)
            return None
        if found.record.stamps != record.stamps:
            rewrite_record(view, found.record, self.owner)
        manifest = self.requested
        if record.derived_from is not None:
            from .archive import load_derived  # deferred: CLI import cost (zipfile, tarfile)

            manifest = load_derived(self.layout, record.derived_from, self.requested)
        return _result(view, manifest, found.record, 0, found.hashed)

    def effective_manifest(self, blobs: BlobFetch) -> tuple[Manifest, str | None]:
        """The manifest whose files we store; for a file-less archive manifest, the derived one."""
        archives = [s for s in self.requested.sources or () if isinstance(s, ArchiveSource)]
        if self.requested.files or not archives:
            return self.requested, None
        from .archive import ingest_archive  # deferred: CLI import cost (zipfile, tarfile)

        return ingest_archive(blobs.archive_pull(), archives), archives[0].sha256

    # -- the whole pull ----------------------------------------------------------------------------

    def run(self) -> PulledAdapter:
        check_manifest_for_store(self.requested)
        self.signatures.check_signed()  # signature hook: an unsigned release is refused before any download
        hit = self.warm()
        if hit is not None:
            return hit
        if self.built_only:
            raise OfflineError(f"{self.requested.id} has no intact view in the cache (built_only)",
                               hint="pull it without built_only")
        from .fetching import BlobFetch  # deferred: warm pulls skip the download stack (start-up cost)

        blobs = BlobFetch(self.requested, self.layout, self.owner, **self.fetch_args)
        try:
            return self._offline(blobs) if self.offline else self._online(blobs)
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.layout.lease(self.owner).unlink()
            blobs.close()

    def _online(self, blobs: BlobFetch) -> PulledAdapter:
        for _ in range(3):
            manifest, derived_from = self.effective_manifest(blobs)
            write_lease(self.layout, self.owner, {f.sha256 for f in manifest.files})
            blobs.fetch_all(blobs.check_cached(manifest.files))
            try:
                return self._publish(manifest, derived_from, blobs)
            except BlobMissingError:
                continue  # gc removed a blob (or it changed) between our check and our link: again
        raise DownloadError(f"{self.requested.id}: blobs keep disappearing while the view is built "
                            "(is `cache gc --force` running in a loop?)")

    def _publish(self, manifest: Manifest, derived_from: str | None, blobs: BlobFetch) -> PulledAdapter:
        record = ViewRecord(self.requested.name, self.requested.version, self.digest,
                            _record_files(manifest.files), derived_from)
        view, record = publish_view(self.layout, self.owner, self._view_manifest(manifest, record), record,
                                    blobs.verified)
        return _result(view, manifest, record, blobs.downloaded, len(record.files))

    def _view_manifest(self, manifest: Manifest, record: ViewRecord) -> Manifest:
        """Signature hook: what the view's adapterhub.json holds (the signed manifest of a signed release),
        verified against the trusted signers first when there are any (store/signatures.py)."""
        if record.derived_from is not None:
            return manifest  # derived from a legacy archive: no signature of its own
        return self.signatures.view_manifest(self.layout.tmp / f"signature~{self.owner}", self.layout.blob,
                                             record.files)

    def _offline(self, blobs: BlobFetch) -> PulledAdapter:
        from .archive import offline_manifest  # deferred: CLI import cost (zipfile, tarfile)

        manifest, derived_from = offline_manifest(blobs.archive_pull())
        write_lease(self.layout, self.owner, {f.sha256 for f in manifest.files})  # dropped by run()
        for _ in range(3):
            missing = blobs.check_cached(manifest.files)
            if missing:
                missing = blobs.fill_from_disk(missing)
            if missing:
                shown = "; ".join(f"{f.path} ({f.size} bytes, sha256 {f.sha256[:12]}…)" for f in missing[:10])
                raise OfflineError(f"offline mode: {self.requested.id} is not fully cached; missing {len(missing)} "
                                   f"file(s): {shown}",
                                   hint="run the pull once with network access (unset ADAPTERHUB_OFFLINE / "
                                        "HF_HUB_OFFLINE, drop --offline)")
            try:
                return self._publish(manifest, derived_from, blobs)
            except BlobMissingError:
                continue
        raise OfflineError(f"offline mode: {self.requested.id}: cached blobs keep disappearing while the view "
                           "is built")


def pull_manifest(manifest: Manifest, *, cache_dir: str | Path | None = None, offline: bool | None = None,
                  sources: Sequence[Source] | Callable[[], Sequence[Source]] | None = None,
                  index_config: dict[str, Any] | None = None,
                  endpoint: str | None = None, token: str | bool | None = None, progress: bool | None = False,
                  options: FetchOptions | None = None, index_location: Path | str | None = None,
                  trust: Trust | None = None, built_only: bool = False) -> PulledAdapter:
    """Pull exactly this manifest (no dependencies); ``index_location``: the index that listed it.

    ``sources`` replaces the manifest's own sources: a list, or a function that returns one, called only
    when some file must be fetched (a warm pull builds no source). ``trust`` (default:
    :meth:`Trust.from_env`) names the signers whose OMS signature is required.
    """
    layout = CacheLayout.default(cache_dir)
    off = settings.offline() if offline is None else offline
    signers = (trust or Trust.from_env()).resolve(index_config, None if index_location is None else str(index_location))
    given = sources if sources is None or callable(sources) else list(sources)
    return _Puller(manifest, layout, offline=off, sources=given,
                   index_config=index_config, endpoint=endpoint, token=token, progress=progress,
                   options=options, index_location=index_location, signers=signers, built_only=built_only).run()


def pull(requirement: str | Manifest, *, index: Any = None, offline: bool | None = None,
         cache_dir: str | Path | None = None, sources: Sequence[Source] | None = None,
         endpoint: str | None = None, token: str | bool | None = None, progress: bool | None = False,
         options: FetchOptions | None = None, dependencies: bool = True, trust: Trust | None = None,
         built_only: bool = False) -> PulledAdapter:
    """Pull an adapter (and, by default, its dependencies) into the cache and return verified paths.

    ``requirement`` is ``"name"``, ``"name>=1,<2"``, ``"name==1.0.0"``, a Hub reference
    ``"hf:ORG/REPO[@REV][:SUBFOLDER]"`` (verified by the Hub's own hashes, see :mod:`.hub_pull`) or a
    :class:`Manifest`.
    ``index`` is an :class:`~adapterhub.registry.Index`, a directory or URL, or None for the default; the
    registry dependencies of a composition a Hub repo holds resolve against it too (:mod:`.registry_deps`).
    ``offline`` (default: ``ADAPTERHUB_OFFLINE`` / ``HF_HUB_OFFLINE``) uses the cache only.
    ``sources`` replaces the manifest's own sources (tests, custom mirrors).
    ``trust`` (default: from the environment) names the signers whose OMS signature every pulled adapter
    needs (see docs/security.md); without signers, no signature is required.
    ``built_only``: answer only from views already built and intact (this adapter's and its dependencies'),
    else :class:`OfflineError`, having fetched, copied and built nothing (:func:`pull_cached` uses it).
    """
    off = settings.offline() if offline is None else offline
    kwargs = dict(cache_dir=cache_dir, offline=off, sources=sources, endpoint=endpoint, token=token,
                  progress=progress, options=options, trust=trust or Trust.from_env(), built_only=built_only)
    registry = IndexForPull(index, off, options)
    if is_hub_reference(requirement):
        return _pull_hub(parse_hub_reference(requirement), dependencies, kwargs, registry)
    if isinstance(requirement, Manifest):
        registry_deps = registry_dependencies(requirement)
        needs_index = dependencies and bool(registry_deps)
        idx = registry.open() if (index is not None or needs_index) else None
        deps: list[PulledAdapter] = []
        seen: dict[str, PulledAdapter] = {}
        if idx is not None:
            kwargs["index_location"] = index_location(idx)
        if needs_index and idx is not None:
            from ..registry import resolve_closure  # deferred: CLI import cost (registry)

            reqs: list[str | Requirement] = [dependency_requirement(d.name, d.spec) for d in registry_deps]
            deps = _pull_closure(resolve_closure(idx, reqs, chosen=registry.chosen), registry, kwargs, seen)
        if dependencies:
            deps += pull_hub_dependencies(requirement, kwargs, HubChain((requirement.id,)), seen, registry)
        root = pull_manifest(requirement, index_config=idx.config if idx else None, **kwargs)
        return _with_deps(root, deps)

    from ..registry import resolve, resolve_closure  # deferred: CLI import cost (registry)

    idx = registry.open()
    kwargs["index_location"] = index_location(idx)
    if not dependencies:
        return pull_manifest(resolve(idx, requirement).manifest, index_config=idx.config, **kwargs)
    pulled = _pull_closure(resolve_closure(idx, [requirement], chosen=registry.chosen), registry, kwargs, {})
    return _with_deps(pulled[-1], pulled[:-1])


def pull_cached(requirement: str, *, index: str | Path | None = None, cache_dir: str | Path | None = None,
                dependencies: bool = True, trust: Trust | None = None) -> PulledAdapter | None:
    """What :func:`pull` would return when it needs no network and no download; None when it might need either.

    Only where an offline pull means exactly what an online one does: the index is read from this machine
    (:func:`~adapterhub.registry.is_local_index`) and a Hub reference names a commit (a branch or tag must be
    asked again). Then this *is* the offline pull, the same checks and the same result, limited to views
    already built (``built_only``): anything to fetch, copy or build is None, with nothing done, so a caller
    that then runs :func:`pull` does no work twice. The command line answers a warm ``pull`` this way before
    it loads its framework (start-up cost).
    """
    from ..registry import is_local_index  # deferred: CLI import cost (registry)

    if not is_local_index(index):
        return None
    if is_hub_reference(requirement) and commit_of(parse_hub_reference(requirement).revision) is None:
        return None
    try:
        return pull(requirement, index=index, offline=True, cache_dir=cache_dir, dependencies=dependencies,
                    trust=trust, built_only=True)
    except OfflineError:
        return None


def _pull_closure(closure: Sequence[Any], registry: IndexForPull, kwargs: dict[str, Any],
                  seen: dict[str, PulledAdapter]) -> list[PulledAdapter]:
    """Pull resolved index releases in order, each after the Hub adapters it depends on (format 1.1)."""
    idx = registry.open()
    kwargs = {**kwargs, "index_location": index_location(idx)}  # a release's bundled bytes: its index's mirror
    pulled: list[PulledAdapter] = []
    for r in closure:
        chain = HubChain((*r.required_by, r.manifest.id))
        pulled += pull_hub_dependencies(r.manifest, kwargs, chain, seen, registry)
        pulled.append(pull_manifest(r.manifest, index_config=idx.config, **kwargs))
    return pulled


def pull_hub_dependencies(manifest: Manifest, kwargs: dict[str, Any], chain: HubChain,
                          seen: dict[str, PulledAdapter], registry: IndexForPull | None = None) -> list[PulledAdapter]:
    """Pull the Hub adapters ``manifest`` depends on (and theirs), dependencies first, each once per pull.

    ``seen`` maps the references this pull already brought to their result (shared across one pull);
    each returned adapter is one not seen before, so the list is flat and without repeats. ``registry``: the
    index the registry dependencies of those Hub adapters resolve against (default: the default index).
    """
    registry = registry or IndexForPull(None, kwargs["offline"], kwargs.get("options"))
    return _pull_references(list(hub_dependencies(manifest)), kwargs, chain, seen, registry)


def _pull_references(wanted: Sequence[tuple[Dependency | None, HubReference]], kwargs: dict[str, Any],
                     chain: HubChain, seen: dict[str, PulledAdapter], registry: IndexForPull) -> list[PulledAdapter]:
    """Pull each ``(dependency that named it or None, reference)`` not seen yet; flat, dependencies first."""
    out: list[PulledAdapter] = []
    for dep, ref in wanted:
        if str(ref) in seen:
            chain.enter(ref)  # a reference seen before may still close a cycle through this chain
            continue
        pulled = _pull_hub(ref, True, kwargs, registry, chain=chain, expect=dep, seen=seen)
        out += [*pulled.dependencies, pulled]
    return out


def _pull_hub(ref: HubReference, dependencies: bool, kwargs: dict[str, Any], registry: IndexForPull, *,
              chain: HubChain = HubChain(), expect: Dependency | None = None,
              seen: dict[str, PulledAdapter] | None = None) -> PulledAdapter:
    """Pull a Hub reference (see :mod:`.hub_pull`) after what it needs: for an ``adapters`` fusion folder its
    members (the sibling folders at the same commit), for a composition its Hub dependencies and its registry
    dependencies (resolved against ``registry``, :mod:`.registry_deps`).

    ``expect``: the dependency that named ``ref`` (its manifest is checked before anything is published).
    ``seen``: what this pull brought already (by reference); the result's dependencies are the adapters pulled
    for it that were not, flat, dependencies first.
    """
    from .hub_pull import (  # deferred: registry-name pulls skip its imports
        index_dependencies,
        member_references,
        plan_hub_pull,
    )

    here = chain.enter(ref)
    seen = {} if seen is None else seen
    kwargs = {k: v for k, v in kwargs.items() if k != "index_location"}  # a Hub repo, whatever index listed it
    plan = plan_hub_pull(ref, cache_dir=kwargs["cache_dir"], offline=kwargs["offline"], endpoint=kwargs["endpoint"],
                         token=kwargs["token"], options=kwargs["options"])
    if expect is not None:
        check_dependency_manifest(expect, plan.manifest, chain.requirer)
    deps: list[PulledAdapter] = []
    if dependencies:
        wanted = [(None, member) for member in member_references(plan)] + list(hub_dependencies(plan.manifest))
        deps = _pull_references(wanted, kwargs, here, seen, registry)
        deps += _pull_closure(registry.resolve(index_dependencies(plan), here), registry, kwargs, seen)
    pulled = pull_manifest(plan.manifest, **{**kwargs, "sources": lambda: [plan.source]})
    plan.record()  # only now: a pull that failed leaves no view and no manifest
    result = _with_deps(dataclasses.replace(pulled, reference=str(plan.ref.at(plan.commit))), deps)
    seen[str(ref)] = result
    return result


def _with_deps(root: PulledAdapter, deps: list[PulledAdapter]) -> PulledAdapter:
    if not deps:
        return root
    return dataclasses.replace(root, downloaded=root.downloaded + sum(d.downloaded for d in deps),
                               dependencies=tuple(deps))


def index_location(idx: Any) -> Path | str | None:
    """Where the index lives (its ``mirror/`` serves ``bundled`` sources): a directory or a base URL."""
    from ..registry.backends import HttpBackend, LocalBackend  # deferred: CLI import cost (registry)

    backend = idx.source
    if isinstance(backend, LocalBackend):
        return backend.root
    return backend.base_url if isinstance(backend, HttpBackend) else None
