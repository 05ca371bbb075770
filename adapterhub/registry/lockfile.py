"""Lockfiles (``adapterhub.lock``): a resolved set of adapters pinned by version and hash.

``adapterhub lock NAME...`` resolves the names and their dependencies and writes, for each, the version,
the manifest's sha256 and every file's path, size and sha256, plus the signed metadata versions of the
index it was resolved in (``schemas/lockfile.v1.json``). ``adapterhub pull -r adapterhub.lock`` then
pulls exactly those releases and refuses any whose index entry no longer has the locked hashes. With
``--require-hashes`` (pip's hash-checking mode) it accepts nothing else: every adapter must carry locked
hashes, every dependency must itself be locked, and names outside the lock are refused. The hashes are
*local* pins: an index (even a signed one) that changes an entry cannot change what a lock installs.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import resources
from ..errors import IntegrityError, NotFoundError, RollbackError, SchemaError
from ..jsonio import dumps_pretty, loads_strict
from ..manifest import Manifest, dependency_digest
from ..names import dependency_requirement, normalize_name
from ..schema import LOCKFILE_SCHEMA, validate_document
from .backends import LocalBackend
from .entries import IndexEntry
from .index import Index
from .resolver import YankedVersionWarning, resolve_closure

LOCK_VERSION = 1
LOCK_FILENAME = "adapterhub.lock"
MAX_LOCK_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class LockedFile:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class LockedAdapter:
    """One pinned release; hashes are optional in the format so ``--require-hashes`` can demand them."""

    name: str
    version: str
    manifest_sha256: str | None = None
    files: tuple[LockedFile, ...] | None = None
    required_by: tuple[str, ...] = ()
    hub: str | None = None
    """``hf:ORG/REPO@<commit>[:SUBFOLDER]`` for an adapter pulled from a Hub repo (its manifest is derived
    from the repo at that commit, not read from an index)."""

    @property
    def hashed(self) -> bool:
        """Whether the lock pins this adapter's manifest and files (a composition may have no files)."""
        return bool(self.manifest_sha256) and self.files is not None


@dataclass(frozen=True)
class LockedIndex:
    location: str
    name: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class Lockfile:
    adapters: tuple[LockedAdapter, ...]
    index: LockedIndex | None = None
    requirements: tuple[str, ...] = ()
    lock_version: int = LOCK_VERSION

    def find(self, name: str) -> LockedAdapter | None:
        key = normalize_name(name)
        return next((a for a in self.adapters if a.name == key), None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"lock_version": self.lock_version, "requirements": list(self.requirements)}
        if self.index is not None:
            out["index"] = {"location": self.index.location,
                            **({"name": self.index.name} if self.index.name else {}),
                            **({"metadata": self.index.metadata} if self.index.metadata else {})}
        out["adapters"] = [
            {"name": a.name, "version": a.version,
             **({"manifest_sha256": a.manifest_sha256} if a.manifest_sha256 else {}),
             **({"files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in a.files]}
                if a.files is not None else {}),
             **({"hub": a.hub} if a.hub else {}),
             "required_by": list(a.required_by)}
            for a in self.adapters]
        return out

    def dumps(self) -> str:
        return dumps_pretty(self.to_json())


def index_label(index: Index) -> str:
    """How a lock names an index: ``bundled``, or the directory / base URL it was read from."""
    source = index.source
    if isinstance(source, LocalBackend) and source.root.resolve() == resources.bundled_index_dir().resolve():
        return "bundled"
    return source.location


def _files_of(entry: IndexEntry) -> tuple[LockedFile, ...]:
    return tuple(LockedFile(f.path, f.size, f.sha256) for f in entry.manifest.files)


def hub_locked(manifest: Manifest, reference: str, required_by: tuple[str, ...] = ()) -> LockedAdapter:
    """The lock entry of an adapter pulled from a Hub repo: ``reference`` names the commit; ``required_by``
    the releases that pulled it in (empty: asked for). Its manifest sha256 leaves out the endpoint the
    manifest was derived through (:func:`~adapterhub.manifest.dependency_digest`): a lock made through
    one mirror installs through another."""
    return LockedAdapter(manifest.name, manifest.version, dependency_digest(manifest),
                         tuple(LockedFile(f.path, f.size, f.sha256) for f in manifest.files), required_by,
                         hub=reference)


def release_locked(index: Index, name: str, version: str, required_by: tuple[str, ...] = ()) -> LockedAdapter:
    """The lock entry of the release ``name version`` of ``index`` (hashes from its entry), pulled in by
    ``required_by``: a registry dependency of an adapter the caller pulled from a Hub repo."""
    entry = index.entry(name, version)
    return LockedAdapter(entry.name, entry.version, entry.manifest_sha256, _files_of(entry), required_by)


def build_lock(index: Index, requirements: list[str], *, base_model: str | None = None,
               hub: Sequence[tuple[str, LockedAdapter]] = (),
               hub_dependencies: Sequence[LockedAdapter] = ()) -> Lockfile:
    """Resolve ``requirements`` (dependencies first) and pin every release by version and hashes.

    ``hub``: ``(requirement as given, entry from`` :func:`hub_locked` ``)`` for ``hf:`` requirements, which
    the caller pulled (their manifests are derived from the repos, not resolved in ``index``).
    ``hub_dependencies``: entries (with ``required_by``) for what the caller pulled as dependencies of Hub
    adapters or of the resolved releases: Hub adapters (manifest format 1.1, :func:`hub_locked`) and releases
    of ``index`` that Hub compositions name (:func:`release_locked`); they come first, before the releases
    that need them. An adapter both asked for and depended on is locked once; one name at two versions (or
    from a repo and the index) is refused.
    """
    resolved = resolve_closure(index, list(requirements), base_model=base_model) if requirements else []
    state = index.trusted_state()
    adapters = tuple(LockedAdapter(r.name, r.version, r.entry.manifest_sha256, _files_of(r.entry), r.required_by)
                     for r in resolved)
    by_ref: dict[str, LockedAdapter] = {}
    for locked in [*hub_dependencies, *(a for _, a in hub)]:
        by_ref.setdefault(locked.hub or f"{locked.name}=={locked.version}", locked)
    taken = {a.name: a for a in adapters}
    for key, locked in list(by_ref.items()):
        have = taken.get(locked.name)
        if have is not None and locked.hub is None and have.hub is None and have.version == locked.version:
            del by_ref[key]  # a release the index closure locks too: once
            continue
        if have is not None:
            raise IntegrityError(f"{locked.name} would be locked twice ({_origin(locked)} and {_origin(have)})",
                                 hint="lock one of them")
        taken[locked.name] = locked
    return Lockfile(tuple(by_ref.values()) + adapters,
                    LockedIndex(index_label(index), index.config.get("name"),
                                state.to_json() if state is not None else None),
                    tuple(requirements) + tuple(r for r, _ in hub))


def _origin(locked: LockedAdapter) -> str:
    return locked.hub or f"{locked.version} from the index"


def parse_lock(data: bytes, where: str) -> Lockfile:
    """A lockfile from its JSON bytes (schema-checked; a name locked twice is refused)."""
    if len(data) > MAX_LOCK_BYTES:
        raise IntegrityError(f"{where}: larger than {MAX_LOCK_BYTES} bytes; not a lockfile")
    doc = loads_strict(data, where)
    problems = validate_document(doc, LOCKFILE_SCHEMA)
    if problems:
        raise SchemaError(where, problems)
    adapters = []
    seen: set[str] = set()
    for a in doc["adapters"]:
        name = normalize_name(a["name"])
        if name in seen:
            raise IntegrityError(f"{where}: {name} is locked twice", hint="regenerate the lock with `adapterhub lock`")
        seen.add(name)
        files = tuple(LockedFile(f["path"], f["size"], f["sha256"]) for f in a["files"]) if "files" in a else None
        adapters.append(LockedAdapter(name, a["version"], a.get("manifest_sha256"), files,
                                      tuple(a.get("required_by", ())), a.get("hub")))
    idx = doc.get("index")
    index = LockedIndex(idx["location"], idx.get("name"), idx.get("metadata")) if idx else None
    return Lockfile(tuple(adapters), index, tuple(doc.get("requirements", ())), doc["lock_version"])


def load_lock(path: str | Path) -> Lockfile:
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = fh.read(MAX_LOCK_BYTES + 1)
    except FileNotFoundError:
        raise NotFoundError(f"{p}: lockfile not found", hint="write one with `adapterhub lock NAME... > adapterhub.lock`") \
            from None
    return parse_lock(data, str(p))


@dataclass
class LockCheck:
    """The index entries a lock selects, in lock order (dependencies first)."""

    entries: list[IndexEntry] = field(default_factory=list)
    hub: list[LockedAdapter] = field(default_factory=list)
    """Selected adapters locked from Hub repos (checked by the store against their derived manifests)."""


def _selected(lock: Lockfile, only: list[str]) -> list[LockedAdapter]:
    if not only:
        return list(lock.adapters)
    wanted: dict[str, LockedAdapter] = {}

    def add(name: str, by: str) -> None:
        locked = lock.find(name)
        if locked is None:
            raise NotFoundError(f"{name} is not in the lock{f' (a dependency of {by})' if by else ''}; "
                                "a lock installs nothing else", hint="add it: `adapterhub lock NAME... > adapterhub.lock`")
        if locked.name not in wanted:
            wanted[locked.name] = locked
            for other in lock.adapters:  # everything locked as pulled in by this one
                if other.required_by and other.required_by[-1] == locked.name:
                    add(other.name, locked.name)

    for name in only:
        add(normalize_name(name), "")
    return [a for a in lock.adapters if a.name in wanted]


def check_dependencies_locked(where: str, manifest: Manifest, lock: Lockfile) -> None:
    """Every dependency of ``manifest`` (the locked ``where``) is itself in the lock: a Hub one by its reference,
    a registry one by name at a version its spec allows. A lock installs nothing else."""
    locked_names = {a.name: a for a in lock.adapters}
    locked_refs = {a.hub for a in lock.adapters if a.hub}
    for dep in manifest.dependencies or ():
        if dep.hub is not None:  # a Hub adapter: locked by its reference (the store checks its manifest)
            if dep.hub not in locked_refs:
                raise NotFoundError(f"{where} depends on {dep.hub}, which is not in the lock; a lock installs "
                                    "nothing else", hint="re-lock: `adapterhub lock` includes Hub dependencies")
            continue
        have = locked_names.get(normalize_name(dep.name))
        if have is None:
            raise NotFoundError(f"{where} depends on {dep.name}, which is not in the lock; a lock installs "
                                "nothing else", hint="re-lock: `adapterhub lock` includes dependencies")
        if not dependency_requirement(dep.name, dep.spec).allows(have.version):
            raise IntegrityError(f"{where} needs {dep.name}{dep.spec or ''}, but the lock has {have.version}")


def check_lock(lock: Lockfile, index: Index, *, require_hashes: bool = False, only: list[str] | None = None) -> LockCheck:
    """Match every (selected) locked adapter to its index entry, refusing any difference.

    Refuses: a locked release the index no longer has; an entry whose manifest sha256 or files differ from
    the lock; an index verified at older signed metadata than the lock recorded (same index); and, with
    ``require_hashes``, an adapter without locked hashes or a dependency that is not itself locked.
    """
    check = LockCheck()
    state = index.trusted_state()
    locked_meta = lock.index.metadata if lock.index is not None else None
    same_index = lock.index is not None and lock.index.location == index_label(index)
    if (state is not None and locked_meta and same_index
            and (state.snapshot < locked_meta["snapshot"] or state.targets < locked_meta["targets"])):
        raise RollbackError(f"{index.location}: signed index at snapshot v{state.snapshot}/targets v{state.targets} "
                            f"is older than the lock's v{locked_meta['snapshot']}/v{locked_meta['targets']}",
                            hint="the index was rolled back; use a mirror that is up to date")
    selected = _selected(lock, list(only or ()))
    for locked in selected:
        where = f"{locked.name} {locked.version}"
        if require_hashes and not locked.hashed:
            raise IntegrityError(f"{where}: --require-hashes, but the lock pins no manifest sha256 and file hashes",
                                 hint="regenerate the lock with `adapterhub lock`")
        if locked.hub is not None:
            check.hub.append(locked)
            continue
        entry = index.entry(locked.name, locked.version)
        if locked.manifest_sha256 and entry.manifest_sha256 != locked.manifest_sha256:
            raise IntegrityError(f"{where}: the index now lists manifest sha256 {entry.manifest_sha256}, the lock pins "
                                 f"{locked.manifest_sha256}", hint="the release changed after it was locked: refuse it, "
                                 "or re-lock after checking why")
        if locked.files is not None and sorted(_files_of(entry), key=lambda f: f.path) != sorted(locked.files,
                                                                                               key=lambda f: f.path):
            raise IntegrityError(f"{where}: the index's files (paths, sizes, sha256) differ from the locked ones",
                                 hint="the release changed after it was locked")
        check_dependencies_locked(where, entry.manifest, lock)
        if entry.is_yanked:
            warnings.warn(f"{where} is yanked ({entry.yanked}); installing it because the lock pins it",
                          YankedVersionWarning, stacklevel=2)
        check.entries.append(entry)
    return check
