"""A registry index: config, per-name version lists, resolution and search.

Resolving a name reads ``config.json`` and that one name's entry file (and its dependencies' files),
never the whole index, so it costs the same at 10 or 100,000 adapters.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import resources, settings
from ..digits import plain_int
from ..errors import IndexFormatError, NotFoundError, SchemaError, UnsupportedSchemaVersionError
from ..jsonio import loads_strict
from ..names import normalize_name, validate_name
from ..schema import INDEX_CONFIG_SCHEMA, validate_document
from .backends import HttpBackend, IndexBackend, LocalBackend
from .entries import IndexEntry, parse_entry_file
from .layout import CONFIG_FILE, SEARCH_FILE, entry_path

if TYPE_CHECKING:
    from ..transport import FetchOptions

SUPPORTED_INDEX_MAJOR = 1


class Index:
    """Read access to one registry index through a backend."""

    def __init__(self, backend: IndexBackend, *, validate_entries: bool = True) -> None:
        self.backend = backend
        self.validate_entries = validate_entries
        self._entries: dict[str, list[IndexEntry]] = {}
        self.config = self._load_config()

    @property
    def location(self) -> str:
        return self.backend.location

    def _load_config(self) -> dict[str, Any]:
        data = self.backend.read(CONFIG_FILE)
        where = f"{self.location.rstrip('/')}/{CONFIG_FILE}"
        if data is None:
            raise IndexFormatError(f"{where}: missing; not a registry index")
        config = loads_strict(data, where)
        fmt = config.get("index_format") if isinstance(config, dict) else None
        major = fmt.split(".")[0] if isinstance(fmt, str) else ""
        if major.isascii() and major.isdigit() and plain_int(major) != SUPPORTED_INDEX_MAJOR:
            raise UnsupportedSchemaVersionError(
                f"{where}: index format {fmt} is not supported (this adapterhub reads {SUPPORTED_INDEX_MAJOR}.x)",
                hint="upgrade adapterhub")
        problems = validate_document(config, INDEX_CONFIG_SCHEMA, memo=True)
        if problems:
            raise SchemaError(where, problems)
        return config

    def entries(self, name: str) -> list[IndexEntry]:
        """Every listed version of ``name`` (yanked included), oldest first; [] when unknown."""
        key = validate_name(normalize_name(name))
        if key not in self._entries:
            rel = entry_path(key)
            data = self.backend.read(rel)
            where = f"{self.location.rstrip('/')}/{rel}"
            found = [] if data is None else parse_entry_file(data, where, key, validate=self.validate_entries,
                                                            memo=True)
            self._entries[key] = sorted(found, key=lambda e: e.parsed_version)
        return self._entries[key]

    def entry(self, name: str, version: str) -> IndexEntry:
        from packaging.version import Version

        wanted = Version(version)
        for e in self.entries(name):
            if e.parsed_version == wanted:
                return e
        raise NotFoundError(f"{name} {version} is not in the index at {self.location}")

    def search_lines(self) -> bytes | None:
        return self.backend.read(SEARCH_FILE)

    @property
    def source(self) -> IndexBackend:
        """The backend that fetches files (under the verifying layer, when the index is trusted)."""
        return getattr(self.backend, "inner", self.backend)

    def trusted_state(self) -> Any | None:
        """The signed metadata versions this index was verified at, or None for an unauthenticated index."""
        state = getattr(self.backend, "trusted_state", None)  # only the verifying backend has it
        return state() if callable(state) else None


def open_index(location: str | Path | None = None, *, offline: bool | None = None,
               cache_dir: Path | None = None, validate_entries: bool = True, trust_dir: Path | None = None,
               options: FetchOptions | None = None) -> Index:
    """Open an index: None = the bundled one, a directory path, an http(s) base URL, or a Hub dataset repo
    (``hf:datasets/ORG/NAME[@REV]``, read at the commit its revision names now: :mod:`.hub_index`).

    An index whose root the user pinned (``adapterhub index trust``) is read through signature checks
    (:mod:`adapterhub.registry.trust`); the bundled index is package data, trusted like the code itself.
    ``options``: timeouts and retries of its HTTP fetches (default from the environment).
    """
    if location is None:
        location = settings.default_index()
    if location is None:
        return Index(LocalBackend(resources.bundled_index_dir()), validate_entries=validate_entries)
    from .trust import authenticate  # deferred: the bundled index (a warm pull's) is not authenticated

    backend = index_backend(location, offline=offline, cache_dir=cache_dir, options=options)
    return Index(authenticate(backend, backend.location, trust_dir=trust_dir), validate_entries=validate_entries)


def is_local_index(location: str | Path | None) -> bool:
    """Whether the index at ``location`` (None: the default, ``ADAPTERHUB_INDEX`` or the bundled one) is read from
    this machine, so reading it offline gives what reading it online would (no revalidation to skip)."""
    effective = settings.default_index() if location is None else location
    if effective is None:
        return True  # the bundled index: package data
    return not str(effective).startswith(("http://", "https://", "hf:"))


def index_backend(location: str | Path, *, offline: bool | None = None, cache_dir: Path | None = None,
                  options: FetchOptions | None = None) -> IndexBackend:
    """The backend that fetches the files of a directory, http(s) or Hub index (no authentication)."""
    text = str(location)
    off = settings.offline() if offline is None else offline
    if text.startswith(("http://", "https://")):
        return HttpBackend(text, (cache_dir or settings.cache_dir()) / "index", offline=off, options=options)
    from .hub_index import hub_index_backend, is_hub_location  # deferred: CLI import cost (bundled index)

    if is_hub_location(location):
        return hub_index_backend(text, (cache_dir or settings.cache_dir()) / "index", offline=off, options=options)
    if text.startswith("file://"):
        text = text[len("file://"):]
    return LocalBackend(Path(text))
