"""Index entries: one JSON line per version of a name, immutable except ``yanked``."""

from __future__ import annotations

import hashlib
from dataclasses import field
from functools import cached_property
from typing import Any

from packaging.version import Version

from ..errors import IndexFormatError, SchemaError
from ..jsonio import dumps_canonical, iter_json_lines
from ..manifest import Manifest, manifest_to_dict, parse_manifest
from ..records import frozen_record
from ..schema import INDEX_ENTRY_SCHEMA, known_valid, memo_key, remember_valid, validate_document

ENTRY_FORMAT = 1


@frozen_record
class IndexEntry:
    """One version of one adapter as the index lists it."""

    name: str
    version: str
    yanked: bool | str
    manifest_sha256: str
    raw_manifest: dict[str, Any]
    source: str
    memo: bool = field(default=False, compare=False)
    """Use the validation memo for the manifest (entries read by an :class:`Index`; see schema.py)."""

    @cached_property
    def parsed_version(self) -> Version:
        return Version(self.version)

    @cached_property
    def manifest(self) -> Manifest:
        """The typed manifest (validated lazily: resolving a name touches only the versions it needs)."""
        return parse_manifest(self.raw_manifest, f"{self.source} ({self.name} {self.version})", memo=self.memo)

    @property
    def is_yanked(self) -> bool:
        return self.yanked is not False

    def to_json(self) -> dict[str, Any]:
        return {"v": ENTRY_FORMAT, "name": self.name, "version": self.version, "yanked": self.yanked,
                "manifest_sha256": self.manifest_sha256, "manifest": self.raw_manifest}


def manifest_sha256(manifest_json: dict[str, Any]) -> str:
    return hashlib.sha256(dumps_canonical(manifest_json).encode()).hexdigest()


def entry_for(manifest: Manifest, yanked: bool | str = False, source: str = "<new>") -> IndexEntry:
    raw = manifest_to_dict(manifest)
    return IndexEntry(manifest.name, manifest.version, yanked, manifest_sha256(raw), raw, source)


def parse_entry_line(obj: Any, where: str, *, validate: bool = True, memo: bool = False) -> IndexEntry | None:
    """Turn one parsed line into an entry; ``None`` for an entry format this client does not know."""
    if not isinstance(obj, dict):
        raise IndexFormatError(f"{where}: an index line must be a JSON object")
    v = obj.get("v")
    if v != ENTRY_FORMAT:
        if isinstance(v, int) and v > ENTRY_FORMAT:
            import logging  # only here: a warm pull does not load the logging package

            logging.getLogger(__name__).debug("%s: skipping entry format v=%s (this client reads v=%s)", where, v,
                                              ENTRY_FORMAT)
            return None
        raise IndexFormatError(f"{where}: bad entry format version {v!r} (expected {ENTRY_FORMAT})")
    if validate:
        problems = validate_document(obj, INDEX_ENTRY_SCHEMA)
        if problems:
            raise SchemaError(where, problems)
    entry = IndexEntry(obj["name"], obj["version"], obj["yanked"], obj["manifest_sha256"], obj["manifest"], where,
                       memo)
    if entry.raw_manifest.get("name") != entry.name or entry.raw_manifest.get("version") != entry.version:
        raise IndexFormatError(f"{where}: line says {entry.name} {entry.version} but its manifest says "
                               f"{entry.raw_manifest.get('name')} {entry.raw_manifest.get('version')}")
    if manifest_sha256(entry.raw_manifest) != entry.manifest_sha256:
        raise IndexFormatError(f"{where}: manifest_sha256 does not match the manifest it carries")
    return entry


def parse_entry_file(data: bytes, source: str, expected_name: str, *, validate: bool = True,
                     memo: bool = False) -> list[IndexEntry]:
    """All known-format entries of one name's file, checking each belongs to ``expected_name``.

    ``memo``: skip the schema validation of lines when these exact bytes passed it before (schema.py).
    """
    key = memo_key(data, f"entry-file:{INDEX_ENTRY_SCHEMA}") if validate and memo else None
    schema_check = validate and not (key is not None and known_valid(key))
    entries: list[IndexEntry] = []
    seen: set[Version] = set()
    for number, obj in iter_json_lines(data, source):
        entry = parse_entry_line(obj, f"{source}:{number}", validate=schema_check, memo=memo)
        if entry is None:
            continue
        if entry.name != expected_name:
            raise IndexFormatError(f"{source}:{number}: entry for {entry.name!r} in the file of {expected_name!r}")
        try:
            version = entry.parsed_version
        except Exception:
            raise IndexFormatError(f"{source}:{number}: version {entry.version!r} is not PEP 440") from None
        if version in seen:
            raise IndexFormatError(f"{source}:{number}: version {entry.version} listed twice")
        seen.add(version)
        entries.append(entry)
    if key is not None and schema_check:
        remember_valid(key)
    return entries
