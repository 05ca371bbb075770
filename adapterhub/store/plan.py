"""Before any byte moves: check what a manifest asks the store to do, and list where to get it.

A :class:`~adapterhub.manifest.Manifest` may reach the store without going through the schema (the
Python API accepts one built in code), so the store re-checks everything that becomes a path or a
network request: file paths (the same rules as the manifest loader), hashes, sizes, pinned commits,
and that no pickle-format file is listed. All problems are reported together, before touching disk.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import SchemaError, SchemaProblem
from ..manifest import ArchiveSource, BundledSource, HfSource, HttpsSource, Manifest
from ..names import normalize_name
from ..paths import case_collisions, path_problem
from ..transport import TokenScope
from .http import HttpFetcher
from .layout import MAX_FILE_SIZE, is_sha256
from .sources import ContentDirSource, HttpMirrorSource, HttpSource, HubSource, Source, bundled_source

COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
"""Pickle-based formats: never accepted as adapter files (only archives may carry them, converted)."""


def manifest_problems_for_store(manifest: Manifest) -> list[SchemaProblem]:
    problems: list[SchemaProblem] = []
    if normalize_name(manifest.name) != manifest.name or path_problem(manifest.name) or "/" in manifest.name:
        problems.append(SchemaProblem("/name", f"{manifest.name!r} cannot name a cache directory"))
    if path_problem(manifest.version) or "/" in manifest.version:
        problems.append(SchemaProblem("/version", f"{manifest.version!r} cannot name a cache directory"))
    seen: set[str] = set()
    for i, entry in enumerate(manifest.files):
        where = f"/files/{i}"
        problem = path_problem(entry.path)
        if problem:
            problems.append(SchemaProblem(f"{where}/path", f"unsafe file path {entry.path!r}: {problem}"))
        if entry.path in seen:
            problems.append(SchemaProblem(f"{where}/path", f"duplicate file path {entry.path!r}"))
        seen.add(entry.path)
        if isinstance(entry.path, str) and entry.path.lower().endswith(PICKLE_SUFFIXES):
            problems.append(SchemaProblem(f"{where}/path", f"{entry.path!r} is a pickle-based format; adapters "
                                          "ship safetensors (legacy archives are converted at ingest)"))
        if not isinstance(entry.sha256, str) or not is_sha256(entry.sha256):
            problems.append(SchemaProblem(f"{where}/sha256", "must be 64 lowercase hex digits"))
        if type(entry.size) is not int or not 0 <= entry.size <= MAX_FILE_SIZE:
            problems.append(SchemaProblem(f"{where}/size", f"must be an integer in 0..{MAX_FILE_SIZE}"))
    for first, second in case_collisions(sorted(seen)):
        problems.append(SchemaProblem("/files", f"paths {first!r} and {second!r} differ only in case"))
    for i, src in enumerate(manifest.sources or ()):
        where = f"/sources/{i}"
        if isinstance(src, HfSource):
            if not isinstance(src.revision, str) or not COMMIT_RE.match(src.revision):
                problems.append(SchemaProblem(f"{where}/revision", f"{src.revision!r} is not a 40-hex commit id; "
                                              "branch and tag names can move, so only commits are accepted"))
            if src.subfolder is not None and path_problem(src.subfolder):
                problems.append(SchemaProblem(f"{where}/subfolder", f"unsafe subfolder {src.subfolder!r}"))
        elif isinstance(src, ArchiveSource):
            if not is_sha256(src.sha256):
                problems.append(SchemaProblem(f"{where}/sha256", "an archive needs a pinned sha256"))
            if src.format not in ("zip", "tar", "tar.gz") or src.layout not in ("adapters-library", "peft"):
                problems.append(SchemaProblem(where, f"unsupported archive {src.format}/{src.layout}"))
    return problems


def check_manifest_for_store(manifest: Manifest) -> None:
    """Raise one :class:`SchemaError` listing every problem (see module docstring)."""
    problems = manifest_problems_for_store(manifest)
    if problems:
        raise SchemaError(f"manifest {manifest.name}@{manifest.version}", problems)


def sources_for(manifest: Manifest, *, index_config: dict[str, Any] | None = None, endpoint: str | None = None,
                token: str | bool | None = None, fetcher: HttpFetcher | None = None,
                index_location: Path | str | None = None) -> list[Source]:
    """The manifest's own sources in order, then the index's mirrors (duplicates dropped).

    ``bundled`` means the mirror shipped with the index that listed the manifest, then the package's own:
    ``<index dir>/mirror`` for a local index (a registry made by ``adapterhub publish --to``), or
    ``<index url>/mirror/<sha256>`` for the same directory served over HTTP.

    Endpoints named here by the manifest or the index config only say where to look: the token goes
    to none of them unless the user configured it (``endpoint`` is the user's own ``--endpoint``).
    """
    fetcher = fetcher or HttpFetcher(scope=TokenScope.configured([endpoint]))

    def bundled() -> list[Source]:
        package = bundled_source()
        if isinstance(index_location, Path):
            local = index_location / "mirror"
            if local.is_dir() and local.resolve() != package.root.resolve():
                return [ContentDirSource(local, "index mirror"), package]
        elif isinstance(index_location, str):
            return [HttpMirrorSource(index_location.rstrip("/") + "/mirror/{sha256}", fetcher=fetcher), package]
        return [package]

    artifacts = (index_config or {}).get("artifacts") or {}
    hub_default = endpoint or artifacts.get("hf_endpoint")
    out: list[Source] = []
    for src in manifest.sources or ():
        if isinstance(src, HfSource):
            out.append(HubSource(src.repo_id, src.revision, src.subfolder,
                                 endpoint or src.endpoint or hub_default, token, fetcher=fetcher))
        elif isinstance(src, HttpsSource):
            out.append(HttpSource(src.base_url, fetcher=fetcher))
        elif isinstance(src, BundledSource):
            out.extend(bundled())
        # ArchiveSource is not a per-file source; see adapterhub.store.archive.
    for mirror in artifacts.get("mirrors") or ():
        out.extend(bundled() if mirror == "bundled" else [HttpMirrorSource(mirror, fetcher=fetcher)])
    unique: list[Source] = []
    for s in out:
        if not any(type(s) is type(u) and s.description == u.description for u in unique):
            unique.append(s)
    return unique


def describe_sources(sources: Sequence[Source]) -> str:
    return ", ".join(s.description for s in sources) or "(none)"


__all__ = ["check_manifest_for_store", "sources_for", "manifest_problems_for_store", "ContentDirSource",
           "describe_sources"]
