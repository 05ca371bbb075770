"""Dependencies on Hub repos (a manifest's ``dependencies[].hub``, format 1.1): the checks around pulling one.

A composition published to an index (or carried by a Hub repo as its ``adapterhub.json``) may name adapters
that live only in Hub repos, each pinned to a commit and optionally to the sha256 of the manifest that repo
yields (:func:`~adapterhub.manifest.dependency_digest`). :func:`adapterhub.store.pull` pulls them by
reference like ``pull hf:...`` does; this module holds what it checks on the way:

* :class:`HubChain`: the chain of references being pulled, so a repo whose manifest (through its own Hub
  dependencies) names itself again is a :class:`DependencyCycleError`, and a chain deeper than
  :data:`MAX_HUB_DEPTH` a :class:`DependencyLimitError`;
* :func:`registry_dependencies`: the dependencies it names by registry name and version spec, which the store
  resolves against the index the pull was given (:mod:`.registry_deps`), so a composition held by a Hub repo
  may mix both kinds; the chain then holds release labels (``name@version``) beside references, and a cycle
  through either kind is caught (:attr:`HubChain.keys`);
* :func:`check_dependency_manifest`: the manifest the repo yields has the name the composition uses and,
  when pinned, exactly the sha256 the publisher composed. It runs after the manifest is derived and before
  anything is published, so a mismatch leaves no view and no recorded manifest behind.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import DependencyCycleError, DependencyLimitError, IntegrityError
from ..manifest import Dependency, Manifest, dependency_digest
from ..names import HubReference
from ..records import frozen_record

MAX_HUB_DEPTH = 64
"""Longest chain of Hub dependencies (a composition over compositions over ... adapters) followed."""


def hub_dependencies(manifest: Manifest) -> Iterator[tuple[Dependency, HubReference]]:
    """The Hub dependencies ``manifest`` declares, each with its pinned reference (validated by the schema)."""
    for dep in manifest.dependencies or ():
        ref = dep.reference
        if ref is not None:
            yield dep, ref


def registry_dependencies(manifest: Manifest) -> list[Dependency]:
    """The dependencies ``manifest`` names by registry name (and version spec), resolved against an index."""
    return [dep for dep in manifest.dependencies or () if dep.hub is None]


def chain_key(label: str) -> str:
    """What a cycle is matched on: a Hub reference as it is, a release (``name@version`` or ``name``) by name."""
    return label if label.startswith("hf:") else label.split("@", 1)[0]


@frozen_record
class HubChain:
    """Who pulled what: the labels from the first requirer (a release ``name version``) to the reference now."""

    labels: tuple[str, ...] = ()

    def enter(self, ref: HubReference) -> HubChain:
        """The chain one step further, at ``ref``; refuses a cycle and a chain that is too deep."""
        label = str(ref)
        if label in self.labels:
            raise DependencyCycleError([*self.labels[self.labels.index(label):], label])
        if len(self.labels) >= MAX_HUB_DEPTH:
            raise DependencyLimitError(f"{label} is required at dependency depth {len(self.labels) + 1}, deeper than "
                                       f"the {MAX_HUB_DEPTH} levels followed (chain starts "
                                       f"{' -> '.join(self.labels[:4])} ...)",
                                       hint="the composition is broken or hostile; report it to its publisher")
        return HubChain((*self.labels, label))

    @property
    def keys(self) -> tuple[str, ...]:
        """The chain as the registry resolver matches cycles (:func:`chain_key` of each label)."""
        return tuple(chain_key(label) for label in self.labels)

    @property
    def requirer(self) -> str | None:
        return self.labels[-1] if self.labels else None


def check_dependency_manifest(dep: Dependency, manifest: Manifest, requirer: str | None) -> None:
    """:class:`IntegrityError` unless the repo's manifest is the one ``dep`` names (name, and sha256 if pinned)."""
    who = f"{requirer} depends on {dep.hub}" if requirer else str(dep.hub)
    if manifest.name != dep.name:
        raise IntegrityError(f"{who} as {dep.name!r}, but that repo yields the adapter {manifest.name!r}",
                             hint="the composition's dependency names the wrong adapter; its publisher must fix it")
    if dep.manifest_sha256 is not None:
        got = dependency_digest(manifest)
        if got != dep.manifest_sha256:
            raise IntegrityError(f"{who}: its manifest has sha256 {got}, the composition pins {dep.manifest_sha256}",
                                 hint="this is not what the publisher composed (a different adapterhub derives it "
                                      "differently, or the composition was altered); nothing was installed")
