"""One :class:`Source` protocol and its backends: Hub, HTTP(S), local directory, bundled mirror.

Files are content-addressed, so a source is only asked "put the bytes of this file entry into this
writer"; the writer decides whether they are the right bytes. Any source may therefore serve any
file, and a pull simply tries its sources in order. Sources raise :class:`NotFoundError` when they do
not have a file (try the next one) and :class:`DownloadError` when the transfer failed.

Nothing here imports ``requests`` or ``huggingface_hub`` at module level: a warm pull never fetches,
so it should not pay for those imports.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .. import resources, settings
from ..errors import (
    AuthenticationError,
    DownloadError,
    IntegrityError,
    NotFoundError,
    RetryableError,
)
from ..manifest import BundledSource, FileEntry, HfSource, HttpsSource, Manifest
from ..paths import safe_join
from ..transport import Deadline, TokenScope, header_int
from .http import HttpFetcher
from .hub_repo import auth_problem, classify_hub_error, first_line, names_of
from .writer import BlobWriter

LOCAL_CHUNK = 1 << 20


@runtime_checkable
class Source(Protocol):
    """Something that can produce a file's bytes."""

    @property
    def description(self) -> str:
        """Where the bytes come from, for messages (``hf:org/repo@abc123``, a URL, a directory)."""
        ...

    def fetch(self, entry: FileEntry, writer: BlobWriter) -> None:
        """Stream ``entry``'s bytes into ``writer`` (which may already hold a verified prefix)."""
        ...


# --- local files ---------------------------------------------------------------------------------


def _copy_into(path: Path, writer: BlobWriter) -> None:
    try:
        fh = open(path, "rb", buffering=0)  # noqa: SIM115
    except (FileNotFoundError, NotADirectoryError):
        raise NotFoundError(f"{path}: not found") from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if writer.offset > size:
            writer.reset()
        fh.seek(writer.offset)
        while True:
            chunk = fh.read(LOCAL_CHUNK)
            if not chunk:
                return
            writer.write(chunk)


@dataclass(frozen=True)
class LocalDirSource:
    """A directory holding the files by their manifest paths (an unpacked adapter, a checkout)."""

    root: Path

    @property
    def description(self) -> str:
        return f"dir:{self.root}"

    def fetch(self, entry: FileEntry, writer: BlobWriter) -> None:
        _copy_into(safe_join(self.root, entry.path), writer)


@dataclass(frozen=True)
class ContentDirSource:
    """A directory of blobs named by their sha256 hex (the bundled mirror, an rsync'd cache)."""

    root: Path
    label: str = "mirror"

    @property
    def description(self) -> str:
        return f"{self.label}:{self.root}"

    def fetch(self, entry: FileEntry, writer: BlobWriter) -> None:
        for candidate in (self.root / entry.sha256, self.root / "sha256" / entry.sha256):
            if candidate.is_file():
                _copy_into(candidate, writer)
                return
        raise NotFoundError(f"{self.root}: no blob {entry.sha256}")


def bundled_source() -> ContentDirSource:
    """The sample adapters' bytes shipped inside the package."""
    return ContentDirSource(resources.bundled_mirror_dir(), "bundled")


# --- HTTP ----------------------------------------------------------------------------------------


class HttpBackedSource:
    """Sources that download over HTTP. ``fetcher`` None means "the pull's": :func:`~adapterhub.store.pull`
    binds its own (built from the caller's :class:`FetchOptions` and token scope) through
    :meth:`with_fetcher`; used on its own, the source builds one from the environment."""

    fetcher: HttpFetcher | None

    def with_fetcher(self, fetcher: HttpFetcher):
        """This source using ``fetcher``, unless it was built with one of its own."""
        return self if self.fetcher is not None else dataclasses.replace(self, fetcher=fetcher)  # type: ignore[type-var]

    def _fetcher(self) -> HttpFetcher:
        if self.fetcher is None:
            self.fetcher = HttpFetcher()
        return self.fetcher


@dataclass
class HttpSource(HttpBackedSource):
    """Files under a base URL by path (``base_url + path``), e.g. a manifest's ``https`` source."""

    base_url: str
    fetcher: HttpFetcher | None = field(default=None, repr=False)

    @property
    def description(self) -> str:
        return self.base_url

    def fetch(self, entry: FileEntry, writer: BlobWriter) -> None:
        from urllib.parse import quote

        base = self.base_url if self.base_url.endswith("/") else self.base_url + "/"
        self._fetcher().download(base + quote(entry.path), writer)


@dataclass
class HttpMirrorSource(HttpBackedSource):
    """A content-addressed HTTP mirror: ``{sha256}`` in the template, or ``<base>/<sha256>``."""

    template: str
    fetcher: HttpFetcher | None = field(default=None, repr=False)

    @property
    def description(self) -> str:
        return self.template

    def url_for(self, sha256: str) -> str:
        if "{sha256}" in self.template:
            return self.template.replace("{sha256}", sha256)
        return self.template.rstrip("/") + "/" + sha256

    def fetch(self, entry: FileEntry, writer: BlobWriter) -> None:
        self._fetcher().download(self.url_for(entry.sha256), writer)


# --- the Hugging Face Hub --------------------------------------------------------------------------


@dataclass
class HubSource(HttpBackedSource):
    """A Hub repo at a pinned commit, through one GET of the resolve URL (or, for a file stored in
    Xet, the client's ``xet_get``: see :meth:`stream`).

    The Hub's answer to that GET carries what ``huggingface_hub``'s metadata call reads from its HEAD
    (the commit, the size, whether the file is in Xet storage), so one request does the work of two:
    we check the commit is the pinned one and the size is the manifest's before any byte is written;
    the body then streams into our writer so it is hashed as it arrives (``hf_hub_download`` only
    checks sizes and would leave a second copy in its own cache). A server whose answer lacks the
    commit header, and any failed GET, get the client's own metadata call, whose answer (and typed
    errors: auth, missing file) decide. The token goes to either request only where the
    transport's :class:`~adapterhub.transport.TokenScope` allows: never to an endpoint a manifest or
    an index names, never to a CDN the Hub redirects to.
    """

    repo_id: str
    revision: str
    subfolder: str | None = None
    endpoint: str | None = None
    token: str | bool | None = None
    repo_type: str = "model"
    fetcher: HttpFetcher | None = field(default=None, repr=False)

    @property
    def description(self) -> str:
        return f"hf:{self.repo_id}@{self.revision[:12]} ({self.endpoint or settings.hub_endpoint()})"

    def fetch(self, entry: FileEntry, writer: BlobWriter) -> None:
        self.stream(entry.path, entry.size, writer)

    def stream(self, path: str, size: int, writer: Sink) -> None:
        """Stream the file at ``path`` (under the subfolder) of size ``size`` into ``writer``.

        The Hub's answer to the GET (the response ``get_hf_file_metadata`` would read: the first one
        that is not a redirect within the Hub) is checked before its redirect is followed or its body
        read: the pinned commit, the manifest's size, and whether the file is in Xet storage. A file
        in Xet goes through the client's ``xet_get`` (the only way to read Xet storage; the redirect
        to the Xet bridge is not followed) into a scratch file next to the writer's, then through the
        writer, which checks it; every other file streams from the GET into the writer.
        """
        from huggingface_hub import get_hf_file_metadata, hf_hub_url
        from huggingface_hub.utils import build_hf_headers, parse_xet_file_data_from_response

        endpoint = (self.endpoint or settings.hub_endpoint()).rstrip("/")
        url = hf_hub_url(self.repo_id, path, subfolder=self.subfolder, repo_type=self.repo_type,
                         revision=self.revision, endpoint=endpoint)
        if not url.startswith(endpoint + "/"):
            # hf_hub_url only swaps the endpoint into URLs built on constants.ENDPOINT (read at import).
            url = endpoint + url[url.index("/", len("https://")):]
        fetcher = self._fetcher()
        scope = fetcher.transport.scope
        secret = scope.token_for(url, self.token)
        withheld = f" (no token sent: {scope.refusal(url)})" if secret is None and self.token is not False \
            and scope.refusal(url) else ""

        def head(deadline: Deadline):
            try:
                return get_hf_file_metadata(url, token=secret or False, endpoint=endpoint,
                                            timeout=max(0.001, min(fetcher.options.read_timeout, deadline.remaining())))
            except Exception as exc:  # the client's exception types differ between 0.x and 1.x+
                kind = classify_hub_error(exc)
                what = f"{self.description}: {path}: metadata request failed: {type(exc).__name__}: " \
                       f"{first_line(exc)}{withheld}"
                if kind == "auth":  # the Hub answers 401 for a private repo (or a missing one) without a token
                    raise AuthenticationError(f"{self.description}: {path}: {auth_problem(exc)} "
                                              f"({type(exc).__name__}){withheld}", hint=None) from None
                if kind == "missing" and not secret and names_of(exc) & {"RepositoryNotFoundError"}:
                    # A private repository looks missing to a caller without a token, as on the Hub; the
                    # manifest pins this repository at a commit, so say how to give one.
                    raise AuthenticationError(f"{self.description}: {path}: repository not found, or private "
                                              f"and no token was sent{withheld}") from None
                if kind == "missing":
                    raise NotFoundError(what) from None
                raise (RetryableError if kind == "transient" else DownloadError)(what) from None

        def metadata() -> Any:
            """The client's metadata answer, checked: for the pinned commit and the manifest's size."""
            meta = fetcher.transport.call(head)
            check(meta.commit_hash, meta.size)
            return meta

        def check(commit: str | None, served_size: int | None) -> None:
            if commit != self.revision:
                shown = commit if commit is None or len(commit) <= 64 else f"{commit[:64]!r}... ({len(commit)} chars)"
                raise IntegrityError(f"{self.description}: {path}: server answered for commit "
                                     f"{shown}, not the pinned {self.revision}")
            if served_size is not None and served_size != size:
                raise IntegrityError(f"{self.description}: {path} is {served_size} bytes on the server, "
                                     f"the manifest says {size}")

        def on_answer(response: Any) -> None:
            """The Hub's answer to the GET, before its body or its redirect: route and check it."""
            if response.status_code >= 400:
                return  # the download raises; the metadata call then says why (below)
            commit = response.headers.get("X-Repo-Commit")
            if not commit:  # not the Hub's headers: the client's own metadata call decides
                xet = getattr(metadata(), "xet_file_data", None)
            else:
                linked = response.headers.get("X-Linked-Size") or (
                    response.headers.get("Content-Length") if response.status_code == 200 else None)
                check(commit, header_int(linked))
                xet = parse_xet_file_data_from_response(response, endpoint=endpoint)
            if xet is not None:
                raise _XetStored(xet)

        headers = build_hf_headers(token=False, library_name="adapterhub")  # the transport adds the token
        try:
            fetcher.download(url, writer, headers=headers, token=self.token, on_answer=on_answer)
            return
        except _XetStored as stored:
            xet_file_data = stored.xet_file_data
        except (DownloadError, NotFoundError):
            # A failed GET: the metadata call says more (auth, missing file, wrong commit), and a file
            # in Xet is read through xet_get whatever its GET did. What the writer refuses (wrong
            # bytes, no room on the disk) is not the transfer's fault and is raised as it is.
            xet_file_data = getattr(metadata(), "xet_file_data", None)
            if xet_file_data is None:
                raise
        # xet_get asks the answer's refresh route for a Xet read token, sending these headers: the user's
        # token goes there only where the token rule allows (the Hub's own route is on the endpoint).
        route_secret = scope.token_for(xet_file_data.refresh_route, self.token)
        _xet_into(xet_file_data, writer, build_hf_headers(token=route_secret or False, library_name="adapterhub"),
                  path)


class _XetStored(Exception):
    """The Hub says the file is in Xet storage: read it with ``xet_get``, not the GET."""

    def __init__(self, xet_file_data: Any) -> None:
        super().__init__("stored in Xet")
        self.xet_file_data = xet_file_data


class Sink(Protocol):
    """What a download streams into: a :class:`BlobWriter`, or a checked buffer (store/hub_repo.py)."""

    offset: int

    def write(self, data: bytes | memoryview) -> None: ...

    def reset(self) -> None: ...


def _xet_into(xet_file_data, writer: Sink, headers: dict, path: str) -> None:
    """Download a Xet-stored file with the client's ``xet_get`` into a scratch file, then feed it to
    ``writer`` (which checks every byte). ``xet_get`` writes only to a path, so the bytes pass through
    the disk twice; Xet itself checks each chunk against its content hash on the way in.
    """
    import tempfile

    from huggingface_hub.file_download import xet_get  # public in the module, not re-exported

    writer.reset()
    with tempfile.TemporaryDirectory(prefix="adapterhub-xet-") as scratch:
        target = Path(scratch) / "file"
        try:
            xet_get(incomplete_path=target, xet_file_data=xet_file_data, headers=headers,
                    displayed_filename=path)
        except Exception as exc:  # hf_xet's errors are its own types
            raise DownloadError(f"{path}: Xet download failed: {type(exc).__name__}: {first_line(exc)}") from None
        _copy_into(target, writer)  # type: ignore[arg-type]


def sources_for(manifest: Manifest, *, index_config: dict[str, Any] | None = None, endpoint: str | None = None,
                token: str | bool | None = None, fetcher: HttpFetcher | None = None,
                index_location: Path | str | None = None) -> list[Source]:
    """The manifest's own sources in order, then the index's mirrors (duplicates dropped).

    ``bundled`` means the mirror shipped with the index that listed the manifest, then the package's own:
    ``<index dir>/mirror`` for a local index (a registry made by ``adapterhub publish --to``), or
    ``<index url>/mirror/<sha256>`` for the same directory served over HTTP.

    Endpoints named here by the manifest or the index config only say where to look: the token goes
    to none of them unless the user configured it (``endpoint`` is the user's own ``--endpoint``).
    """
    fetcher = fetcher or HttpFetcher(scope=TokenScope.configured([endpoint]))

    def bundled() -> list[Source]:
        package = bundled_source()
        if isinstance(index_location, Path):
            local = index_location / "mirror"
            if local.is_dir() and local.resolve() != package.root.resolve():
                return [ContentDirSource(local, "index mirror"), package]
        elif isinstance(index_location, str):
            return [HttpMirrorSource(index_location.rstrip("/") + "/mirror/{sha256}", fetcher=fetcher), package]
        return [package]

    artifacts = (index_config or {}).get("artifacts") or {}
    hub_default = endpoint or artifacts.get("hf_endpoint")
    out: list[Source] = []
    for src in manifest.sources or ():
        if isinstance(src, HfSource):
            out.append(HubSource(src.repo_id, src.revision, src.subfolder,
                                 endpoint or src.endpoint or hub_default, token, fetcher=fetcher))
        elif isinstance(src, HttpsSource):
            out.append(HttpSource(src.base_url, fetcher=fetcher))
        elif isinstance(src, BundledSource):
            out.extend(bundled())
        # ArchiveSource is not a per-file source; see adapterhub.store.archive.
    for mirror in artifacts.get("mirrors") or ():
        out.extend(bundled() if mirror == "bundled" else [HttpMirrorSource(mirror, fetcher=fetcher)])
    unique: list[Source] = []
    for s in out:
        if not any(type(s) is type(u) and s.description == u.description for u in unique):
            unique.append(s)
    return unique


def describe_sources(sources: Sequence[Source]) -> str:
    return ", ".join(s.description for s in sources) or "(none)"
