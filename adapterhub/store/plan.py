"""Before any byte moves: check what a manifest asks the store to do (where to get it: ``sources.sources_for``).

A :class:`~adapterhub.manifest.Manifest` may reach the store without going through the schema (the
Python API accepts one built in code), so the store re-checks everything that becomes a path or a
network request: file paths (the same rules as the manifest loader), hashes, sizes, pinned commits,
and that no pickle-format file is listed. All problems are reported together, before touching disk.
"""

from __future__ import annotations

import re

from ..errors import SchemaError, SchemaProblem
from ..manifest import ArchiveSource, HfSource, Manifest
from ..names import normalize_name
from ..paths import case_collisions, path_problem
from .layout import MAX_FILE_SIZE, is_sha256

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


__all__ = ["check_manifest_for_store", "manifest_problems_for_store"]
