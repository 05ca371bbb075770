"""Compositions published as manifests (method ``composition``): save one, load one, pull one.

A composition manifest has no weights: its ``adapter.config.composition`` is a block tree (the JSON
form of :mod:`adapterhub.blocks`) over adapters named by their published names, and every
one of them is a manifest dependency. Publishing it therefore publishes *how* to combine adapters
that are released on their own; ``pull`` brings the whole dependency closure, and activating it maps
published names onto the adapters attached to the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..blocks import Block, Fuse, Mix, Route, as_block, from_json, summary, to_json, validate
from ..errors import AdapterStateError, CompositionError
from ..fileio import staged_directory

if TYPE_CHECKING:
    from ..manifest import Manifest
    from ..runtime.handle import AdapterModel


def _rename(block: Any, names: Mapping[str, str]) -> Any:
    """The same block tree with every adapter (and fusion layer) name replaced through ``names``."""
    if block is None:
        return None
    if isinstance(block, str):
        return names[block]
    kids = [_rename(c, names) for c in block.children]
    if isinstance(block, Route):
        return Route(kids)
    if isinstance(block, Fuse):
        return Fuse(*kids, fusion=names[block.fusion])
    if isinstance(block, Mix):
        weights = block.weights if block.weights in (None, "emea") else [list(r) for r in block.weights]
        return Mix(*kids, weights=weights[0] if isinstance(weights, list) and len(weights) == 1 else weights,
                   steps=block.steps, lr=block.lr)
    out = object.__new__(type(block))
    for key, value in vars(block).items():
        object.__setattr__(out, key, value)
    object.__setattr__(out, "children", tuple(kids))
    return out


def used_names(block: Block) -> list[str]:
    """Adapter and fusion-layer names a block uses, in first-appearance order, without duplicates."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if node is None:
            return
        if isinstance(node, str):
            out.append(node)
            return
        for child in node.children:
            walk(child)
        if isinstance(node, Fuse):
            out.append(node.fusion)

    walk(block)
    return list(dict.fromkeys(out))


def _attached_as(ah: AdapterModel, published: str) -> str | None:
    """The local name of the attached adapter published as ``published`` (or attached under that name)."""
    from ..runtime.handle import _manifest_name

    for local, entry in ah._entries.items():
        if entry.origin and entry.origin[0] == published:
            return local
    if published in ah._entries:
        return published
    for local in ah._entries:
        if _manifest_name(local) == published:
            return local
    return None


def activate_manifest(ah: AdapterModel, manifest: Manifest, source: str, *, activate: bool = True,
                      force: bool = False) -> str:
    """Check a composition manifest against the attached adapters and activate its block; returns its name.

    Attaches nothing: every adapter it uses must be attached (under its published or local name) and,
    where the dependency pins a version, be that version. On any error the model is unchanged.
    """
    from packaging.specifiers import SpecifierSet

    ah.check_base(_base_facts(manifest), source, force=force)
    block = manifest.adapter.config.block()
    specs = {d.name: d.spec for d in manifest.dependencies or ()}
    names: dict[str, str] = {}
    missing: list[str] = []
    for published in used_names(block):
        local = _attached_as(ah, published)
        if local is None:
            missing.append(published + (specs.get(published) or ""))
            continue
        origin = ah._entries[local].origin
        spec = specs.get(published)
        if spec and origin and origin[0] == published and origin[1] not in SpecifierSet(spec):
            raise AdapterStateError(f"{source}: composition member {published} must be {spec}, attached "
                                    f"{local!r} is {origin[1]}", hint="load the pinned member version")
        names[published] = local
    if missing:
        raise AdapterStateError(
            f"{source}: composition {manifest.id} uses adapters that are not attached: {', '.join(missing)}",
            hint="load them first (ah.load(dir)), or pull everything with "
                 f"adapterhub.compose.load_composition(ah, '{manifest.name}=={manifest.version}', index=...)")
    if activate:
        ah.activate(_rename(block, names))
    return manifest.name


def _base_facts(manifest: Manifest) -> Any:
    from ..runtime.package import BaseFacts

    b = manifest.base_model
    return BaseFacts.from_manifest(b)


def save_composition(ah: AdapterModel, block: Block, directory: str | Path, *, name: str, version: str = "0.1.0",
                     members: Mapping[str, str] | None = None, description: str | None = None,
                     license: str = "NOASSERTION", authors: tuple[str, ...] = ("unknown",),
                     task: dict[str, Any] | None = None) -> Path:
    """Write ``directory/adapterhub.json`` publishing ``block`` over adapters attached to ``ah``.

    Names in ``block`` are local names; the manifest uses their published names (as ``ah.save``
    writes fusion members) and lists each as a dependency, pinned ``==version`` when the adapter was
    loaded from a manifest. ``members`` overrides a dependency's specifier by local name (e.g.
    ``{"lang": ">=1,<2"}``). No files are written besides the manifest; returns its path.
    """
    from ..manifest import MANIFEST_FILENAME, parse_manifest, write_manifest
    from ..runtime.package import ADAPTER_FILES

    block = as_block(block)
    validate(block)
    deps: list[dict[str, str]] = []
    published: dict[str, str] = {}
    for local in used_names(block):
        dep = dict(ah.dependency(local))  # raises AdapterStateError for an adapter that is not attached
        if members and local in members:
            dep["spec"] = members[local]
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
    doc = {
        "schema_version": "1.0", "name": name, "version": version,
        "description": description or f"composition {name}: {summary(_rename(block, published))}",
        "license": license, "authors": list(authors), "task": task or {"type": "other", "name": name},
        "base_model": ah.base_facts().to_json(),
        "adapter": {"method": "composition", "config": {"composition": to_json(_rename(block, published))}},
        "files": [], "dependencies": deps,
    }
    out = Path(directory)
    manifest = parse_manifest(doc, str(out / MANIFEST_FILENAME))
    with staged_directory(out, owned=(MANIFEST_FILENAME, *ADAPTER_FILES)) as stage:  # no stale weights stay
        write_manifest(manifest, stage / MANIFEST_FILENAME)
    return out / MANIFEST_FILENAME


def load_composition(ah: AdapterModel, requirement: str, *, index: Any = None, activate: bool = True,
                     **pull_options: Any) -> str:
    """Resolve and pull a published composition and its dependency closure, attach what is missing, activate it.

    Adapters already attached under their published (or local) name are reused; the others are
    loaded under their published names, dependencies before the fusion layers that fuse them.
    ``pull_options`` go to :func:`adapterhub.store.pull` (``cache_dir``, ``offline``, ``sources``...).
    Returns the composition's name (``ah.composition`` is the active block).
    """
    from ..store import pull

    pulled = pull(requirement, index=index, **pull_options)
    if pulled.manifest.adapter.method != "composition":
        raise CompositionError(f"{requirement}: {pulled.name} is a {pulled.manifest.adapter.method} adapter, "
                               "not a composition", hint="use ah.load / load_fusion for adapters")
    manifest = pulled.manifest
    manifest.adapter.config.block()  # malformed: fail before attaching anything
    ah.check_base(_base_facts(manifest), str(pulled.path))
    attached: list[str] = []
    try:
        for dep in pulled.dependencies:  # dependencies come before their dependents
            if dep.manifest.adapter.method == "composition" or _attached_as(ah, dep.name) is not None:
                continue
            attached.append(ah.load(dep.path, name=dep.name, activate=False))
        return activate_manifest(ah, manifest, str(pulled.path), activate=activate)
    except BaseException:
        for name in reversed(attached):  # leave the model as it was
            ah.remove(name)
        raise


__all__ = ["activate_manifest", "from_json", "load_composition", "save_composition", "used_names"]
