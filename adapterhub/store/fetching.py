"""Getting one manifest's blobs into the cache: re-check what is cached, fetch what is missing.

Split from :mod:`.pull` so that a warm pull (the view exists and its bytes are still the verified
ones) never imports the download stack: the sources, the HTTP transport, the blob writer with its
helper threads and the safetensors header check load only when some byte must be checked or moved.

Every blob is fetched through the one :class:`~adapterhub.store.writer.BlobWriter` (sha256 while
streaming, size limit, header check, fsync, then its content name), trying the sources in order.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    AdapterHubError,
    DownloadError,
    IntegrityError,
    NotFoundError,
    SizeLimitError,
    UnsafeFileError,
)
from ..manifest import FileEntry, Manifest
from ..transport import FetchOptions, TokenScope
from . import lanes
from .http import HttpFetcher
from .layout import CacheLayout
from .progress import Progress
from .reuse import verified_blob
from .room import ensure_room
from .safetensors_check import blob_check, is_safetensors_path, temp_file_check
from .sources import ContentDirSource, HttpBackedSource, LocalDirSource, Source, describe_sources, sources_for
from .writer import BlobWriter

if TYPE_CHECKING:
    from .archive import ArchivePull

PARALLEL_FILES = 4
"""Files of one adapter fetched at the same time."""


def by_digest(files: Sequence[FileEntry]) -> list[FileEntry]:
    """One entry per distinct sha256 (two paths with identical bytes share one blob): a safetensors
    entry when there is one, so its header check runs."""
    chosen: dict[str, FileEntry] = {}
    for f in files:
        if f.sha256 not in chosen or (is_safetensors_path(f.path) and not is_safetensors_path(chosen[f.sha256].path)):
            chosen[f.sha256] = f
    return list(chosen.values())


class BlobFetch:
    """The blobs of one pull of ``requested``: which are verified (``verified``: sha256 -> the stat this
    pull checked), how many bytes were fetched (``downloaded``), and the one transport (closed by
    :meth:`close`)."""

    def __init__(self, requested: Manifest, layout: CacheLayout, owner: str, *,
                 sources: list[Source] | Callable[[], Sequence[Source]] | None,
                 index_config: dict[str, Any] | None, endpoint: str | None, token: str | bool | None,
                 progress: bool | None, options: FetchOptions | None,
                 index_location: Path | str | None = None) -> None:
        self.requested = requested
        self.layout = layout
        self.owner = owner
        self.given = sources
        self.found: list[Source] | None = None
        self.index_config = index_config
        self.endpoint = endpoint
        self.token = token
        self.progress_enabled = progress
        self.options = options
        self.index_location = index_location
        self.verified: dict[str, os.stat_result] = {}
        self.downloaded = 0
        self.transport: HttpFetcher | None = None
        self.lock = threading.Lock()

    @property
    def fetcher(self) -> HttpFetcher:
        """One transport for the whole pull: the caller's options, tokens only to the user's endpoints."""
        if self.transport is None:
            self.transport = HttpFetcher(self.options, scope=TokenScope.configured([self.endpoint]))
        return self.transport

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def archive_pull(self) -> ArchivePull:
        """What :mod:`.archive` needs of this pull; the transport is still built only on first download."""
        from .archive import ArchivePull  # deferred: CLI import cost (zipfile, tarfile)

        return ArchivePull(self.requested, self.layout, self.owner,
                           lambda url, writer: self.fetcher.download(url, writer))

    def sources(self) -> list[Source]:
        if self.found is None:
            if self.given is None:
                self.found = sources_for(self.requested, index_config=self.index_config, endpoint=self.endpoint,
                                         token=self.token, fetcher=self.fetcher, index_location=self.index_location)
            else:  # caller-built HTTP sources use this pull's options unless they brought a fetcher
                given = self.given() if callable(self.given) else self.given
                self.found = [s.with_fetcher(self.fetcher) if isinstance(s, HttpBackedSource) else s
                              for s in given]
        return self.found

    def progress(self, missing: Sequence[FileEntry]) -> Progress:
        return Progress(self.progress_enabled, sum(f.size for f in missing), self.requested.id)

    # -- cached blobs ------------------------------------------------------------------------------

    def check_cached(self, files: Sequence[FileEntry]) -> list[FileEntry]:
        """Forget what was verified, hash the cached blobs of ``files`` (one entry per sha256) again and
        return those still to fetch."""
        self.verified = {}
        missing = []
        for entry in by_digest(files):
            st = self.check_cached_blob(entry)
            if st is None:
                missing.append(entry)
            else:
                self.verified[entry.sha256] = st
        return missing

    def check_cached_blob(self, entry: FileEntry) -> os.stat_result | None:
        return verified_blob(self.layout, entry.sha256, entry.size, self.owner, check=blob_check(entry.path))

    # -- fetching ----------------------------------------------------------------------------------

    def fetch(self, entry: FileEntry, progress: Progress, sources: Sequence[Source] | None = None) -> None:
        attempts: list[tuple[str, AdapterHubError]] = []
        sources = self.sources() if sources is None else sources
        for source in sources:
            where = f"{self.requested.id}: {entry.path}"
            try:
                self.fetch_from(source, entry, where, progress)
                return
            except (NotFoundError, DownloadError, IntegrityError, UnsafeFileError) as exc:
                attempts.append((source.description, exc))
        raise combined_error(self.requested, entry, attempts, sources)

    def fetch_from(self, source: Source, entry: FileEntry, where: str, progress: Progress) -> None:
        def writer() -> BlobWriter:
            return BlobWriter(self.layout, entry.sha256, entry.size, where=where,
                              validator=temp_file_check(entry.path, entry.size), on_progress=progress.callback)

        w = writer()
        if w.complete:  # adopted a finished download of a dead process: maybe nothing to fetch
            try:
                w.commit()
                self.keep(entry, w, where)
                return
            except IntegrityError:
                w = writer()
        with w:
            before = w.offset
            source.fetch(entry, w)
            fetched = w.offset - before
            w.commit()
        self.keep(entry, w, where)
        with self.lock:
            self.downloaded += max(fetched, 0)

    def keep(self, entry: FileEntry, w: BlobWriter, where: str) -> None:
        """Remember the blob ``w`` published, or check the copy another process published first."""
        st = w.published or self.check_cached_blob(entry)
        if st is None:
            raise IntegrityError(f"{where}: the cached blob was replaced by other bytes while ours was written")
        with self.lock:
            self.verified[entry.sha256] = st

    def fetch_all(self, missing: Sequence[FileEntry]) -> None:
        """Fetch the missing files, up to ``PARALLEL_FILES`` at a time: the largest on this thread, the
        others on helper threads (:mod:`.lanes`, kept by the process).

        An adapter is usually one large weights file and a few small JSON files; fetching them side
        by side hides the small files' round trips behind the large transfer, and keeping the large
        one on the calling thread spares its every chunk a thread hand-off. The first failure (the
        largest file's first) is raised after the other transfers finished (their blobs are verified
        and stay useful).
        """
        ensure_room(self.layout.blobs, sum(f.size for f in missing), f"{self.requested.id}: the download")
        progress = self.progress(missing)
        try:
            ordered = sorted(missing, key=lambda f: f.size, reverse=True)
            if len(ordered) <= 1:
                for entry in ordered:
                    self.fetch(entry, progress)
                return
            self.sources()  # build the source list once, before the helpers share it
            from concurrent.futures import wait

            helpers = [lanes.take() for _ in range(min(PARALLEL_FILES - 1, len(ordered) - 1))]
            futures = [helpers[i % len(helpers)].submit(self.fetch, entry, progress)
                       for i, entry in enumerate(ordered[1:])]
            errors: list[BaseException] = []
            try:
                self.fetch(ordered[0], progress)
            except Exception as exc:  # raised once the others are done, as theirs are
                errors.append(exc)
            finally:
                wait(futures)
                for lane in helpers:
                    lanes.give_back(lane)
            errors += [f.exception() for f in futures if f.exception() is not None]
            if errors:
                raise errors[0]
        finally:
            progress.close()

    def fill_from_disk(self, missing: list[FileEntry]) -> list[FileEntry]:
        """Offline, files may still come from sources on this disk (the bundled mirror, a directory
        registry's mirror, a local directory): no network is involved. Returns what is still missing."""
        local = [s for s in self.sources() if isinstance(s, (ContentDirSource, LocalDirSource))]
        if not local:
            return missing
        progress = self.progress(missing)
        try:
            for entry in missing:
                with contextlib.suppress(NotFoundError):
                    self.fetch(entry, progress, local)
        finally:
            progress.close()
        return [f for f in missing if f.sha256 not in self.verified]


def combined_error(manifest: Manifest, entry: FileEntry, attempts: list[tuple[str, AdapterHubError]],
                   sources: Sequence[Source]) -> AdapterHubError:
    """One error for a file no source could give: the most serious kind any source raised, with each
    source's reason."""
    what = f"{manifest.id}: could not get {entry.path} ({entry.size} bytes, sha256 {entry.sha256[:12]}…)"
    if not attempts:
        return NotFoundError(f"{what}: the manifest lists no usable source",
                             hint="add an hf/https source to the manifest or a mirror to the index config")
    detail = "; ".join(f"[{src}] {exc}" for src, exc in attempts)
    for kind in (UnsafeFileError, SizeLimitError, IntegrityError, DownloadError):
        for _, exc in attempts:
            if isinstance(exc, kind):
                return type(exc)(f"{what}: {detail}")
    return NotFoundError(f"{what}: not found on any source ({describe_sources(sources)}): {detail}")
