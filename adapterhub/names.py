"""Adapter names and requirement strings.

Names follow ``[a-z0-9][a-z0-9-]{1,63}``; two names are the same package when their PEP 503
normalisations are equal (case, ``_`` and ``.`` fold into ``-`` and runs collapse), so a lookalike such
as ``SST2_Houlsby`` can never be registered next to ``sst2-houlsby``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from .errors import InvalidNameError, InvalidVersionError

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
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        raise InvalidVersionError(f"version specifier {text!r} does not parse (e.g. '>=1,<2' or '==1.0.0')") from None


@dataclass(frozen=True)
class Requirement:
    """A parsed ``name[spec]``: the normalised name and the version constraint."""

    name: str
    specifier: SpecifierSet
    exact: Version | None = None

    def __str__(self) -> str:
        return f"{self.name}{self.specifier}" if str(self.specifier) else self.name

    def allows(self, version: str | Version) -> bool:
        """Whether ``version`` meets this requirement: the one pin check of resolver, lock and cache.

        Pre-releases count (a spec that names one must be able to select it; preferring final
        releases is the resolver's choice, not this check's). A version that does not parse raises
        :class:`InvalidVersionError`.
        """
        parsed = version if isinstance(version, Version) else parse_version(version)
        return self.specifier.contains(parsed, prereleases=True)


_FORMS = "NAME, NAME==VERSION, NAME>=A,<B or NAME@VERSION"
HUB_REPO_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}(@\S+)?")


def hub_repo_id_hint(repo_id: str) -> str:
    """What to do with a Hub repo id where an index name goes (pulling ``hf:ORG/REPO`` is not built yet)."""
    repo = repo_id.split("@")[0]
    return (f"names come from the registry index (`adapterhub search`); pulling a Hub repo directly is not "
            f"supported yet. If {repo} was published with adapterhub, pull it by its index name with --index "
            f"set to the registry that lists it; otherwise `hf download {repo} --local-dir DIR`, convert a PEFT "
            f"or adapters-library directory with `adapterhub init DIR --base BASE`, and use the directory "
            f"(`adapterhub run DIR ...`)")


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
        return Requirement(name, SpecifierSet(f"=={version}"), exact=version)
    spec_text = (match["spec"] or "").strip()
    spec = parse_specifier(spec_text)
    exact = None
    items = list(spec)
    if len(items) == 1 and items[0].operator in ("==", "===") and "*" not in items[0].version:
        exact = parse_version(items[0].version)
    return Requirement(name, spec, exact=exact)
