"""Requirement → version, and the dependency closure.

Rules (PEP 440 and PEP 592, Cargo's yanking): the highest non-yanked version matching the
specifier; final releases before pre-releases; a yanked version only for an exact pin typed by the
user (or recorded in a lockfile), with a warning. An optional base-model filter drops versions made for other bases. Dependencies resolve
greedily in depth-first order; a name required twice must get one version satisfying both, else a
:class:`ConflictError` names both requirers; cycles raise :class:`DependencyCycleError`.

A dependency's exact pin does not select a yanked version: a published composition (a fusion) pins
its members ``==version``, and a member yanked after it was published (say, for a CVE) must stop the
pull rather than come back silently through every composition that names it. The error names the
composition and the member; a user who accepts the risk pins the member themselves or uses a lockfile.
Every error and warning about a dependency names the release that requires it.

The walk is iterative (an explicit stack, no recursion), so an index cannot exhaust Python's stack;
a chain deeper than :data:`MAX_DEPENDENCY_DEPTH` or a closure larger than :data:`MAX_CLOSURE_SIZE`
is a :class:`DependencyLimitError`.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import field

from ..errors import (
    ConflictError,
    DependencyCycleError,
    DependencyLimitError,
    IndexFormatError,
    NotFoundError,
    YankedError,
)
from ..manifest import Manifest
from ..names import Requirement, dependency_requirement, parse_requirement
from ..records import frozen_record
from .entries import IndexEntry
from .index import Index

MAX_DEPENDENCY_DEPTH = 64
"""Longest requirer chain (a composition of compositions of ... adapters) the resolver follows."""
MAX_CLOSURE_SIZE = 1000
"""Most releases one closure may hold."""


class YankedVersionWarning(UserWarning):
    """An exact pin selected a yanked version."""


@frozen_record
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


def resolve(index: Index, requirement: str | Requirement, *, base_model: str | None = None,
            required_by: str | None = None) -> Resolved:
    """Pick the version of one requirement (see module docstring for the rules).

    ``required_by`` (e.g. ``"my-fusion 1.0.0"``) names the release whose dependency this is, for
    errors and warnings.
    """
    req = parse_requirement(requirement) if isinstance(requirement, str) else requirement
    who = f"{required_by} requires {req}: " if required_by else ""
    entries = index.entries(req.name)
    if not entries:
        raise NotFoundError(f"{who}no adapter named {req.name!r} in the index at {index.location}",
                            hint=_suggestion(index, req.name))
    on_base = [e for e in entries if _base_matches(e, base_model)]
    if not on_base:
        bases = sorted({e.raw_manifest.get("base_model", {}).get("id", "?") for e in entries})
        raise NotFoundError(f"{req.name} has no version for base model {base_model!r} (it has: {', '.join(bases)})")
    matching = [e for e in on_base if req.allows(e.parsed_version)]
    live = [e for e in matching if not e.is_yanked]
    if live:
        finals = [e for e in live if not e.parsed_version.is_prerelease]
        chosen = max(finals or live, key=lambda e: e.parsed_version)
        return Resolved(chosen, req)
    if matching:
        if req.exact is not None and not required_by:
            chosen = max(matching, key=lambda e: e.parsed_version)
            pinner = required_by or "the requirement"
            warnings.warn(f"{chosen.name} {chosen.version} is yanked ({chosen.yanked}); using it because {pinner} "
                          "pins it exactly", YankedVersionWarning, stacklevel=2)
            return Resolved(chosen, req)
        listed = ", ".join(f"{e.version} ({e.yanked})" for e in matching)
        hint = (f"{required_by} needs a release whose dependency on {req.name} matches a non-yanked version; "
                f"to accept the risk, pull {req.name}=={matching[-1].version} yourself and the composition with --no-deps"
                if required_by else f"pin one exactly, e.g. {req.name}=={matching[-1].version}")
        raise YankedError(f"{who or f'{req}: '}only yanked versions match: {listed}", hint=hint)
    available = ", ".join(e.version + (" [yanked]" if e.is_yanked else "") for e in on_base)
    raise NotFoundError(f"{who}no version of {req.name} matches {req.spec or 'any'} "
                        f"(available: {available})")


def _dependencies(resolved: Resolved) -> Iterator[Requirement]:
    """The index requirements a release declares, parsed like a user's (``==X`` is an exact pin).

    A dependency on a Hub repo (``hub``, format 1.1) is no index release: the store pulls it by its pinned
    reference (:mod:`adapterhub.store.hub_deps`), so the walk leaves it out."""
    for dep in resolved.entry.raw_manifest.get("dependencies") or []:
        if isinstance(dep, dict) and "hub" in dep:
            continue
        name, spec = (dep.get("name"), dep.get("spec") or "") if isinstance(dep, dict) else (None, None)
        if not isinstance(name, str) or not isinstance(spec, str):
            raise IndexFormatError(f"{resolved.entry.source}: dependency {dep!r} of {resolved.name} "
                                   f"{resolved.version} needs a string 'name' and optional string 'spec'")
        yield dependency_requirement(name, spec)


def resolve_closure(index: Index, requirements: list[str | Requirement], *, base_model: str | None = None,
                    required_by: tuple[str, ...] = (), chosen: dict[str, Resolved] | None = None) -> list[Resolved]:
    """Resolve requirements and all their dependencies; dependencies come before their dependents.

    ``required_by``: the chain that requires ``requirements`` when they are themselves dependencies (of a
    composition held by a Hub repo: release names and ``hf:`` references, first requirer first). They then
    follow the rules of dependencies (an exact pin does not select a yanked version; errors name the requirer),
    a cycle back into the chain is a :class:`DependencyCycleError` and the depth counts from its start.
    ``chosen``: releases an earlier call of the same pull selected, by name (updated in place): a requirement
    one of them satisfies reuses it (it is not returned again), one it does not is a :class:`ConflictError`.
    """
    chosen = {} if chosen is None else chosen
    order: list[Resolved] = []

    def label(requirer: str) -> str:
        return f"{requirer} {chosen[requirer].version}" if requirer in chosen else requirer

    def enter(req: Requirement, path: tuple[str, ...]) -> Resolved | None:
        """Resolve ``req`` reached through ``path``; None when it was resolved before (and still fits)."""
        if req.name in path:
            raise DependencyCycleError([*path[path.index(req.name):], req.name])
        requirer = label(path[-1]) if path else None
        if req.name in chosen:
            have = chosen[req.name]
            if not req.allows(have.entry.parsed_version):
                raise ConflictError(
                    f"{req.name}: {path[-1] if path else 'you'} needs {req.spec or 'any'}, but "
                    f"{' -> '.join(have.required_by) or 'you'} selected {have.version}")
            return None
        if len(path) >= MAX_DEPENDENCY_DEPTH:
            raise DependencyLimitError(
                f"{requirer} requires {req.name} at dependency depth {len(path) + 1}, deeper than the "
                f"{MAX_DEPENDENCY_DEPTH} levels followed (chain starts {' -> '.join(path[:4])} ...)",
                hint="the index is broken or hostile; report it to its maintainers")
        if len(chosen) >= MAX_CLOSURE_SIZE:
            raise DependencyLimitError(f"resolving {req.name} would take the closure past {MAX_CLOSURE_SIZE} releases",
                                       hint="the index is broken or hostile; report it to its maintainers")
        picked = resolve(index, req, base_model=None if path else base_model, required_by=requirer)
        resolved = chosen[req.name] = Resolved(picked.entry, req, path)
        return resolved

    for r in requirements:
        root = enter(parse_requirement(r) if isinstance(r, str) else r, required_by)
        if root is None:
            continue
        stack: list[tuple[Resolved, Iterator[Requirement]]] = [(root, _dependencies(root))]
        while stack:  # depth-first, post-order: a release is appended after all its dependencies
            node, deps = stack[-1]
            dep = next(deps, None)
            if dep is None:
                stack.pop()
                order.append(node)
                continue
            child = enter(dep, (*node.required_by, node.name))
            if child is not None:
                stack.append((child, _dependencies(child)))
    return order


def _suggestion(index: Index, name: str) -> str:
    from .suggest import did_you_mean  # deferred: only a name that is not found needs the matcher

    return did_you_mean(index, name)
