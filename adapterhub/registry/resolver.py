"""Requirement → version, and the dependency closure.

Rules (PEP 440 and PEP 592, Cargo's yanking): the highest non-yanked version matching the
specifier; final releases before pre-releases; a yanked version only for an exact pin, with a
warning. An optional base-model filter drops versions made for other bases. Dependencies resolve
greedily in depth-first order; a name required twice must get one version satisfying both, else a
:class:`ConflictError` names both requirers; cycles raise :class:`DependencyCycleError`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from ..errors import ConflictError, DependencyCycleError, NotFoundError, YankedError
from ..manifest import Manifest
from ..names import Requirement, parse_requirement, parse_specifier
from .entries import IndexEntry
from .index import Index
from .suggest import did_you_mean


class YankedVersionWarning(UserWarning):
    """An exact pin selected a yanked version."""


@dataclass(frozen=True)
class Resolved:
    """A resolved release and why it was chosen."""

    entry: IndexEntry
    requirement: Requirement
    required_by: tuple[str, ...] = field(default=())

    @property
    def manifest(self) -> Manifest:
        return self.entry.manifest

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def version(self) -> str:
        return self.entry.version


def _base_matches(entry: IndexEntry, base_model: str | None) -> bool:
    if base_model is None:
        return True
    base = entry.raw_manifest.get("base_model", {}).get("id", "")
    return base.lower() == base_model.lower()


def resolve(index: Index, requirement: str | Requirement, *, base_model: str | None = None) -> Resolved:
    """Pick the version of one requirement (see module docstring for the rules)."""
    req = parse_requirement(requirement) if isinstance(requirement, str) else requirement
    entries = index.entries(req.name)
    if not entries:
        raise NotFoundError(f"no adapter named {req.name!r} in the index at {index.location}",
                            hint=did_you_mean(index, req.name))
    on_base = [e for e in entries if _base_matches(e, base_model)]
    if not on_base:
        bases = sorted({e.raw_manifest.get("base_model", {}).get("id", "?") for e in entries})
        raise NotFoundError(f"{req.name} has no version for base model {base_model!r} (it has: {', '.join(bases)})")
    matching = [e for e in on_base if req.specifier.contains(e.parsed_version, prereleases=True)]
    live = [e for e in matching if not e.is_yanked]
    if live:
        finals = [e for e in live if not e.parsed_version.is_prerelease]
        chosen = max(finals or live, key=lambda e: e.parsed_version)
        return Resolved(chosen, req)
    if matching:
        if req.exact is not None:
            chosen = max(matching, key=lambda e: e.parsed_version)
            warnings.warn(f"{chosen.name} {chosen.version} is yanked ({chosen.yanked}); using it because it is "
                          "pinned exactly", YankedVersionWarning, stacklevel=2)
            return Resolved(chosen, req)
        listed = ", ".join(f"{e.version} ({e.yanked})" for e in matching)
        raise YankedError(f"{req}: only yanked versions match: {listed}",
                          hint=f"pin one exactly, e.g. {req.name}=={matching[-1].version}")
    available = ", ".join(e.version + (" [yanked]" if e.is_yanked else "") for e in on_base)
    raise NotFoundError(f"no version of {req.name} matches {str(req.specifier) or 'any'} (available: {available})")


def resolve_closure(index: Index, requirements: list[str | Requirement], *,
                    base_model: str | None = None) -> list[Resolved]:
    """Resolve requirements and all their dependencies; dependencies come before their dependents."""
    chosen: dict[str, Resolved] = {}
    order: list[Resolved] = []

    def visit(req: Requirement, path: tuple[str, ...]) -> None:
        if req.name in path:
            raise DependencyCycleError([*path[path.index(req.name):], req.name])
        if req.name in chosen:
            have = chosen[req.name]
            if not req.specifier.contains(have.entry.parsed_version, prereleases=True):
                raise ConflictError(
                    f"{req.name}: {path[-1] if path else 'you'} needs {req.specifier or 'any'}, but "
                    f"{' -> '.join(have.required_by) or 'you'} selected {have.version}")
            return
        resolved = resolve(index, req, base_model=None if path else base_model)
        resolved = Resolved(resolved.entry, req, path)
        chosen[req.name] = resolved
        for dep in resolved.entry.raw_manifest.get("dependencies") or []:
            dep_req = Requirement(dep["name"], parse_specifier(dep.get("spec") or ""))
            visit(dep_req, (*path, req.name))
        order.append(resolved)

    for r in requirements:
        visit(parse_requirement(r) if isinstance(r, str) else r, ())
    return order
