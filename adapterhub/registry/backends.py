"""Where index files are read from: a local directory (incl. the bundled index) or an HTTP(S) base URL.

Both answer the same three questions: the root ``config.json``, one name's entry file, and the search
summary. The HTTP backend fetches one file per name and revalidates with ``If-None-Match`` (Cargo's
sparse protocol), keeping bodies and ETags in a small on-disk cache so repeated lookups cost a 304.
Its requests go through the shared transport (:mod:`adapterhub.transport`), like the store's.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..errors import DownloadError, IndexFileSizeError, IndexFormatError, OfflineError, SizeLimitError
from ..fileio import atomic_write_text
from ..paths import safe_join

if TYPE_CHECKING:
    from ..transport import FetchOptions, Transport

MAX_INDEX_FILE_BYTES = 64 * 1024 * 1024


class IndexBackend(Protocol):
    location: str

    def read(self, relative: str, max_bytes: int = MAX_INDEX_FILE_BYTES) -> bytes | None:
        """Bytes of an index file, or None when it does not exist; more than ``max_bytes`` is a SizeLimitError."""


class LocalBackend:
    """An index directory on disk (the bundled index is one)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)
        if not self.root.is_dir():
            raise IndexFormatError(f"{self.root}: index directory does not exist")

    def read(self, relative: str, max_bytes: int = MAX_INDEX_FILE_BYTES) -> bytes | None:
        path = safe_join(self.root, relative)
        try:
            with path.open("rb") as fh:
                data = fh.read(max_bytes + 1)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if len(data) > max_bytes:
            raise IndexFileSizeError(f"{path}: larger than {max_bytes} bytes")
        return data


class HttpBackend:
    """An index served over HTTP(S): ``<base>/config.json``, ``<base>/<shard>/<name>``.

    Fetches go through the shared transport (:mod:`adapterhub.transport`): retries with backoff on
    connection errors, 429 and 5xx, redirects only to http(s), a deadline and minimum rate, and the
    size cap enforced while the body streams. Every transfer failure is a typed ``DownloadError``.

    ``immutable``: the base URL names content that never changes (a Hub commit), so a cached file is
    used as it is, without a revalidating request. ``token``: as :meth:`Transport.fetch` takes it (None:
    the user's stored token, sent only where the transport's token scope allows).
    """

    def __init__(self, base_url: str, cache_dir: Path | None, *, offline: bool = False,
                 options: FetchOptions | None = None, transport: Transport | None = None,
                 immutable: bool = False, token: str | bool | None = None) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.location = self.base_url
        self.offline = offline
        self.immutable = immutable
        self.token = token
        self.cache_dir = cache_dir / hashlib.sha256(self.base_url.encode()).hexdigest()[:32] if cache_dir else None
        self._transport = transport
        self._options = options

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            from ..transport import Transport  # deferred: a local index (and a warm pull) needs no HTTP stack

            self._transport = Transport(self._options)
        return self._transport

    def _cached(self, relative: str) -> tuple[Path, Path] | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha256(relative.encode()).hexdigest()
        return self.cache_dir / f"{key}.body", self.cache_dir / f"{key}.meta"

    def _store(self, relative: str, body: bytes | None, etag: str | None) -> None:
        paths = self._cached(relative)
        if paths is None:
            return

        body_path, meta_path = paths
        body_path.parent.mkdir(parents=True, exist_ok=True)
        if body is not None:
            tmp = body_path.with_name(f".{body_path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(body)
            os.replace(tmp, body_path)
        atomic_write_text(meta_path, json.dumps({"etag": etag, "missing": body is None}))

    def _load_cached(self, relative: str) -> tuple[bytes | None, str | None, bool]:
        paths = self._cached(relative)
        if paths is None or not paths[1].exists():
            return None, None, False
        try:
            meta = json.loads(paths[1].read_text())
            body = None if meta.get("missing") else paths[0].read_bytes()
        except (OSError, ValueError):
            return None, None, False
        return body, meta.get("etag"), True

    def forget(self, relative: str) -> None:
        """Drop the cached copy of ``relative`` (a verifier refused it: the next read fetches it again)."""
        for path in self._cached(relative) or ():
            path.unlink(missing_ok=True)

    def read(self, relative: str, max_bytes: int = MAX_INDEX_FILE_BYTES) -> bytes | None:
        cached_body, etag, have_cache = self._load_cached(relative)
        if have_cache and self.immutable:
            if cached_body is not None and len(cached_body) > max_bytes:
                raise IndexFileSizeError(f"{self.base_url}{relative}: larger than {max_bytes} bytes")
            return cached_body
        if self.offline:
            if have_cache:
                return cached_body
            raise OfflineError(f"offline: index file {relative} of {self.base_url} is not cached")
        headers = {"If-None-Match": etag} if have_cache and etag else {}
        url = self.base_url + relative
        try:
            got = self.transport.fetch(url, max_bytes=max_bytes, headers=headers, token=self.token,
                                       keep=(304, 404, 410, 451))
        except SizeLimitError:
            raise IndexFileSizeError(f"{url}: larger than {max_bytes} bytes") from None
        except DownloadError as exc:
            raise DownloadError(f"cannot fetch index file {url}: {exc.message}", hint=exc.hint) from None
        if got.status == 304:
            if have_cache:
                return cached_body
            raise DownloadError(f"index file {url}: HTTP 304 to a request that named no cached copy")
        if got.status != 200:
            self._store(relative, None, got.headers.get("ETag"))
            return None
        self._store(relative, got.body, got.headers.get("ETag"))
        return got.body
