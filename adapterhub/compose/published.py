"""Compositions published as manifests (method ``composition``): save one, load one, pull one.

A composition manifest has no weights: its ``adapter.config.composition`` is a block tree (the JSON
form of :mod:`adapterhub.blocks`) over adapters named by their published names, and every
one of them is a manifest dependency. Publishing it therefore publishes *how* to combine adapters
that are released on their own; ``pull`` brings the whole dependency closure, and ``AdapterModel.load``
activates it (:mod:`adapterhub.runtime.composition` maps published names onto the attached adapters).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..blocks import Block, as_block, rename, summary, to_json, used_names, validate
from ..errors import CompositionError
from ..fileio import staged_directory
from ..manifest import MANIFEST_FILENAME, parse_manifest, schema_version_for, write_manifest
from ..names import is_hub_reference, pinned_hub_reference

if TYPE_CHECKING:
    from ..runtime.handle import AdapterModel


def save_composition(ah: AdapterModel, block: Block, directory: str | Path, *, name: str, version: str = "0.1.0",
                     members: Mapping[str, str] | None = None, description: str | None = None,
                     license: str = "NOASSERTION", authors: tuple[str, ...] = ("unknown",),
                     task: dict[str, Any] | None = None) -> Path:
    """Write ``directory/adapterhub.json`` publishing ``block`` over adapters attached to ``ah``.

    Names in ``block`` are local names; the manifest uses their published names (as ``ah.save``
    writes fusion members) and lists each as a dependency, pinned ``==version`` when the adapter was
    loaded from a manifest. ``members`` overrides a dependency's specifier by local name (e.g.
    ``{"lang": ">=1,<2"}``), or names it in a Hub repo (``{"lang": "hf:org/lang@<40-hex commit>"}``).
    An adapter loaded from a Hub repo (``adapterhub.load(model, "hf:...")``, a pulled ``hf:`` view) is
    listed by its reference pinned to the commit and its manifest sha256 (format 1.1), since no index has it.
    No files are written besides the manifest; returns its path.
    """
    from ..runtime.package import ADAPTER_FILES  # deferred: adapterhub.compose stays torch-free

    block = as_block(block)
    validate(block)
    deps: list[dict[str, str]] = []
    published: dict[str, str] = {}
    for local in used_names(block):
        dep = dict(ah.dependency(local))  # raises AdapterStateError for an adapter that is not attached
        if members and local in members:
            dep = _member_dependency(dep, members[local])
        published[local] = dep["name"]
        deps.append(dep)
    unknown = sorted(set(members or ()) - set(published))
    if unknown:
        raise CompositionError(f"members {unknown} are not used by the composition",
                               hint=f"the composition uses: {sorted(published)}")
    seen: dict[str, str] = {}
    for local, pub in published.items():
        if pub in seen:
            raise CompositionError(f"adapters {seen[pub]!r} and {local!r} are both published as {pub!r}")
        seen[pub] = local
    public = rename(block, published.__getitem__, published.__getitem__)
    doc = {
        "schema_version": schema_version_for(deps), "name": name, "version": version,
        "description": description or f"composition {name}: {summary(public)}",
        "license": license, "authors": list(authors), "task": task or {"type": "other", "name": name},
        "base_model": ah.base_facts().to_json(),
        "adapter": {"method": "composition", "config": {"composition": to_json(public)}},
        "files": [], "dependencies": deps,
    }
    out = Path(directory)
    manifest = parse_manifest(doc, str(out / MANIFEST_FILENAME))
    with staged_directory(out, owned=(MANIFEST_FILENAME, *ADAPTER_FILES)) as stage:  # no stale weights stay
        write_manifest(manifest, stage / MANIFEST_FILENAME)
    return out / MANIFEST_FILENAME


def _member_dependency(dep: dict[str, str], given: str) -> dict[str, str]:
    """The dependency ``dep`` with the caller's choice: a version spec, or a Hub reference pinned to a commit
    (:class:`InvalidNameError` for a branch or tag). The manifest sha256 stays only if it is the same repo."""
    kept = {k: v for k, v in dep.items() if k not in ("spec", "hub", "manifest_sha256")}
    if not is_hub_reference(given):
        return {**kept, "spec": given}
    ref = str(pinned_hub_reference(given))
    same = dep.get("hub") == ref and "manifest_sha256" in dep
    return {**kept, "hub": ref, **({"manifest_sha256": dep["manifest_sha256"]} if same else {})}


def load_composition(ah: AdapterModel, requirement: str, *, index: Any = None, activate: bool = True,
                     **pull_options: Any) -> str:
    """Resolve and pull a published composition and its dependency closure, attach what is missing, activate it.

    Adapters already attached under their published (or local) name are reused; the others are
    loaded under their published names, dependencies before the fusion layers that fuse them.
    ``pull_options`` go to :func:`adapterhub.store.pull` (``cache_dir``, ``offline``, ``sources``...).
    Returns the composition's name (``ah.composition`` is the active block).
    """
    from ..runtime.attached import find_attached  # deferred: adapterhub.compose stays torch-free
    from ..runtime.package import BaseFacts  # deferred: adapterhub.compose stays torch-free
    from ..store import pull  # deferred: importing the store doubles adapterhub.compose's import time

    pulled = pull(requirement, index=index, **pull_options)
    if pulled.manifest.adapter.method != "composition":
        raise CompositionError(f"{requirement}: {pulled.name} is a {pulled.manifest.adapter.method} adapter, "
                               "not a composition", hint="use ah.load / load_fusion for adapters")
    manifest = pulled.manifest
    manifest.adapter.config.block()  # malformed: fail before attaching anything
    ah.check_base(BaseFacts.from_manifest(manifest.base_model), str(pulled.path))
    attached: list[str] = []
    try:
        for dep in pulled.dependencies:  # dependencies come before their dependents
            if dep.manifest.adapter.method == "composition" or \
                    find_attached(ah.attached, dep.name, published_first=True) is not None:
                continue
            attached.append(ah.load(dep.path, name=dep.name, activate=False))
        return ah.load(pulled.path, activate=activate)  # checks the pins, maps the names, activates
    except BaseException:
        for name in reversed(attached):  # leave the model as it was
            ah.remove(name)
        raise


__all__ = ["load_composition", "save_composition"]
