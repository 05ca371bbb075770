"""Pin a composition's Hub dependencies before it is published: what ``adapterhub init`` does for them.

A hand-written composition may name a member as ``"hub": "hf:ORG/REPO"`` or ``@v1.0`` (a branch or tag).
Published like that it would mean other bytes tomorrow, so validation refuses it; ``init`` instead pulls
each such member (verified by the Hub's hashes), writes the commit it resolved to and the sha256 of its
manifest, and declares the manifest format that form needs. A member that is already pinned is kept as
written (its ``manifest_sha256`` is added when missing); one whose repo yields another adapter than the
``name`` the composition uses is an :class:`IntegrityError`.
"""

from __future__ import annotations

import copy
from typing import Any

from ..errors import IntegrityError
from ..manifest import CURRENT_SCHEMA_VERSION, dependency_digest, schema_version_for
from ..names import COMMIT_PATTERN, parse_hub_reference


def pin_hub_dependencies(doc: Any, where: str) -> tuple[Any, list[str]]:
    """``doc`` (a parsed manifest document) with every Hub dependency pinned; returns it and what was done."""
    deps = doc.get("dependencies") if isinstance(doc, dict) else None
    todo = [d for d in deps or () if isinstance(d, dict) and isinstance(d.get("hub"), str)
            and not (d.get("manifest_sha256") and COMMIT_PATTERN.fullmatch(parse_hub_reference(d["hub"]).revision
                                                                          or ""))]
    if not todo:
        return doc, []
    from ..store import pull  # deferred: only a composition with members to pin needs the store

    doc = copy.deepcopy(doc)
    notes = []
    for dep in (d for d in doc["dependencies"] if isinstance(d, dict) and isinstance(d.get("hub"), str)):
        given = dep["hub"]
        pulled = pull(given, dependencies=False)
        if dep.get("name") != pulled.name:
            raise IntegrityError(f"{where}: dependency {dep.get('name')!r} names {given}, which yields the adapter "
                                 f"{pulled.name!r}", hint=f"use the name {pulled.name!r} for it (in the block too)")
        digest = dependency_digest(pulled.manifest)
        if dep.get("manifest_sha256") not in (None, digest):
            raise IntegrityError(f"{where}: {given} yields a manifest with sha256 {digest}, the dependency pins "
                                 f"{dep['manifest_sha256']}", hint="drop manifest_sha256 to pin what the repo holds now")
        if given != pulled.reference or "manifest_sha256" not in dep:
            notes.append(f"pinned {dep['name']} to {pulled.reference} (manifest sha256 {digest[:16]}…)")
        dep["hub"], dep["manifest_sha256"] = pulled.reference, digest
    if str(doc.get("schema_version")) == CURRENT_SCHEMA_VERSION:  # 1.0 cannot express a Hub dependency
        doc["schema_version"] = schema_version_for(doc["dependencies"])
    return doc, notes
