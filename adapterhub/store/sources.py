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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from .. import resources, settings
from ..errors import AuthenticationError, DownloadError, IntegrityError, NotFoundError, RetryableError
from ..manifest import FileEntry
from ..paths import safe_join
from ..transport import Deadline
from .http import HttpFetcher
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
    """A Hub repo at a pinned commit, through huggingface_hub's metadata call and our own GET.

    ``get_hf_file_metadata`` (the real client) resolves the file: it follows the Hub's relative
    redirects and tells us the commit, size, etag and where the bytes are. We check the commit is the
    pinned one and the size is the manifest's before downloading; the body then streams into our
    writer so it is hashed as it arrives (``hf_hub_download`` only checks sizes and would leave a
    second copy in its own cache). The token goes to either request only where the transport's
    :class:`~adapterhub.transport.TokenScope` allows: never to an endpoint a manifest or an index
    names, never to a CDN the Hub redirects to.
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
        from huggingface_hub import get_hf_file_metadata, hf_hub_url
        from huggingface_hub.utils import build_hf_headers

        endpoint = (self.endpoint or settings.hub_endpoint()).rstrip("/")
        url = hf_hub_url(self.repo_id, entry.path, subfolder=self.subfolder, repo_type=self.repo_type,
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
                kind = _classify_hub_error(exc)
                what = f"{self.description}: {entry.path}: metadata request failed: {type(exc).__name__}: " \
                       f"{_first_line(exc)}{withheld}"
                if kind == "auth":  # the Hub answers 401 for a private repo (or a missing one) without a token
                    raise AuthenticationError(f"{self.description}: {entry.path}: {_auth_problem(exc)} "
                                              f"({type(exc).__name__}){withheld}", hint=None) from None
                if kind == "missing" and not secret and _names(exc) & {"RepositoryNotFoundError"}:
                    # A private repository looks missing to a caller without a token, as on the Hub; the
                    # manifest pins this repository at a commit, so say how to give one.
                    raise AuthenticationError(f"{self.description}: {entry.path}: repository not found, or private "
                                              f"and no token was sent{withheld}") from None
                if kind == "missing":
                    raise NotFoundError(what) from None
                raise (RetryableError if kind == "transient" else DownloadError)(what) from None

        meta = fetcher.transport.call(head)
        if meta.commit_hash != self.revision:
            raise IntegrityError(f"{self.description}: {entry.path}: server answered for commit "
                                 f"{meta.commit_hash}, not the pinned {self.revision}")
        if meta.size is not None and meta.size != entry.size:
            raise IntegrityError(f"{self.description}: {entry.path} is {meta.size} bytes on the server, "
                                 f"the manifest says {entry.size}")
        headers = build_hf_headers(token=False, library_name="adapterhub")  # the transport adds the token
        fetcher.download(meta.location or url, writer, headers=headers, token=self.token)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


def _auth_problem(exc: BaseException) -> str:
    if getattr(getattr(exc, "response", None), "status_code", None) == 403:
        return "HTTP 403, the token has no access to this repository (gated or restricted)"
    return "HTTP 401, the repository is private (or does not exist) and no valid token was sent"


def _names(exc: BaseException) -> set[str]:
    """The class names of ``exc``'s type and bases (the client's exception types differ between versions)."""
    return {cls.__name__ for cls in type(exc).__mro__}


def _classify_hub_error(exc: BaseException) -> str:
    """``auth`` (401/403), ``missing`` (try another source), ``transient`` (retry) or ``fatal``."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return "auth"
    names = _names(exc)
    if names & {"EntryNotFoundError", "RepositoryNotFoundError", "RevisionNotFoundError",
                "RemoteEntryNotFoundError", "GatedRepoError", "DisabledRepoError"}:
        return "missing"
    if "OfflineModeIsEnabled" in names:
        return "fatal"
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        if status == 404:
            return "missing"
        return "transient" if status == 429 or status >= 500 else "fatal"
    if names & {"ConnectionError", "Timeout", "ConnectTimeout", "ReadTimeout", "TimeoutException",
                "ConnectError", "ReadError", "RemoteProtocolError", "TransportError", "OSError"}:
        return "transient"
    return "fatal"
