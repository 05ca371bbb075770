"""What every publish path shares: a checked release directory, the index check, the final manifest."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..errors import ConflictError, NotFoundError, PublishError
from ..manifest import Manifest, Source, load_manifest, manifest_digest
from ..manifest.validate import validate_path


def load_release(directory: str | Path) -> Manifest:
    """The manifest of ``directory`` after checking every file's size and sha256 and that nothing is unlisted."""
    from ..store.plan import check_manifest_for_store  # deferred: CLI import cost (store, registry)

    d = Path(directory)
    report = validate_path(d)
    if not report.ok:
        shown = "; ".join(report.problems[:8]) + (f" (+{len(report.problems) - 8} more)" if len(report.problems) > 8 else "")
        raise PublishError(f"{d} does not validate, nothing was published: {shown}",
                           hint="run `adapterhub package` (and `adapterhub init` first for a new adapter)")
    if not d.is_dir():
        raise PublishError(f"{d}: publish takes an adapter directory, not a manifest file")
    manifest = load_manifest(d)
    check_manifest_for_store(manifest)
    return manifest


def require_index(root: str | Path) -> Path:
    from ..registry.layout import CONFIG_FILE  # deferred: CLI import cost (store, registry)

    p = Path(root)
    if not (p / CONFIG_FILE).is_file():
        raise NotFoundError(f"{p}: not a registry index (no {CONFIG_FILE})",
                            hint=f"create it with `adapterhub index init {p} --name NAME`")
    return p


def indexed_release(root: Path, manifest: Manifest) -> Any | None:
    """The index entry already holding ``manifest``'s name@version, or None; refuses a different release."""
    from ..registry import open_index  # deferred: CLI import cost (store, registry)

    for entry in open_index(root).entries(manifest.name):
        if entry.parsed_version == _version(manifest.version):
            if entry.manifest_sha256 == manifest_digest(manifest):
                return entry
            raise ConflictError(f"{manifest.name} {manifest.version} is already in the index at {root}; "
                                "releases are immutable", hint="publish a new version (bump `version` in adapterhub.json)")
    return None


def check_version_free(root: Path, manifest: Manifest) -> None:
    """Refuse when name@version is in the index at all (before anything is uploaded)."""
    from ..registry import open_index  # deferred: CLI import cost (store, registry)

    for entry in open_index(root).entries(manifest.name):
        if entry.parsed_version == _version(manifest.version):
            raise ConflictError(f"{manifest.name} {manifest.version} is already in the index at {root}; "
                                "releases are immutable", hint="publish a new version (bump `version` in adapterhub.json)")


def _version(text: str):
    from packaging.version import Version

    return Version(text)


def with_sources(manifest: Manifest, first: Source, keep: tuple[Source, ...]) -> Manifest:
    return dataclasses.replace(manifest, sources=(first, *keep))
