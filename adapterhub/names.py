"""Adapter names and requirement strings.

Names follow ``[a-z0-9][a-z0-9-]{1,63}``; two names are the same package when their PEP 503
normalisations are equal (case, ``_`` and ``.`` fold into ``-`` and runs collapse), so a lookalike such
as ``SST2_Houlsby`` can never be registered next to ``sst2-houlsby``.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import TYPE_CHECKING

from packaging.version import InvalidVersion, Version

if TYPE_CHECKING:
    from packaging.specifiers import SpecifierSet

from .errors import InvalidNameError, InvalidVersionError
from .records import frozen_record

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,63}$")
_FOLD_RE = re.compile(r"[-_.]+")
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def normalize_name(name: str) -> str:
    """PEP 503 normalisation: the key under which names are compared and stored."""
    return _FOLD_RE.sub("-", name).lower()


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid adapter name, else raise :class:`InvalidNameError`."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidNameError(
            f"invalid adapter name {name!r}: use 2-64 lower-case ASCII letters, digits and '-', "
            "starting with a letter or digit"
        )
    if "--" in name or name.endswith("-"):
        raise InvalidNameError(f"invalid adapter name {name!r}: no '--' and no trailing '-'")
    if name in _WINDOWS_RESERVED:
        raise InvalidNameError(f"invalid adapter name {name!r}: reserved device name on Windows")
    return name


def manifest_name(name: str, *, short_prefix: str = "adapter", limit: int = 64) -> str:
    """The published name for a local one (``My_Adapter.v2`` -> ``my-adapter-v2``): what saving writes.

    Lower-cased, every run of other characters folded into one ``-``, cut to ``limit``; a result shorter
    than two characters gets ``short_prefix`` in front (``a`` -> ``adapter-a``).
    """
    norm = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", normalize_name(name))).strip("-")[:limit].strip("-")
    return norm if len(norm) >= 2 else f"{short_prefix}-{norm}".strip("-")


_REPO_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?")


def is_repo_id(name: str) -> bool:
    """Whether ``name`` looks like a Hub model id (``bert-base-uncased``, ``org/model``), not a local path."""
    return bool(_REPO_ID_RE.fullmatch(name))


def parse_version(text: str) -> Version:
    """Parse a PEP 440 version, raising :class:`InvalidVersionError` with the offending text."""
    try:
        return Version(text)
    except (InvalidVersion, TypeError):
        raise InvalidVersionError(f"version {text!r} is not a valid PEP 440 version (e.g. 1.0.0)") from None


def parse_specifier(text: str) -> SpecifierSet:
    """Parse a PEP 440 specifier set (``>=1,<2``); empty means any version."""
    from packaging.specifiers import (  # here: a bare name needs no specifier parser
        InvalidSpecifier,
        SpecifierSet,
    )

    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        raise InvalidVersionError(f"version specifier {text!r} does not parse (e.g. '>=1,<2' or '==1.0.0')") from None


@frozen_record
class Requirement:
    """A parsed ``name[spec]``: the normalised name and the version constraint.

    ``spec`` is the constraint in its normal text form (``str(SpecifierSet)``, ``""`` for any version), so
    two requirements that mean the same are equal; :attr:`specifier` parses it on first use (a bare name,
    the common case, never loads the specifier parser: CLI start-up cost).
    """

    name: str
    spec: str = ""
    exact: Version | None = None

    @cached_property
    def specifier(self) -> SpecifierSet:
        return parse_specifier(self.spec)

    def __str__(self) -> str:
        return f"{self.name}{self.spec}"

    def allows(self, version: str | Version) -> bool:
        """Whether ``version`` meets this requirement: the one pin check of resolver, lock and cache.

        Pre-releases count (a spec that names one must be able to select it; preferring final
        releases is the resolver's choice, not this check's). A version that does not parse raises
        :class:`InvalidVersionError`.
        """
        parsed = version if isinstance(version, Version) else parse_version(version)
        if not self.spec:
            return True
        return self.specifier.contains(parsed, prereleases=True)


_FORMS = "NAME, NAME==VERSION, NAME>=A,<B or NAME@VERSION"
HUB_REPO_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}(@\S+)?")


def hub_repo_id_hint(repo_id: str) -> str:
    """What to do with a bare Hub repo id where an index name goes: say ``hf:ORG/REPO``."""
    repo, _, rev = repo_id.partition("@")
    ref = f"hf:{repo}@{rev}" if rev else f"hf:{repo}"
    return (f"names without a prefix come from the registry index (`adapterhub search`); to pull the Hub "
            f"repository itself, verified by the Hub's hashes, write {ref} (e.g. `adapterhub pull {ref}`)")


HUB_PREFIX = "hf:"
_HUB_REF_RE = re.compile(r"(?P<repo>[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95})"
                         r"(?:@(?P<rev>[^:@\s]+))?(?::(?P<sub>[^:@\s]+))?")
_HUB_REF_FORM = "hf:ORG/REPO[@REVISION][:SUBFOLDER]"


def is_hub_reference(text: object) -> bool:
    """Whether ``text`` is written as a Hub reference (``hf:...``); it may still not parse."""
    return isinstance(text, str) and text.strip().startswith(HUB_PREFIX)


@frozen_record
class HubReference:
    """A parsed ``hf:ORG/REPO[@REVISION][:SUBFOLDER]``: a Hub model repo, a branch/tag/commit, a folder."""

    repo_id: str
    revision: str | None = None
    subfolder: str | None = None

    def __str__(self) -> str:
        rev = f"@{self.revision}" if self.revision else ""
        sub = f":{self.subfolder}" if self.subfolder else ""
        return f"{HUB_PREFIX}{self.repo_id}{rev}{sub}"

    def at(self, commit: str) -> HubReference:
        """The same reference pinned to ``commit``."""
        return HubReference(self.repo_id, commit, self.subfolder)


def parse_hub_reference(text: str) -> HubReference:
    """Parse ``hf:ORG/REPO[@REVISION][:SUBFOLDER]``; :class:`InvalidNameError` says what is wrong.

    The subfolder is a relative path inside the repo (no ``..``, no absolute path, ``/`` separators).
    """
    body = text.strip()[len(HUB_PREFIX):] if is_hub_reference(text) else None
    if body is not None and body.startswith(("datasets/", "spaces/")):
        raise InvalidNameError(f"{text.strip()!r}: only model repositories hold adapters to pull",
                               hint="an index stored in a dataset repo is given with --index")
    match = _HUB_REF_RE.fullmatch(body or "")
    if match is None:
        raise InvalidNameError(f"cannot parse Hub reference {text!r}: expected {_HUB_REF_FORM}, e.g. "
                               "hf:org/repo, hf:org/repo@v1.0 or hf:org/repo@main:adapters/sst2")
    sub = match["sub"]
    if sub is not None:
        parts = sub.strip("/").split("/")
        if sub.startswith("/") or "\\" in sub or any(p in ("", ".", "..") for p in parts):
            raise InvalidNameError(f"{text.strip()!r}: the subfolder {sub!r} must be a relative path inside the "
                                   "repository (no '..', no empty parts)")
        sub = "/".join(parts)
    rev = match["rev"]
    if rev is not None and (".." in rev or rev.endswith((".", "/", ".lock")) or rev.startswith("/")):
        raise InvalidNameError(f"{text.strip()!r}: {rev!r} is not a valid git revision")
    return HubReference(match["repo"], rev, sub)


COMMIT_PATTERN = re.compile(r"[0-9a-f]{40}")
"""A full git commit id: what a published Hub reference must name (a branch or tag moves)."""


def commit_of(revision: str | None) -> str | None:
    """``revision`` when it already is a 40-hex commit (a pull that names one needs no resolve call)."""
    return revision if revision and COMMIT_PATTERN.fullmatch(revision) else None


def pinned_hub_reference(text: str) -> HubReference:
    """Parse a Hub reference that must name a 40-hex commit (a manifest's ``hub`` dependency).

    :class:`InvalidNameError` for a bad reference, and for a branch, tag or short commit (a composition that
    named one would pull other bytes tomorrow), with the form to write instead.
    """
    ref = parse_hub_reference(text)
    if ref.revision is None or not COMMIT_PATTERN.fullmatch(ref.revision):
        at = f"at {ref.revision!r}, a branch, tag or short commit" if ref.revision else "without a revision"
        raise InvalidNameError(f"{text.strip()!r} names the repository {at}: a published dependency must be pinned "
                               "to a full commit", hint=f"pin it: hf:{ref.repo_id}@<40-hex commit>"
                               + (f":{ref.subfolder}" if ref.subfolder else "")
                               + " (`adapterhub pull` prints the commit it resolved)")
    return ref


_REQ_RE = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:@\s*(?P<at>\S+)|(?P<spec>[<>=!~].*))?\s*$")


def dependency_requirement(name: str, spec: str | None) -> Requirement:
    """A manifest's dependency (``name`` and optional PEP 440 ``spec``) as a requirement, parsed like a user's
    (``==X`` is an exact pin)."""
    return parse_requirement(f"{name}{spec or ''}")


def parse_requirement(text: str) -> Requirement:
    """Parse ``name``, ``name==1.2.0``, ``name>=1,<2`` or ``name@1.2.0`` into a :class:`Requirement`.

    ``name@X`` is an exact pin like ``name==X``. An exact pin is what allows a yanked version.
    """
    match = _REQ_RE.match(text or "")
    if not match:
        if is_hub_reference(text):
            raise InvalidNameError(f"{text.strip()!r} is a Hub reference, not an index requirement: pull it with "
                                   "`adapterhub pull` / adapterhub.store.pull, which take both")
        if isinstance(text, str) and HUB_REPO_ID_RE.fullmatch(text.strip()):
            raise InvalidNameError(f"{text.strip()!r} is a Hugging Face Hub repository id, not an adapter name "
                                   "from the index", hint=hub_repo_id_hint(text.strip()))
        if isinstance(text, str) and (text.strip().startswith((".", "~")) or "/" in text or "\\" in text):
            raise InvalidNameError(f"{text!r} looks like a file path, not an adapter name from the index "
                                   f"({_FORMS})", hint="names are listed by `adapterhub search`; commands that "
                                   "take a directory (`adapterhub run DIR`) need one that exists")
        raise InvalidNameError(f"cannot parse requirement {text!r}: expected {_FORMS}")
    name = normalize_name(match["name"])
    validate_name(name)
    if match["at"]:
        version = parse_version(match["at"])
        return Requirement(name, f"=={version}", exact=version)
    spec_text = (match["spec"] or "").strip()
    if not spec_text:
        return Requirement(name)
    spec = parse_specifier(spec_text)
    exact = None
    items = list(spec)
    if len(items) == 1 and items[0].operator in ("==", "===") and "*" not in items[0].version:
        exact = parse_version(items[0].version)
    return Requirement(name, str(spec), exact=exact)
