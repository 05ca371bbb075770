"""``pull -r adapterhub.lock``: pull exactly the releases a lockfile pins, and nothing else.

The registry matches each locked adapter to its index entry and refuses any difference in manifest or
file hashes (:func:`adapterhub.registry.lockfile.check_lock`); the store then verifies every byte against
those same hashes while downloading. So the lock, not the index, decides what is installed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import settings
from ..errors import IntegrityError
from ..manifest import Manifest, dependency_digest, manifest_digest
from ..names import parse_hub_reference
from ..transport import FetchOptions
from .hub_deps import HubChain, check_dependency_manifest
from .pull import PulledAdapter, index_location, pull_hub_dependencies, pull_manifest
from .registry_deps import IndexForPull
from .trust import Trust


def pull_locked(lock: Any, *, index: Any = None, require_hashes: bool = False, only: Sequence[str] = (),
                offline: bool | None = None, cache_dir: str | Path | None = None, endpoint: str | None = None,
                token: str | bool | None = None, progress: bool | None = False,
                options: FetchOptions | None = None, trust: Trust | None = None) -> list[PulledAdapter]:
    """Pull the adapters of ``lock`` (a :class:`~adapterhub.registry.lockfile.Lockfile` or a path).

    ``only``: names to pull (with the locked adapters they pulled in); a name outside the lock is refused.
    ``require_hashes``: every adapter must carry locked hashes and every dependency must be locked.
    Dependencies come first, as in the lock. ``trust``: as in :func:`~adapterhub.store.pull`.
    """
    from ..registry import Index, open_index  # deferred: CLI import cost (registry)
    from ..registry.lockfile import (  # deferred: CLI import cost (registry)
        Lockfile,
        check_dependencies_locked,
        check_lock,
        load_lock,
    )

    if not isinstance(lock, Lockfile):
        lock = load_lock(lock)
    off = settings.offline() if offline is None else offline
    idx = index if isinstance(index, Index) else open_index(index, offline=off)
    check = check_lock(lock, idx, require_hashes=require_hashes, only=list(only))
    where = index_location(idx)
    pulled: list[PulledAdapter] = []
    for locked in check.hub:  # first: Hub adapters are what locked compositions depend on
        from .hub_pull import plan_hub_pull  # deferred: import cost of pulling a lock of registry names

        plan = plan_hub_pull(parse_hub_reference(locked.hub or ""), cache_dir=cache_dir, offline=off,
                             endpoint=endpoint, token=token, options=options)
        _check_locked(locked, plan.manifest)
        _check_pinned_by(plan.manifest, locked.hub or "", check.entries)
        check_dependencies_locked(f"{locked.name} {locked.version} ({locked.hub})", plan.manifest, lock)
        one = pull_manifest(plan.manifest, cache_dir=cache_dir, offline=off, endpoint=endpoint, token=token,
                            progress=progress, options=options, sources=lambda plan=plan: [plan.source], trust=trust)
        plan.record()
        pulled.append(dataclasses.replace(one, reference=locked.hub))
    pulled += [pull_manifest(entry.manifest, cache_dir=cache_dir, offline=off, index_config=idx.config,
                             endpoint=endpoint, token=token, progress=progress, options=options, index_location=where,
                             trust=trust)
               for entry in check.entries]
    return pulled


def _check_pinned_by(manifest: Manifest, reference: str, entries: Sequence[Any]) -> None:
    """A locked Hub adapter must also be what every locked composition naming it pinned (name, manifest sha256)."""
    for entry in entries:
        for dep in entry.manifest.dependencies or ():
            if dep.hub == reference:
                check_dependency_manifest(dep, manifest, entry.manifest.id)


def hub_dependency_locks(closure: Sequence[Any], *, cache_dir: str | Path | None = None, offline: bool | None = None,
                         endpoint: str | None = None, token: str | bool | None = None,
                         options: FetchOptions | None = None, trust: Trust | None = None,
                         index: Any = None) -> list[Any]:
    """Lock entries for the Hub adapters the resolved releases ``closure`` depend on (manifest format 1.1), and for
    the releases of ``index`` (the one ``closure`` was resolved in) those Hub adapters name in turn.

    Each is pulled (verified, checked against the composition's pins) since its manifest is derived from the
    repo; ``required_by`` names the release that pulled it in. Dependencies come first, each once.
    """
    off = settings.offline() if offline is None else offline
    kwargs = dict(cache_dir=cache_dir, offline=off, sources=None, endpoint=endpoint, token=token, progress=False,
                  options=options, trust=trust or Trust.from_env())
    registry = IndexForPull(index, off, options)
    seen: dict[str, PulledAdapter] = {}
    out = []
    for r in closure:
        registry.chosen.setdefault(r.name, r)  # the closure's own releases are this pull's choices too
    for r in closure:
        chain = HubChain((*r.required_by, r.manifest.id))
        pulled = pull_hub_dependencies(r.manifest, kwargs, chain, seen, registry)
        out += dependency_locks(pulled, registry, (*r.required_by, r.name))
    return out


def dependency_locks(pulled: Sequence[PulledAdapter], registry: IndexForPull, required_by: tuple[str, ...]) -> list[Any]:
    """Lock entries for adapters pulled as dependencies: a Hub one at its commit, a release of the pull's index
    by the hashes of its entry (a registry dependency of a Hub composition)."""
    from ..registry.lockfile import hub_locked, release_locked  # deferred: CLI import cost (registry)

    out = []
    for dep in pulled:
        if dep.reference is not None:
            out.append(hub_locked(dep.manifest, dep.reference, required_by))
        else:
            out.append(release_locked(registry.open(), dep.name, dep.version, required_by))
    return out


def _check_locked(locked: Any, manifest: Manifest) -> None:
    """The manifest derived from the repo at the locked commit must be the locked one, file for file."""
    where = f"{locked.name} {locked.version} ({locked.hub})"
    digests = {dependency_digest(manifest), manifest_digest(manifest)}  # the latter: locks written before 1.1
    if (manifest.name, manifest.version) != (locked.name, locked.version) or (
            locked.manifest_sha256 and locked.manifest_sha256 not in digests):
        raise IntegrityError(f"{where}: the manifest derived from the repo ({manifest.name} {manifest.version}, "
                             f"sha256 {dependency_digest(manifest)}) is not the locked one ({locked.manifest_sha256})",
                             hint="the derivation changed (a newer adapterhub?); re-lock after checking why")
    files = sorted((f.path, f.size, f.sha256) for f in manifest.files)
    if locked.files is not None and files != sorted((f.path, f.size, f.sha256) for f in locked.files):
        raise IntegrityError(f"{where}: the repo's files (paths, sizes, sha256) differ from the locked ones")
