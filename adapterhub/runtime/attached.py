"""What is attached to a model: the public read-only view, the runtime's live entries, and finding one by name.

:class:`AttachedAdapter` is what users read (``ah.adapter(name)``, ``ah.attached``): a frozen snapshot.
:class:`Entry` is the live record the handle keeps per adapter (method object, tensors, head); runtime
modules that compile or export adapters reach it through :class:`Attachments`, the small interface the
handle offers below itself, so the compiler, head routing and merge checks never import the handle.

Manifests name other adapters by their *published* names (a fusion layer's members, a composition's
blocks); :func:`find_attached` maps such a reference to the local name it is attached under, and
:func:`check_pin` holds it to the version the manifest pins. One rule for both, in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import torch
from packaging.specifiers import SpecifierSet
from torch import nn

from ..errors import AdapterStateError
from ..names import manifest_name
from .arch import Binding
from .methods.base import Method
from .methods.config import MethodConfig
from .tensors import TensorTree


class Published(NamedTuple):
    """The manifest an attached adapter was loaded from: its published name and version (and, for one derived
    from a Hub repo, its pinned reference and manifest sha256: what a composition over it must name)."""

    name: str
    version: str
    hub: str | None = None
    manifest_sha256: str | None = None


@dataclass(frozen=True)
class AttachedAdapter:
    """A read-only snapshot of one attached adapter (``ah.adapter(name)``); later changes do not show in it."""

    name: str
    """The local name it is attached under (``ah.activate(name)``)."""
    method: str
    """Its method: ``lora``, ``bottleneck``, ``fusion``..."""
    config: MethodConfig
    """Its typed config as stated (a frozen dataclass of ``adapterhub.manifest.configs``)."""
    published: Published | None
    """Name and version of the manifest it was loaded from; None for ``add`` and foreign formats."""
    has_head: bool
    """Whether it brought a prediction head of its own."""
    merged: bool
    """Whether it is folded into the base weights now (``ah.merge``)."""
    depends_on: tuple[str, ...] = ()
    """Local names of the attached adapters it works over (a fusion layer's members), else ()."""


@dataclass
class Entry:
    """The handle's live record of one attached adapter. Runtime-internal: users read :class:`AttachedAdapter`."""

    name: str
    method: Method
    config: MethodConfig
    tree: TensorTree
    head: dict[str, torch.Tensor] = field(default_factory=dict)
    merged: bool = False
    published: Published | None = None

    @property
    def depends_on(self) -> tuple[str, ...]:
        """Local names of the adapters this one works over (its method's ``depends_on`` config key)."""
        key = self.method.depends_on
        return tuple(getattr(self.config, key)) if key else ()

    def view(self) -> AttachedAdapter:
        return AttachedAdapter(self.name, self.method.name, self.config, self.published, bool(self.head),
                               self.merged, self.depends_on)


class Attachments(Protocol):
    """What compiling, head routing and merge checks read from the handle (:class:`AdapterModel` is one)."""

    model: nn.Module
    binding: Binding
    last_mix_weights: list[torch.Tensor]

    @property
    def merged(self) -> tuple[str, ...]: ...

    def entry(self, name: str) -> Entry: ...


def find_attached(attached: Mapping[str, AttachedAdapter], ref: str, *, published_first: bool) -> str | None:
    """The local name of the attached adapter ``ref`` refers to, or None.

    Matches, in order: the adapter loaded from a manifest published as ``ref``, the adapter attached
    under the local name ``ref``, one whose local name saves as ``ref`` (:func:`manifest_name`). With
    ``published_first=False`` (names a user typed) the local name is tried first.
    """
    by_local = ref if ref in attached else None
    by_published = next((n for n, a in attached.items() if a.published and a.published.name == ref), None)
    first, second = (by_published, by_local) if published_first else (by_local, by_published)
    found = first or second
    if found is None:
        found = next((n for n in attached if manifest_name(n) == ref), None)
    return found


def check_pin(attached: AttachedAdapter, ref: str, spec: str | None, *, source: str, role: str) -> None:
    """Raise :class:`AdapterStateError` when ``attached`` was loaded as ``ref`` at a version ``spec`` excludes.

    An adapter not loaded from ``ref``'s manifest carries no version to check (attached by local name).
    """
    pub = attached.published
    if spec and pub and pub.name == ref and pub.version not in SpecifierSet(spec):
        raise AdapterStateError(f"{source}: {role} {ref} must be {spec}, attached {attached.name!r} is {pub.version}",
                                hint="load the pinned member version")


def resolve_members(refs: Sequence[str], specs: Mapping[str, str | None], attached: Mapping[str, AttachedAdapter],
                    *, source: str, role: str, published_first: bool = True) -> tuple[dict[str, str], list[str]]:
    """Map each reference to its attached local name, pins checked; returns ``(found, missing)``.

    ``missing`` lists the references not attached, each with its specifier (``name==1.0.0``).
    """
    found: dict[str, str] = {}
    missing: list[str] = []
    for ref in refs:
        local = find_attached(attached, ref, published_first=published_first)
        if local is None:
            missing.append(ref + (specs.get(ref) or ""))
            continue
        check_pin(attached[local], ref, specs.get(ref), source=source, role=role)
        found[ref] = local
    return found, missing
