"""Verified reads of a trusted index: python-tuf's ngclient ``Updater`` over our index backends.

ngclient implements the TUF client workflow (root rotation chain, rollback and freeze checks, fast-forward
recovery, length caps, hash bins); this module only feeds it. Metadata is fetched through the index's own
backend (local directory or HTTP with ETags) by a fetcher that maps ngclient's URLs to index paths and
passes each length cap down to the backend, so an endless response stops at the cap. Entry files,
``config.json`` and ``search-index.jsonl`` are then read through the same backend and accepted only if
their length and sha256 match the signed targets; a file the signed targets do not list does not exist.

ngclient's ``Updater`` is not safe across processes, so all its work happens under the index's trust
lock. python-tuf errors become adapterhub's typed errors (:class:`~adapterhub.errors.IndexSignatureError`,
:class:`~adapterhub.errors.RollbackError`, :class:`~adapterhub.errors.ExpiredMetadataError`, …).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tuf.api import exceptions as tuf_errors
from tuf.ngclient import FetcherInterface, Updater, UpdaterConfig

from ..errors import (
    AdapterHubError,
    DownloadError,
    ExpiredMetadataError,
    IndexSignatureError,
    IndexTrustError,
    MetadataSizeError,
    RollbackError,
    SizeLimitError,
)
from .backends import MAX_INDEX_FILE_BYTES
from .layout import METADATA_DIR
from .trust_entry import TrustEntry

URL_PREFIX = "index:/"
"""ngclient works on URLs; ours name a path inside the index, whatever backend serves it."""

CONFIG = UpdaterConfig(
    max_root_rotations=32,
    max_delegations=8,
    root_max_length=512_000,
    timestamp_max_length=16_384,
    snapshot_max_length=4_000_000,
    targets_max_length=8_000_000,
    prefix_targets_with_hash=False,
)
"""Caps for metadata whose length no signed parent states (root, timestamp; the rest are bounded by
the lengths in snapshot and timestamp)."""


class BackendFetcher(FetcherInterface):
    """ngclient's fetcher over an index backend (``index:/metadata/timestamp.json`` -> that file)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.last = ""
        """The index path fetched last (named in error messages: ngclient's errors do not say which file)."""

    def _read(self, url: str, max_length: int) -> bytes:
        if not url.startswith(URL_PREFIX):
            raise tuf_errors.DownloadError(f"unexpected URL {url!r}")
        relative = url[len(URL_PREFIX):]
        self.last = relative
        try:
            data = self.backend.read(relative, max_bytes=max_length)
        except SizeLimitError as exc:
            raise tuf_errors.DownloadLengthMismatchError(str(exc)) from None
        if data is None:
            raise tuf_errors.DownloadHTTPError(f"{relative}: not found", 404)
        return data

    def _fetch(self, url: str) -> Iterator[bytes]:
        yield self._read(url, MAX_INDEX_FILE_BYTES)

    def download_bytes(self, url: str, max_length: int) -> bytes:
        return self._read(url, max_length)


_HINT_RESIGN = "the index's operator must re-sign it (`adapterhub index sign`)"


@contextlib.contextmanager
def translated(index: str, fetcher: BackendFetcher | None = None) -> Iterator[None]:
    """Turn python-tuf errors into adapterhub's typed errors naming the index (and the file fetched last)."""
    try:
        yield
    except AdapterHubError:
        raise
    except (tuf_errors.RepositoryError, tuf_errors.DownloadError, OSError) as exc:
        where = f"{index} (at {fetcher.last})" if fetcher is not None and fetcher.last else index
        raise _typed(exc, where) from None


def _typed(exc: Exception, where: str) -> AdapterHubError:
    if isinstance(exc, tuf_errors.UnsignedMetadataError):
        return IndexSignatureError(f"{where}: signature check failed: {exc}",
                              hint="the metadata is not signed by the keys the pinned root trusts: a tampering "
                                   "mirror, or keys changed without a signed rotation")
    if isinstance(exc, tuf_errors.BadVersionNumberError):
        return RollbackError(f"{where}: {exc}",
                             hint="the server offers older metadata than this client already trusted (a rollback, "
                                  "or files from different moments); if the operator re-created the index, "
                                  "re-pin it with `adapterhub index trust`")
    if isinstance(exc, tuf_errors.ExpiredMetadataError):
        return ExpiredMetadataError(f"{where}: {exc}", hint=f"{_HINT_RESIGN}; a server replaying old metadata "
                                                            "looks the same, so expired metadata is refused")
    if isinstance(exc, tuf_errors.LengthOrHashMismatchError):
        return IndexTrustError(f"{where}: metadata does not match the hash its signed parent pins: {exc}",
                               hint="files from different moments (mix-and-match) or a tampering mirror")
    if isinstance(exc, tuf_errors.DownloadLengthMismatchError):
        return MetadataSizeError(f"{where}: {exc}")
    if isinstance(exc, tuf_errors.DownloadHTTPError):
        return IndexTrustError(f"{where}: signed metadata missing ({exc})",
                               hint="this index's root is pinned, so it must serve metadata/; unsigned data is refused")
    if isinstance(exc, tuf_errors.DownloadError):
        cause = exc.__cause__
        return cause if isinstance(cause, AdapterHubError) else DownloadError(f"{where}: {exc}")
    if isinstance(exc, OSError):
        return IndexTrustError(f"{where}: cannot keep trusted metadata: {exc}",
                               hint="make the trust directory writable or set ADAPTERHUB_TRUST_DIR")
    return IndexTrustError(f"{where}: {exc}")


@dataclass(frozen=True)
class TrustedState:
    """The signed metadata versions a client accepted for one index (recorded in lockfiles)."""

    root: int
    timestamp: int
    snapshot: int
    targets: int
    expires: str

    def to_json(self) -> dict[str, Any]:
        return {"root": self.root, "timestamp": self.timestamp, "snapshot": self.snapshot,
                "targets": self.targets, "expires": self.expires}


class VerifiedBackend:
    """An index backend whose every read is checked against the trusted index's signed metadata."""

    def __init__(self, inner: Any, entry: TrustEntry) -> None:
        self.inner = inner
        self.entry = entry
        self.location = inner.location
        self._updater: Updater | None = None
        self._fetcher: BackendFetcher | None = None
        self._state: TrustedState | None = None

    def _where(self, relative: str | None = None) -> str:
        base = self.location.rstrip("/")
        return f"{base}/{relative}" if relative else f"{base} (signed index)"

    def _refresh(self) -> Updater:
        if self._updater is not None:
            return self._updater
        self.entry.metadata_dir.mkdir(parents=True, exist_ok=True)
        fetcher = BackendFetcher(self.inner)
        self._fetcher = fetcher
        with self.entry.lock(), translated(self._where(), fetcher):
            updater = Updater(str(self.entry.metadata_dir), URL_PREFIX + METADATA_DIR + "/",
                              fetcher=fetcher, config=CONFIG, bootstrap=self.entry.root_bytes())
            updater.refresh()
            self._state = self._read_state()
        self._updater = updater
        return updater

    def _read_state(self) -> TrustedState:
        def signed(role: str) -> dict[str, Any]:
            return json.loads((self.entry.metadata_dir / f"{role}.json").read_bytes())["signed"]

        timestamp = signed("timestamp")
        return TrustedState(signed("root")["version"], timestamp["version"], signed("snapshot")["version"],
                            signed("targets")["version"], timestamp["expires"])

    def trusted_state(self) -> TrustedState:
        """The versions verified by this reader's refresh (refreshing first if needed)."""
        self._refresh()
        assert self._state is not None
        return self._state

    def read(self, relative: str, max_bytes: int = MAX_INDEX_FILE_BYTES) -> bytes | None:
        """The file's bytes if the signed targets list it and they match; None if unlisted."""
        updater = self._refresh()
        where = self._where(relative)
        with self.entry.lock(), translated(where, self._fetcher):
            info = updater.get_targetinfo(relative)
        if info is None:
            return None
        if info.length > max_bytes:
            raise MetadataSizeError(f"{where}: the signed length {info.length} is over the cap of {max_bytes} bytes")
        hint = ("a tampering mirror or man in the middle; or the index changed while it was being published, "
                "then a retry succeeds")
        forget = getattr(self.inner, "forget", None)  # a refused copy is not kept (the HTTP backends' cache)
        try:
            data = self.inner.read(relative, max_bytes=info.length)
        except SizeLimitError:
            if forget is not None:
                forget(relative)
            raise IndexTrustError(f"{where}: does not match the signed index metadata (longer than its signed "
                                  f"length, {info.length} bytes)", hint=hint) from None
        if data is None:
            raise IndexTrustError(f"{where}: listed in the signed index but missing on the server",
                                  hint="a mirror withholding files, or an incomplete upload; try again later")
        try:
            info.verify_length_and_hashes(data)
        except tuf_errors.LengthOrHashMismatchError:
            if forget is not None:
                forget(relative)
            raise IndexTrustError(f"{where}: does not match the signed index metadata (length or sha256)",
                                  hint=hint) from None
        return data

    def signed_digest(self, relative: str) -> tuple[str, int] | None:
        """The sha256 and length the signed metadata give ``relative`` (None if unlisted), without reading it:
        what names the cached search database of a trusted index (:mod:`adapterhub.registry.search_db`)."""
        updater = self._refresh()
        with self.entry.lock(), translated(self._where(relative), self._fetcher):
            info = updater.get_targetinfo(relative)
        if info is None or "sha256" not in info.hashes:
            return None
        return info.hashes["sha256"], info.length

    def trusted_metadata(self, role: str) -> Any:
        """The verified ``Signed`` object of a top-level role (root, timestamp, snapshot, targets)."""
        from tuf.api.metadata import Metadata

        self._refresh()
        with self.entry.lock():
            return Metadata.from_bytes((self.entry.metadata_dir / f"{role}.json").read_bytes()).signed

    def listed_targets(self) -> dict[str, Any]:
        """Every path the signed metadata lists -> its ``TargetFile`` (top-level targets and all hash bins).

        Bins are checked like ngclient checks them: length and sha256 against the verified snapshot, the
        delegation's signature threshold, the version the snapshot names, and expiry.
        """
        from datetime import datetime, timezone

        from tuf.api.metadata import Metadata

        snapshot = self.trusted_metadata("snapshot")
        targets = self.trusted_metadata("targets")
        out = dict(targets.targets)
        delegations = targets.delegations
        if delegations is None:
            return out
        if delegations.succinct_roles is None:
            raise IndexTrustError(f"{self._where()}: uses path delegations, which adapterhub does not write or list")
        now = datetime.now(timezone.utc)
        for role in delegations.succinct_roles.get_roles():
            where = self._where(f"{METADATA_DIR}/{role}.json")
            meta = snapshot.meta.get(f"{role}.json")
            if meta is None:
                raise IndexTrustError(f"{where}: delegated but not in the signed snapshot")
            with translated(where):
                data = BackendFetcher(self.inner).download_bytes(f"{URL_PREFIX}{METADATA_DIR}/{role}.json",
                                                                 meta.length or CONFIG.targets_max_length)
                meta.verify_length_and_hashes(data)
                md = Metadata.from_bytes(data)
                targets.verify_delegate(role, md.signed_bytes, md.signatures)
                if md.signed.version != meta.version:
                    raise tuf_errors.BadVersionNumberError(f"expected {role} v{meta.version}, got v{md.signed.version}")
                if md.signed.is_expired(now):
                    raise tuf_errors.ExpiredMetadataError(f"{role} is expired")
            out.update(md.signed.targets)
        return out
