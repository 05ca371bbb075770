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
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import settings
from ..errors import (
    AdapterHubError,
    DownloadError,
    IntegrityError,
    NotFoundError,
    OfflineError,
    SizeLimitError,
    UnsafeFileError,
)
from ..manifest import ArchiveSource, Dependency, FileEntry, Manifest, manifest_digest
from ..names import HubReference, Requirement, dependency_requirement, is_hub_reference, parse_hub_reference
from ..transport import FetchOptions, TokenScope
from .http import HttpFetcher
from .hub_deps import HubChain, check_dependency_manifest, hub_dependencies, registry_dependencies
from .layout import CacheLayout, new_owner
from .plan import check_manifest_for_store, describe_sources, sources_for
from .progress import Progress
from .registry_deps import IndexForPull
from .reuse import rehash_limit, verified_blob
from .safetensors_check import blob_check, is_safetensors_path, temp_file_check
from .signatures import SignatureGate
from .sources import ContentDirSource, HttpBackedSource, LocalDirSource, Source
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
from .writer import BlobWriter

if TYPE_CHECKING:
    from .archive import ArchivePull

PARALLEL_FILES = 4
"""Files of one adapter fetched at the same time."""


@dataclass(frozen=True)
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


def _by_digest(files: Sequence[FileEntry]) -> list[FileEntry]:
    """One entry per distinct sha256 (two paths with identical bytes share one blob): a safetensors
    entry when there is one, so its header check runs."""
    chosen: dict[str, FileEntry] = {}
    for f in files:
        if f.sha256 not in chosen or (is_safetensors_path(f.path) and not is_safetensors_path(chosen[f.sha256].path)):
            chosen[f.sha256] = f
    return list(chosen.values())


class _Puller:
    """The state of one pull of one manifest (see module docstring)."""

    def __init__(self, manifest: Manifest, layout: CacheLayout, *, offline: bool, sources: list[Source] | None,
                 index_config: dict[str, Any] | None, endpoint: str | None, token: str | bool | None,
                 progress: bool | None, options: FetchOptions | None, index_location: Path | str | None = None,
                 signers: Sequence[TrustedSigner] = ()) -> None:
        self.requested = manifest
        self.index_location = index_location
        self.layout = layout
        self.offline = offline
        self._given = sources
        self._sources: list[Source] | None = None
        self.index_config = index_config
        self.endpoint = endpoint
        self.token = token
        self.progress_enabled = progress
        self.options = options
        self.owner = new_owner()
        self.digest = manifest_digest(manifest)
        self.downloaded = 0
        self._verified: dict[str, os.stat_result] = {}
        """sha256 -> stat of the blob as this pull verified it (hashed or written)."""
        self._fetcher: Any = None
        self._lock = threading.Lock()
        self.signatures = SignatureGate(manifest, signers)  # adapter signatures: store/signatures.py

    # -- pieces -----------------------------------------------------------------------------------

    @property
    def fetcher(self):
        """One transport for the whole pull: the caller's options, tokens only to the user's endpoints."""
        if self._fetcher is None:
            self._fetcher = HttpFetcher(self.options, scope=TokenScope.configured([self.endpoint]))
        return self._fetcher

    def archive_pull(self) -> ArchivePull:
        """What :mod:`.archive` needs of this pull; the transport is still built only on first download."""
        from .archive import ArchivePull  # deferred: CLI import cost (zipfile, tarfile)

        return ArchivePull(self.requested, self.layout, self.owner,
                           lambda url, writer: self.fetcher.download(url, writer))

    def sources(self) -> list[Source]:
        if self._sources is None:
            if self._given is None:
                found = sources_for(self.requested, index_config=self.index_config, endpoint=self.endpoint,
                                    token=self.token, fetcher=self.fetcher, index_location=self.index_location)
            else:  # caller-built HTTP sources use this pull's options unless they brought a fetcher
                found = [s.with_fetcher(self.fetcher) if isinstance(s, HttpBackedSource) else s
                         for s in self._given]
            self._sources = found
        return self._sources

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

    def effective_manifest(self) -> tuple[Manifest, str | None]:
        """The manifest whose files we store; for a file-less archive manifest, the derived one."""
        archives = [s for s in self.requested.sources or () if isinstance(s, ArchiveSource)]
        if self.requested.files or not archives:
            return self.requested, None
        from .archive import ingest_archive  # deferred: CLI import cost (zipfile, tarfile)

        return ingest_archive(self.archive_pull(), archives), archives[0].sha256

    def fetch(self, entry: FileEntry, progress: Progress, sources: Sequence[Source] | None = None) -> None:
        attempts: list[tuple[str, AdapterHubError]] = []
        sources = self.sources() if sources is None else sources
        for source in sources:
            where = f"{self.requested.id}: {entry.path}"
            try:
                self._fetch_from(source, entry, where, progress)
                return
            except (NotFoundError, DownloadError, IntegrityError, UnsafeFileError) as exc:
                attempts.append((source.description, exc))
        raise _combine(self.requested, entry, attempts, sources)

    def _fetch_from(self, source: Source, entry: FileEntry, where: str, progress: Progress) -> None:
        def writer() -> BlobWriter:
            return BlobWriter(self.layout, entry.sha256, entry.size, where=where,
                              validator=temp_file_check(entry.path, entry.size), on_progress=progress.callback)

        w = writer()
        if w.complete:  # adopted a finished download of a dead process: maybe nothing to fetch
            try:
                w.commit()
                self._keep(entry, w, where)
                return
            except IntegrityError:
                w = writer()
        with w:
            before = w.offset
            source.fetch(entry, w)
            fetched = w.offset - before
            w.commit()
        self._keep(entry, w, where)
        with self._lock:
            self.downloaded += max(fetched, 0)

    def _keep(self, entry: FileEntry, w: BlobWriter, where: str) -> None:
        """Remember the blob ``w`` published, or check the copy another process published first."""
        st = w.published or self._check_cached_blob(entry)
        if st is None:
            raise IntegrityError(f"{where}: the cached blob was replaced by other bytes while ours was written")
        with self._lock:
            self._verified[entry.sha256] = st

    def _check_cached_blob(self, entry: FileEntry) -> os.stat_result | None:
        return verified_blob(self.layout, entry.sha256, entry.size, self.owner, check=blob_check(entry.path))

    def _check_cached(self, files: Sequence[FileEntry]) -> list[FileEntry]:
        """Hash the cached blobs of ``files`` (one entry per sha256); return those still to fetch."""
        missing = []
        for entry in files:
            st = self._check_cached_blob(entry)
            if st is None:
                missing.append(entry)
            else:
                self._verified[entry.sha256] = st
        return missing

    # -- the whole pull ----------------------------------------------------------------------------

    def run(self) -> PulledAdapter:
        check_manifest_for_store(self.requested)
        self.signatures.check_signed()  # signature hook: an unsigned release is refused before any download
        hit = self.warm()
        if hit is not None:
            return hit
        if self.offline:
            try:
                return self._offline()
            finally:
                with contextlib.suppress(FileNotFoundError):
                    self.layout.lease(self.owner).unlink()
        lease = None
        try:
            for _ in range(3):
                manifest, derived_from = self.effective_manifest()
                lease = write_lease(self.layout, self.owner, {f.sha256 for f in manifest.files})
                self._verified = {}
                missing = self._check_cached(_by_digest(manifest.files))
                progress = Progress(self.progress_enabled, sum(f.size for f in missing), self.requested.id)
                try:
                    self._fetch_all(missing, progress)
                finally:
                    progress.close()
                try:
                    return self._publish(manifest, derived_from)
                except BlobMissingError:
                    continue  # gc removed a blob (or it changed) between our check and our link: again
            raise DownloadError(f"{self.requested.id}: blobs keep disappearing while the view is built "
                                "(is `cache gc --force` running in a loop?)")
        finally:
            if lease is not None:
                with contextlib.suppress(FileNotFoundError):
                    lease.unlink()
            if self._fetcher is not None:
                self._fetcher.close()

    def _publish(self, manifest: Manifest, derived_from: str | None) -> PulledAdapter:
        record = ViewRecord(self.requested.name, self.requested.version, self.digest,
                            _record_files(manifest.files), derived_from)
        view, record = publish_view(self.layout, self.owner, self._view_manifest(manifest, record), record,
                                    self._verified)
        return _result(view, manifest, record, self.downloaded, len(record.files))

    def _view_manifest(self, manifest: Manifest, record: ViewRecord) -> Manifest:
        """Signature hook: what the view's adapterhub.json holds (the signed manifest of a signed release),
        verified against the trusted signers first when there are any (store/signatures.py)."""
        if record.derived_from is not None:
            return manifest  # derived from a legacy archive: no signature of its own
        return self.signatures.view_manifest(self.layout.tmp / f"signature~{self.owner}", self.layout.blob,
                                             record.files)

    def _fetch_all(self, missing: Sequence[FileEntry], progress: Progress) -> None:
        """Fetch the missing files, largest first, up to ``PARALLEL_FILES`` at a time.

        An adapter is usually one large weights file and a few small JSON files; fetching them side
        by side hides the small files' round trips behind the large transfer. The first failure is
        raised after the other transfers finished (their blobs are verified and stay useful).
        """
        ordered = sorted(missing, key=lambda f: f.size, reverse=True)
        if len(ordered) <= 1:
            for entry in ordered:
                self.fetch(entry, progress)
            return
        self.sources()  # build the source list once, before the workers share it
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(PARALLEL_FILES, len(ordered)),
                                thread_name_prefix="adapterhub-pull") as pool:
            futures = [pool.submit(self.fetch, entry, progress) for entry in ordered]
        errors = [f.exception() for f in futures if f.exception() is not None]
        if errors:
            raise errors[0]

    def _fill_from_disk(self, manifest: Manifest, missing: list[FileEntry]) -> list[FileEntry]:
        """Offline, files may still come from sources on this disk (the bundled mirror, a directory
        registry's mirror, a local directory): no network is involved. Returns what is still missing."""
        local = [s for s in self.sources() if isinstance(s, (ContentDirSource, LocalDirSource))]
        if not local:
            return missing
        progress = Progress(self.progress_enabled, sum(f.size for f in missing), self.requested.id)
        try:
            for entry in missing:
                with contextlib.suppress(NotFoundError):
                    self.fetch(entry, progress, local)
        finally:
            progress.close()
        return [f for f in missing if f.sha256 not in self._verified]

    def _offline(self) -> PulledAdapter:
        from .archive import offline_manifest  # deferred: CLI import cost (zipfile, tarfile)

        manifest, derived_from = offline_manifest(self.archive_pull())
        write_lease(self.layout, self.owner, {f.sha256 for f in manifest.files})  # dropped by run()
        for _ in range(3):
            self._verified = {}
            missing = self._check_cached(_by_digest(manifest.files))
            if missing:
                missing = self._fill_from_disk(manifest, missing)
            if missing:
                shown = "; ".join(f"{f.path} ({f.size} bytes, sha256 {f.sha256[:12]}…)" for f in missing[:10])
                raise OfflineError(f"offline mode: {self.requested.id} is not fully cached; missing {len(missing)} "
                                   f"file(s): {shown}",
                                   hint="run the pull once with network access (unset ADAPTERHUB_OFFLINE / "
                                        "HF_HUB_OFFLINE, drop --offline)")
            try:
                return self._publish(manifest, derived_from)
            except BlobMissingError:
                continue
        raise OfflineError(f"offline mode: {self.requested.id}: cached blobs keep disappearing while the view "
                           "is built")


def _combine(manifest: Manifest, entry: FileEntry, attempts: list[tuple[str, AdapterHubError]],
             sources: Sequence[Source]) -> AdapterHubError:
    what = f"{manifest.id}: could not get {entry.path} ({entry.size} bytes, sha256 {entry.sha256[:12]}…)"
    if not attempts:
        return NotFoundError(f"{what}: the manifest lists no usable source",
                             hint="add an hf/https source to the manifest or a mirror to the index config")
    detail = "; ".join(f"[{src}] {exc}" for src, exc in attempts)
    for kind in (UnsafeFileError, SizeLimitError, IntegrityError, DownloadError):
        for _, exc in attempts:
            if isinstance(exc, kind):
                return type(exc)(f"{what}: {detail}")
    return NotFoundError(f"{what}: not found on any source ({describe_sources(sources)}): {detail}")


def pull_manifest(manifest: Manifest, *, cache_dir: str | Path | None = None, offline: bool | None = None,
                  sources: Sequence[Source] | None = None, index_config: dict[str, Any] | None = None,
                  endpoint: str | None = None, token: str | bool | None = None, progress: bool | None = False,
                  options: FetchOptions | None = None, index_location: Path | str | None = None,
                  trust: Trust | None = None) -> PulledAdapter:
    """Pull exactly this manifest (no dependencies); ``index_location``: the index that listed it.

    ``trust`` (default: :meth:`Trust.from_env`) names the signers whose OMS signature is required.
    """
    layout = CacheLayout.default(cache_dir)
    off = settings.offline() if offline is None else offline
    signers = (trust or Trust.from_env()).resolve(index_config, None if index_location is None else str(index_location))
    return _Puller(manifest, layout, offline=off, sources=list(sources) if sources is not None else None,
                   index_config=index_config, endpoint=endpoint, token=token, progress=progress,
                   options=options, index_location=index_location, signers=signers).run()


def pull(requirement: str | Manifest, *, index: Any = None, offline: bool | None = None,
         cache_dir: str | Path | None = None, sources: Sequence[Source] | None = None,
         endpoint: str | None = None, token: str | bool | None = None, progress: bool | None = False,
         options: FetchOptions | None = None, dependencies: bool = True, trust: Trust | None = None) -> PulledAdapter:
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
    """
    off = settings.offline() if offline is None else offline
    kwargs = dict(cache_dir=cache_dir, offline=off, sources=sources, endpoint=endpoint, token=token,
                  progress=progress, options=options, trust=trust or Trust.from_env())
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
    pulled = pull_manifest(plan.manifest, **{**kwargs, "sources": [plan.source]})
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
