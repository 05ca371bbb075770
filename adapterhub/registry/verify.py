"""``adapterhub index verify``: an index checked against its signed metadata, file by file.

The check runs the client's own verification (python-tuf's updater through
:class:`~adapterhub.registry.tuf_client.VerifiedBackend`) from a trusted root: ``root`` when given, the
root pinned for the location (then the client's rollback state applies too), the root pinned in the
package for the bundled index, or else the index's own ``metadata/root.json`` (which proves only that
the index is consistent with itself, and says so). Then every listed file is fetched and checked; for a
directory, files the signed metadata does not cover are reported too.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import resources
from ..errors import AdapterHubError, IndexTrustError
from ..fileio import atomic_write_bytes
from .backends import LocalBackend
from .index import index_backend
from .layout import METADATA_DIR
from .signing import collect_targets
from .trust import TrustEntry, bundled_root, check_root_document, location_key, trusted


@dataclass
class IndexVerifyReport:
    location: str
    root_source: str
    versions: dict[str, int] = field(default_factory=dict)
    expires: dict[str, str] = field(default_factory=dict)
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {"index": self.location, "ok": self.ok, "root": self.root_source, "versions": self.versions,
                "expires": self.expires, "keys": self.keys, "targets": self.targets, "problems": self.problems}


def _check(backend: Any, entry: TrustEntry, report: IndexVerifyReport) -> None:
    from .tuf_client import VerifiedBackend  # deferred: CLI import cost (python-tuf, cryptography)

    verified = VerifiedBackend(backend, entry)
    try:
        state = verified.trusted_state()
        listed = verified.listed_targets()
    except AdapterHubError as exc:
        report.problems.append(str(exc))
        return
    report.versions = {k: v for k, v in state.to_json().items() if k != "expires"}
    for role in ("root", "timestamp", "snapshot", "targets"):
        report.expires[role] = verified.trusted_metadata(role).expires.isoformat()
    root = verified.trusted_metadata("root")
    report.keys = {role: {"keyids": list(r.keyids), "threshold": r.threshold} for role, r in root.roles.items()}
    report.targets = len(listed)
    for path in sorted(listed):
        try:
            verified.read(path)
        except AdapterHubError as exc:
            report.problems.append(str(exc))
    if isinstance(backend, LocalBackend):
        for path in sorted(set(collect_targets(backend.root)) - set(listed)):
            report.problems.append(f"{path}: not covered by the signed metadata (run `adapterhub index sign`)")


def verify_index(location: str | Path | None = None, *, root: bytes | None = None,
                 trust_dir: Path | None = None) -> IndexVerifyReport:
    """Verify the index at ``location`` (None: the bundled index); see the module docstring."""
    if location is None:
        backend: Any = LocalBackend(resources.bundled_index_dir())
        source = "the root pinned in this package"
        root = root if root is not None else bundled_root()
    else:
        backend = index_backend(location)
        source = "the given root"
    key = location_key(backend.location)
    report = IndexVerifyReport(key, source)
    pinned = trusted(key, trust_dir=trust_dir) if root is None else None
    if pinned is not None:
        report.root_source = "the root pinned for this index (`adapterhub index trust`)"
        _check(backend, pinned, report)
        return report
    if root is None:
        root = backend.read(f"{METADATA_DIR}/root.json", max_bytes=512_000)
        if root is None:
            report.problems.append(f"{key}: no {METADATA_DIR}/root.json; the index is not signed "
                                   "(sign it with `adapterhub index sign`)")
            return report
        report.root_source = "the index's own root: this proves the index is consistent, not that it is authentic " \
                             "(pass --root or pin it with `adapterhub index trust`)"
    try:
        check_root_document(root, "root")
    except IndexTrustError as exc:
        report.problems.append(str(exc))
        return report
    with tempfile.TemporaryDirectory(prefix="adapterhub-verify-") as tmp:
        entry = TrustEntry(key, Path(tmp))
        atomic_write_bytes(entry.root_path, root)
        _check(backend, entry, report)
    return report
