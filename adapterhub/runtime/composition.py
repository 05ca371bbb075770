"""A published composition (a manifest of method ``composition``) read onto the adapters attached now.

The manifest's block names adapters by their published names, each one a dependency (maybe pinned: a
version spec, or for a Hub dependency the commit, held against the reference an adapter derived from a Hub
repo was loaded from).
Activating it attaches nothing: every adapter it uses must already be attached, at a version its pin
allows; the block is then renamed to the local names and activated by the handle. Pulling what is
missing is :func:`adapterhub.compose.load_composition`'s job, a layer above.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..blocks import Block, rename, used_names
from ..errors import AdapterStateError
from ..manifest.types import Manifest
from .attached import AttachedAdapter, resolve_members


def composition_block(manifest: Manifest, attached: Mapping[str, AttachedAdapter], source: str) -> Block:
    """The composition's block over local names; :class:`AdapterStateError` if a member is missing or off its pin."""
    block = manifest.adapter.config.block()
    specs = {d.name: d.spec for d in manifest.dependencies or ()}
    names, missing = resolve_members(used_names(block), specs, attached, source=source, role="composition member")
    if missing:
        raise AdapterStateError(
            f"{source}: composition {manifest.id} uses adapters that are not attached: {', '.join(missing)}",
            hint="load them first (ah.load(dir)), or pull everything with "
                 f"adapterhub.compose.load_composition(ah, '{manifest.name}=={manifest.version}', index=...)")
    for dep in manifest.dependencies or ():
        pub = attached[names[dep.name]].published if dep.hub and dep.name in names else None
        if pub is not None and pub.hub is not None and pub.hub != dep.hub:
            raise AdapterStateError(f"{source}: composition member {dep.name} must be {dep.hub}, attached "
                                    f"{names[dep.name]!r} is {pub.hub}", hint="load the pinned commit of the member")
    out = rename(block, names.__getitem__, names.__getitem__)
    assert out is not None
    return out
