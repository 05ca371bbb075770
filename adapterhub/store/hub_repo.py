"""A Hub repository as a pull sees it: a revision pinned to a commit, its files with the Hub's own hashes.

The Hub publishes a hash for every file of a commit (the tree / paths-info API): the LFS ``sha256`` of
a large file, the git blob ``sha1`` (``oid``) of a small one that lives in git itself. A pull checks
every byte against that hash as it arrives, like every other source, and refuses a file the listing
gives no checkable hash for (``oid`` of an LFS file is the sha1 of its *pointer*, not of the bytes).

All calls go through ``huggingface_hub`` (the stock client), imported only here, when a pull really
goes to the network. The token goes to the endpoint only where :class:`~adapterhub.transport.TokenScope`
allows it.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .. import settings
from ..errors import (
    AdapterHubError,
    AuthenticationError,
    DownloadError,
    IntegrityError,
    NotFoundError,
    OfflineError,
    RetryableError,
    SizeLimitError,
    UnsafePathError,
)
from ..names import COMMIT_PATTERN
from ..paths import case_collisions, path_problem
from ..transport import TokenScope
from .layout import MAX_FILE_SIZE, VIEW_MARKER

_SHA1_RE = re.compile(r"[0-9a-f]{40}")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
MAX_GIT_BLOB = 64 << 20
"""Largest file accepted with only a git blob sha1 (the Hub keeps files over 10 MB in LFS/Xet): these
are buffered in memory, because their sha256 (the cache key) is known only after they arrived."""
MAX_REPO_FILES = 10_000
"""Most files a pull lists under one repo folder: an adapter has a handful; more is a hostile or a whole
training-run repo (pass the subfolder holding the adapter)."""

T = TypeVar("T")


_TEMPLATE_TAIL = "/{repo_id}/resolve/{revision}/{filename}"
_ROUTING = threading.Condition()
_routing: dict[str, Any] = {"endpoint": None, "users": 0}


def _client_url_state() -> list[tuple[Any, str, str]]:
    """The client's module attributes that put an endpoint into URLs: ``constants.ENDPOINT`` (0.x parses
    repo URLs against it; every version swaps ``endpoint=`` only into URLs that start with it) and the
    resolve-URL template (0.x's ``file_download`` holds its own copy, taken at import)."""
    from huggingface_hub import constants, file_download

    state = [(constants, "ENDPOINT", ""), (constants, "HUGGINGFACE_CO_URL_TEMPLATE", _TEMPLATE_TAIL)]
    if isinstance(getattr(file_download, "HUGGINGFACE_CO_URL_TEMPLATE", None), str):
        state.append((file_download, "HUGGINGFACE_CO_URL_TEMPLATE", _TEMPLATE_TAIL))
    return state


@contextlib.contextmanager
def client_routed_to(endpoint: str) -> Iterator[None]:
    """Every URL ``huggingface_hub`` builds inside this block starts with ``endpoint``.

    The client reads ``HF_ENDPOINT`` once, at import, into module constants; ``endpoint=`` arguments are
    swapped into URLs only while those constants agree with each other. Code that changes
    ``constants.ENDPOINT`` later (0.x needs it changed to publish anywhere but the default Hub) silently
    sends downloads, and the token, to huggingface.co. This block points every such constant at
    ``endpoint`` and restores them after; blocks for different endpoints take turns (process-wide state).
    """
    from huggingface_hub import hf_hub_url

    endpoint = endpoint.rstrip("/")
    wanted = [(module, name, endpoint + tail) for module, name, tail in _client_url_state()]
    with _ROUTING:
        while _routing["users"] and _routing["endpoint"] != endpoint:
            _ROUTING.wait()
        if not _routing["users"]:
            saved = [(module, name, getattr(module, name)) for module, name, _ in wanted]
            for module, name, value in wanted:
                setattr(module, name, value)
            _routing.update(endpoint=endpoint, saved=saved)
        _routing["users"] += 1
    try:
        probe = hf_hub_url("org/repo", "file", revision="main", endpoint=endpoint)
        if not probe.startswith(endpoint + "/"):
            raise DownloadError(f"huggingface_hub builds URLs on {probe.split('/org/repo/')[0]}, not on {endpoint}; "
                                "nothing was sent", hint="set HF_ENDPOINT before starting Python")
        yield
    finally:
        with _ROUTING:
            _routing["users"] -= 1
            if not _routing["users"]:
                for module, name, value in _routing.pop("saved"):
                    setattr(module, name, value)
                _routing["endpoint"] = None
                _ROUTING.notify_all()


@dataclass(frozen=True)
class HubRepo:
    """Where a repository lives and how to authenticate to it."""

    repo_id: str
    repo_type: str = "model"
    endpoint: str | None = None
    token: str | bool | None = None

    @property
    def base_url(self) -> str:
        return (self.endpoint or settings.hub_endpoint()).rstrip("/")

    def secret(self, scope: TokenScope | None = None) -> str | None:
        """The token this endpoint may receive (None: send none)."""
        scope = scope or TokenScope.configured([self.endpoint])
        return scope.token_for(self.base_url + "/", self.token)

    def api(self, scope: TokenScope | None = None) -> Any:
        """An ``HfApi`` bound to this endpoint and the token it may receive."""
        from huggingface_hub import HfApi  # deferred: only a pull that goes to the network pays for it

        return HfApi(endpoint=self.base_url, token=self.secret(scope) or False, library_name="adapterhub")


@dataclass(frozen=True)
class RepoSnapshot:
    """A revision resolved to its commit, with what the repo card says (``cardData``, ``library_name``)."""

    commit: str
    card_data: dict[str, Any] | None = None
    library_name: str | None = None


@dataclass(frozen=True)
class HubFile:
    """One file of a commit and the hash the Hub publishes for it."""

    path: str
    """Path in the repository (including any subfolder)."""
    size: int
    git_oid: str | None = None
    """The git blob sha1 of what git stores: the bytes for a plain file, the pointer for an LFS one."""
    lfs_sha256: str | None = None
    xet_hash: str | None = None

    @property
    def is_lfs(self) -> bool:
        return self.lfs_sha256 is not None

    def check(self) -> HubFileCheck:
        """A streaming check of this file's bytes against the Hub's hash."""
        return HubFileCheck(self)


def _hub_error(description: str, exc: BaseException, token_sent: bool) -> Exception:
    """The typed error for a failed client call (the client's exception types differ between versions)."""
    kind = classify_hub_error(exc)
    what = f"{description}: {type(exc).__name__}: {first_line(exc)}"
    if kind == "auth":
        return AuthenticationError(f"{description}: {auth_problem(exc)}")
    if kind == "missing" and not token_sent and names_of(exc) & {"RepositoryNotFoundError"}:
        return AuthenticationError(f"{description}: repository not found, or private and no token was sent")
    if kind == "missing":
        return NotFoundError(what)
    if "OfflineModeIsEnabled" in names_of(exc):
        return OfflineError(what, hint="unset HF_HUB_OFFLINE / ADAPTERHUB_OFFLINE to reach the Hub")
    return (RetryableError if kind == "transient" else DownloadError)(what)


def client_call(repo: HubRepo, description: str, call: Callable[[Any], T], scope: TokenScope | None = None) -> T:
    """Run ``call(api)`` and turn the client's exceptions into ours."""
    scope = scope or TokenScope.configured([repo.endpoint])
    api = repo.api(scope)
    try:
        return call(api)
    except AdapterHubError:
        raise
    except Exception as exc:  # the client's exception types differ between 0.x, 1.x and 2.x
        raise _hub_error(description, exc, token_sent=bool(api.token)) from None


def resolve_revision(repo: HubRepo, revision: str | None = None, *, scope: TokenScope | None = None) -> RepoSnapshot:
    """Resolve ``revision`` (a branch, tag or commit; None: the default branch) to a 40-hex commit."""
    where = f"hf:{repo.repo_id}@{revision or 'main'} ({repo.base_url})"
    info = client_call(repo, f"{where}: resolving the revision",
                       lambda api: api.repo_info(repo.repo_id, revision=revision, repo_type=repo.repo_type),
                       scope)
    commit = getattr(info, "sha", None)
    if not isinstance(commit, str) or not COMMIT_PATTERN.fullmatch(commit):
        raise DownloadError(f"{where}: the server named no 40-hex commit for this revision (got {commit!r})")
    if revision is not None and COMMIT_PATTERN.fullmatch(revision) and commit != revision:
        raise IntegrityError(f"{where}: the server answered for commit {commit}, not the requested {revision}")
    card = getattr(info, "card_data", None) or getattr(info, "cardData", None)
    if card is not None and not isinstance(card, dict):
        card = card.to_dict() if hasattr(card, "to_dict") else dict(card)
    library = getattr(info, "library_name", None)
    return RepoSnapshot(commit, card or None, library if isinstance(library, str) else None)


def _hub_file(item: Any, where: str) -> HubFile:
    path, size = item.path, item.size
    problem = path_problem(path) if isinstance(path, str) else "not a string"
    if problem is None and VIEW_MARKER in path.split("/")[-1]:
        problem = f"is named like the cache's own {VIEW_MARKER}"
    if problem:
        raise UnsafePathError(f"{where}: the listing names the file {str(path)[:300]!r}, which {problem}; "
                              "refusing the repository before anything is fetched",
                              hint="the server's listing is hostile or broken; nothing was stored")
    if type(size) is not int or not 0 <= size <= MAX_FILE_SIZE:
        raise IntegrityError(f"{where}: {path}: the listing gives no valid size ({size!r}; an integer in "
                             f"0..{MAX_FILE_SIZE} bytes)")
    lfs = getattr(item, "lfs", None)
    sha256 = None
    if lfs is not None:
        sha256 = lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
        if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
            raise IntegrityError(f"{where}: {path} is an LFS file listed without a valid sha256 ({sha256!r}); "
                                 "refusing a file that cannot be checked")
    oid = getattr(item, "blob_id", None)
    if not (isinstance(oid, str) and _SHA1_RE.fullmatch(oid)):
        oid = None
    if sha256 is None and oid is None:
        raise IntegrityError(f"{where}: {path} is listed with neither an LFS sha256 nor a git blob sha1; "
                             "refusing a file that cannot be checked",
                             hint="the server's tree listing is incomplete; nothing was stored")
    if sha256 is None and size > MAX_GIT_BLOB:
        raise SizeLimitError(f"{where}: {path} ({size} bytes) is checked only by its git blob sha1, and is "
                             f"larger than the {MAX_GIT_BLOB} bytes accepted that way")
    return HubFile(path, size, oid, sha256, getattr(item, "xet_hash", None))


def list_files(repo: HubRepo, commit: str, subfolder: str | None = None, *,
               scope: TokenScope | None = None) -> list[HubFile]:
    """Every file under ``subfolder`` at ``commit``, each with the hash the Hub publishes for it.

    A file listed with no checkable hash raises :class:`IntegrityError`, and so does a listing the
    client cannot parse (a file entry without ``oid``).
    """
    if not COMMIT_PATTERN.fullmatch(commit):
        raise ValueError(f"list_files needs a 40-hex commit, not {commit!r}")
    where = f"hf:{repo.repo_id}@{commit[:12]}"

    def listing(api: Any) -> list[Any]:
        try:
            return list(api.list_repo_tree(repo.repo_id, path_in_repo=subfolder or None, recursive=True,
                                           revision=commit, repo_type=repo.repo_type))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:  # an entry the client cannot parse
            raise IntegrityError(f"{where}: the tree listing has a file entry the client cannot read "
                                 f"({type(exc).__name__}: {first_line(exc)}; no oid, size or lfs sha256?); "
                                 "refusing a file that cannot be checked") from None

    items = client_call(repo, f"{where}: listing files", listing, scope)
    files = [_hub_file(item, where) for item in items if type(item).__name__ != "RepoFolder"]
    if len(files) > MAX_REPO_FILES:
        raise SizeLimitError(f"{where}: {len(files)} files under {subfolder or 'the repository root'!r}, more "
                             f"than the {MAX_REPO_FILES} an adapter pull accepts",
                             hint="pass the subfolder that holds the adapter (hf:ORG/REPO:DIR)")
    _check_unique([f.path for f in files], where)
    outside = [f.path for f in files if subfolder and not f.path.startswith(subfolder.rstrip("/") + "/")]
    if outside:
        raise IntegrityError(f"{where}: the listing of {subfolder!r} names files outside it ({outside[0]!r}); "
                             "refusing a listing that does not describe the folder asked for")
    if not files:
        raise NotFoundError(f"{where}: no files under {subfolder or 'the repository root'!r}")
    return sorted(files, key=lambda f: f.path)


def _check_unique(paths: list[str], where: str) -> None:
    """:class:`UnsafePathError` when the listing names a file twice, or two that differ only in case (one
    file on a case-insensitive disk: which bytes a view holds would depend on the OS)."""
    seen: set[str] = set()
    for path in paths:
        if path in seen:
            raise UnsafePathError(f"{where}: the listing names {path!r} twice; refusing a listing that does not "
                                  "say which bytes the file holds")
        seen.add(path)
    clashes = case_collisions(sorted(seen))
    if clashes:
        first, second = clashes[0]
        raise UnsafePathError(f"{where}: the listing names {first!r} and {second!r}, which differ only in case "
                              "(one file on a case-insensitive disk); refusing the repository")


def file_info(repo: HubRepo, commit: str, path: str, *, scope: TokenScope | None = None) -> HubFile:
    """One file of a commit with its hash (``paths-info``), without listing the whole repository."""
    where = f"hf:{repo.repo_id}@{commit[:12]}"

    def info(api: Any) -> list[Any]:
        try:
            return list(api.get_paths_info(repo.repo_id, [path], revision=commit, repo_type=repo.repo_type))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise IntegrityError(f"{where}: the paths-info entry of {path} cannot be read ({type(exc).__name__}: "
                                 f"{first_line(exc)}; no oid, size or lfs sha256?); refusing a file that cannot be "
                                 "checked") from None

    found = [i for i in client_call(repo, f"{where}: {path}: paths-info", info, scope)
             if type(i).__name__ != "RepoFolder" and i.path == path]
    if not found:
        raise NotFoundError(f"{where}: no file {path}")
    return _hub_file(found[0], where)


@dataclass
class HubFileCheck:
    """Checks bytes against the Hub's hash while they arrive, and yields their sha256 for the manifest.

    LFS files are checked by their sha256; plain files by the git blob sha1
    (``sha1(b"blob <size>\\0" + content)``), which needs the listed size up front.
    """

    file: HubFile
    received: int = 0
    _sha256: Any = field(default_factory=hashlib.sha256, repr=False)
    _sha1: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.file.is_lfs:
            self._sha1 = hashlib.sha1(b"blob %d\0" % self.file.size, usedforsecurity=False)

    def update(self, data: bytes | memoryview) -> None:
        self.received += len(data)
        if self.received > self.file.size:
            raise SizeLimitError(f"{self.file.path}: more than the {self.file.size} bytes the Hub lists")
        self._sha256.update(data)
        if self._sha1 is not None:
            self._sha1.update(data)

    def reset(self) -> None:
        self.received = 0
        self._sha256 = hashlib.sha256()
        self.__post_init__()

    def finish(self) -> str:
        """The sha256 of the bytes, once size and the Hub's hash matched; else :class:`IntegrityError`."""
        name = self.file.path
        if self.received != self.file.size:
            raise IntegrityError(f"{name}: got {self.received} bytes, the Hub lists {self.file.size}")
        digest = self._sha256.hexdigest()
        if self.file.is_lfs:
            if digest != self.file.lfs_sha256:
                raise IntegrityError(f"{name}: sha256 is {digest}, the Hub's LFS hash is {self.file.lfs_sha256}",
                                     hint="the server sent other bytes than it lists; nothing was stored")
            return digest
        sha1 = self._sha1.hexdigest()
        if sha1 != self.file.git_oid:
            raise IntegrityError(f"{name}: git blob sha1 is {sha1}, the Hub lists {self.file.git_oid}",
                                 hint="the server sent other bytes than it lists; nothing was stored")
        return digest


class MemorySink:
    """A writer-like buffer for a small plain file (see :data:`MAX_GIT_BLOB`): the HTTP download code
    streams into it as into a :class:`~adapterhub.store.writer.BlobWriter`, checked as bytes arrive."""

    def __init__(self, file: HubFile, where: str = "") -> None:
        self.check = file.check()
        self.size: int | None = file.size
        self.limit = file.size
        self.where = where or file.path
        self.offset = 0
        self._chunks: list[bytes] = []

    def write(self, data: bytes | memoryview) -> None:
        if self.offset + len(data) > self.limit:
            raise SizeLimitError(f"{self.where}: the source sent more than the {self.limit} bytes the Hub lists")
        self.check.update(data)
        self._chunks.append(bytes(data))
        self.offset += len(data)

    def reset(self) -> None:
        self.check.reset()
        self._chunks.clear()
        self.offset = 0

    @property
    def complete(self) -> bool:
        return self.offset == self.size

    def finish(self) -> tuple[bytes, str]:
        """The verified bytes and their sha256."""
        return b"".join(self._chunks), self.check.finish()


# --- the client's errors -----------------------------------------------------------------------------


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


def auth_problem(exc: BaseException) -> str:
    if getattr(getattr(exc, "response", None), "status_code", None) == 403:
        return "HTTP 403, the token has no access to this repository (gated or restricted)"
    return "HTTP 401, the repository is private (or does not exist) and no valid token was sent"


def names_of(exc: BaseException) -> set[str]:
    """The class names of ``exc``'s type and bases (the client's exception types differ between versions)."""
    return {cls.__name__ for cls in type(exc).__mro__}


def classify_hub_error(exc: BaseException) -> str:
    """``auth`` (401/403), ``missing`` (try another source), ``transient`` (retry) or ``fatal``."""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return "auth"
    names = names_of(exc)
    if names & {"EntryNotFoundError", "RepositoryNotFoundError", "RevisionNotFoundError",
                "RemoteEntryNotFoundError", "GatedRepoError", "DisabledRepoError"}:
        return "missing"
    if "OfflineModeIsEnabled" in names:
        return "fatal"
    if isinstance(status, int):
        if status == 404:
            return "missing"
        return "transient" if status == 429 or status >= 500 else "fatal"
    if names & {"ConnectionError", "Timeout", "ConnectTimeout", "ReadTimeout", "TimeoutException",
                "ConnectError", "ReadError", "RemoteProtocolError", "TransportError", "OSError"}:
        return "transient"
    return "fatal"
