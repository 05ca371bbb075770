"""Registry dependencies of what a pull brings from a Hub repo: resolved against the index the pull was given.

A composition held by a Hub repo (``pull hf:ORG/REPO``) may name members by registry name and version spec,
like one published to an index. They resolve against the pull's ``index=`` (``--index``; default: the bundled
index), opened only when such a dependency turns up, so a pull of plain Hub adapters never reads an index.
The rules are the registry's (:func:`~adapterhub.registry.resolve_closure` with the requirer chain): the
highest matching non-yanked version, an exact pin never selecting a yanked one, a cycle through Hub references
and release names alike a :class:`DependencyCycleError`, depth counted over the whole chain. One pull selects
one version of a name (:attr:`IndexForPull.chosen` is shared by every resolution of the pull), so a Hub
composition and a registry one asking for incompatible versions are a :class:`ConflictError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import NotFoundError, YankedError
from ..manifest import Dependency
from ..names import dependency_requirement
from .hub_deps import HubChain

if TYPE_CHECKING:
    from ..transport import FetchOptions


@dataclass
class IndexForPull:
    """The index of one pull (``given``: an Index, a directory, a URL, or None for the default), opened lazily,
    and the releases the pull selected by name."""

    given: Any
    offline: bool
    options: FetchOptions | None = None
    chosen: dict[str, Any] = field(default_factory=dict)
    opened: Any = None

    def open(self) -> Any:
        """The :class:`~adapterhub.registry.Index` (opened on first use, offline from its cache when offline)."""
        if self.opened is None:
            from ..registry import Index, open_index  # deferred: CLI import cost (registry)

            self.opened = self.given if isinstance(self.given, Index) else \
                open_index(self.given, offline=self.offline, options=self.options)
        return self.opened

    def resolve(self, deps: Sequence[Dependency], chain: HubChain) -> list[Any]:
        """The registry releases the registry dependencies ``deps`` (of what ``chain`` ends at) need and this pull
        has not selected yet, dependencies first; each :class:`~adapterhub.registry.Resolved` names its requirers."""
        if not deps:
            return []
        from ..registry import resolve_closure  # deferred: CLI import cost (registry)

        index = self.open()
        try:
            return resolve_closure(index, [dependency_requirement(d.name, d.spec) for d in deps],
                                   required_by=chain.keys, chosen=self.chosen)
        except YankedError:
            raise
        except NotFoundError as exc:
            name = index.config.get("name") or index.location
            raise NotFoundError(exc.message, hint=f"{chain.requirer} was resolved against the index {name}; pull it "
                                                  "with --index (index=) naming an index that lists its registry "
                                                  "dependencies" + (f"; {exc.hint}" if exc.hint else "")) from None
