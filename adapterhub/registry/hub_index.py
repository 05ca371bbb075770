"""An index stored in a Hub dataset repo: ``hf:datasets/ORG/NAME[@REV]``.

Reading one takes two steps. First the revision (default ``main``) is resolved to a 40-hex commit, once
per :func:`~adapterhub.registry.open_index`, by ``huggingface_hub``'s ``get_hf_file_metadata`` on the
resolve URL of ``config.json`` (the stock client knows the Hub's redirects and reads ``X-Repo-Commit``).
Then every file is read at that commit through the index's ordinary :class:`HttpBackend`, with the base
URL ``<endpoint>/datasets/ORG/NAME/resolve/<commit>/``: the same transport (size caps while streaming,
retries, deadlines, redirects to the Hub's CDN without the token), the same on-disk cache, and the same
signature checks as any HTTP index. Files under a commit never change, so a cached one is used without
asking again; offline, the commit recorded for the revision at the last online read is used.

The backend's ``location`` names the commit (``hf:datasets/ORG/NAME@<commit>``): error messages and
lockfiles say which index state they mean. Trust (a pinned root) belongs to the repository, not to a
commit: :func:`trust_key` drops the revision, so signed metadata seen at one commit protects reads of
every other against rollback, whichever endpoint (the Hub or a mirror) serves it.

``hf:ORG/REPO`` (no ``datasets/``) is an adapter repository, never an index: it is refused here with
a message that says which form to use.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from .. import settings
from ..errors import (
    AuthenticationError,
    DownloadError,
    IndexFormatError,
    InvalidNameError,
    NotFoundError,
    OfflineError,
)
from ..fileio import atomic_write_text
from .backends import HttpBackend

if TYPE_CHECKING:
    from ..transport import FetchOptions, Transport

PREFIX = "hf:"
DATASETS = "datasets/"
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
_LOCATION_RE = re.compile(rf"^hf:datasets/(?P<repo>{_PART}/{_PART})(?:@(?P<rev>[^\s@]+))?$")
_REV_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,255}$")
FORM = "hf:datasets/ORG/NAME[@REVISION]"


@dataclass(frozen=True)
class HubIndexRef:
    """Which dataset repo holds the index, and at which revision (None: ``main``)."""

    repo_id: str
    revision: str | None = None

    @property
    def key(self) -> str:
        """The repository's index identity, without a revision: ``hf:datasets/ORG/NAME``."""
        return f"{PREFIX}{DATASETS}{self.repo_id}"

    def at(self, commit: str) -> str:
        return f"{self.key}@{commit}"

    @property
    def branch(self) -> str:
        return self.revision or "main"


def is_hub_location(location: object) -> bool:
    """True for any ``hf:`` text given as an index location (valid or not: it is no path or URL)."""
    return isinstance(location, str) and location.startswith(PREFIX)


def parse_hub_index(location: str) -> HubIndexRef:
    """``hf:datasets/ORG/NAME[@REV]`` as a :class:`HubIndexRef`; anything else ``hf:`` is refused."""
    m = _LOCATION_RE.match(location.strip())
    if m is None:
        rest = location[len(PREFIX):]
        if not rest.startswith(DATASETS) and "/" in rest:
            raise InvalidNameError(
                f"{location!r} names a model repo; an index on the Hub lives in a dataset repo",
                hint=f"use --index {PREFIX}{DATASETS}{rest} (form {FORM}); `adapterhub pull {location}` pulls an "
                     "adapter repo directly")
        raise InvalidNameError(f"{location!r} is not a Hub index location (expected {FORM})")
    rev = m["rev"]
    if rev is not None and (not _REV_RE.match(rev) or ".." in rev):
        raise InvalidNameError(f"{location!r}: {rev!r} is not a revision (a branch, tag or 40-hex commit)")
    return HubIndexRef(m["repo"], rev)


def trust_key(location: str) -> str:
    """The key trust is pinned under: the repository, not a revision (see the module docstring)."""
    return parse_hub_index(location).key


class HubIndexBackend(HttpBackend):
    """An :class:`HttpBackend` over one commit of a dataset repo (files at a commit never change)."""

    def __init__(self, ref: HubIndexRef, commit: str, endpoint: str, cache_dir: Path | None, *,
                 offline: bool = False, options: FetchOptions | None = None,
                 transport: Transport | None = None, token: str | bool | None = None) -> None:
        super().__init__(f"{endpoint}/datasets/{ref.repo_id}/resolve/{commit}/", cache_dir, offline=offline,
                         options=options, transport=transport, immutable=True, token=token)
        self.ref = ref
        self.commit = commit
        self.endpoint = endpoint
        self.location = ref.at(commit)


def _refs_file(cache_dir: Path, endpoint: str, ref: HubIndexRef) -> Path:
    key = hashlib.sha256(f"{endpoint}\n{ref.repo_id}\n{ref.branch}".encode()).hexdigest()[:32]
    return cache_dir / "hub-refs" / f"{key}.json"


def _status(exc: BaseException) -> int | None:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _resolve_online(ref: HubIndexRef, endpoint: str, options: FetchOptions | None) -> str:
    """The commit ``ref.branch`` names now: a HEAD on ``config.json``'s resolve URL by the stock client."""
    from huggingface_hub import get_hf_file_metadata  # deferred: CLI import cost (huggingface_hub)

    from ..transport import FetchOptions, TokenScope  # deferred: CLI import cost (socket, threading)

    url = f"{endpoint}/datasets/{ref.repo_id}/resolve/{quote(ref.branch, safe='')}/config.json"
    scope = TokenScope.configured()
    secret = scope.token_for(url, None)
    timeout = (options or FetchOptions.from_env()).read_timeout
    where = f"{ref.key}@{ref.branch} ({endpoint})"
    try:
        meta = get_hf_file_metadata(url, token=secret or False, endpoint=endpoint, timeout=timeout)
    except Exception as exc:  # the client's error types differ between 0.x and 1.x+
        names, status = _names(exc), _status(exc)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        if "OfflineModeIsEnabled" in names:
            raise OfflineError(f"{where}: huggingface_hub is in offline mode", hint="set ADAPTERHUB_OFFLINE=1 to "
                               "read this index from the cache") from None
        if status in (401, 403) or "GatedRepoError" in names:
            raise AuthenticationError(f"{where}: HTTP {status}: private or gated, and "
                                      f"{'the token has no access' if secret else 'no token was sent'}") from None
        if names & {"RevisionNotFoundError"}:
            raise NotFoundError(f"{where}: no revision {ref.branch!r} in the dataset repo") from None
        if names & {"EntryNotFoundError", "RemoteEntryNotFoundError"}:
            raise IndexFormatError(f"{where}: the dataset repo has no config.json; not a registry index",
                                   hint=f"upload one with `adapterhub index push DIR --to {ref.key}`") from None
        if names & {"RepositoryNotFoundError"} or status == 404:
            raise NotFoundError(f"{where}: no such dataset repo" + ("" if secret else " (or private: no token "
                                "was sent)")) from None
        raise DownloadError(f"{where}: cannot resolve the revision: {type(exc).__name__}: {first}") from None
    commit = meta.commit_hash
    if not isinstance(commit, str) or not _COMMIT_RE.match(commit):
        raise DownloadError(f"{where}: the server named no commit for the revision (X-Repo-Commit: {commit!r})")
    return commit


def resolve_commit(ref: HubIndexRef, endpoint: str, cache_dir: Path, *, offline: bool,
                   options: FetchOptions | None = None) -> str:
    """The commit to read ``ref`` at: itself for a 40-hex revision; online, what the Hub says now
    (recorded); offline, what it said at the last online read."""
    if ref.revision is not None and _COMMIT_RE.match(ref.revision):
        return ref.revision
    refs = _refs_file(cache_dir, endpoint, ref)
    if offline:
        try:
            commit = json.loads(refs.read_text())["commit"]
        except (OSError, ValueError, KeyError, TypeError):
            raise OfflineError(f"offline: {ref.key}@{ref.branch} ({endpoint}) was never read online, so nothing "
                               "of it is cached", hint="read it once online (e.g. `adapterhub search --index "
                               f"{ref.key}`), or pin a cached commit with @COMMIT") from None
        if isinstance(commit, str) and _COMMIT_RE.match(commit):
            return commit
        raise OfflineError(f"offline: the cached revision record of {ref.key}@{ref.branch} is damaged",
                           hint="read the index once online")
    commit = _resolve_online(ref, endpoint, options)
    refs.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(refs, json.dumps({"repo": ref.key, "revision": ref.branch, "commit": commit}))
    return commit


def hub_index_backend(location: str, cache_dir: Path, *, offline: bool, endpoint: str | None = None,
                      options: FetchOptions | None = None) -> HubIndexBackend:
    """The backend of ``hf:datasets/ORG/NAME[@REV]`` at the commit its revision names now."""
    ref = parse_hub_index(location)
    ep = (endpoint or settings.hub_endpoint()).rstrip("/")
    commit = resolve_commit(ref, ep, cache_dir, offline=offline, options=options)
    return HubIndexBackend(ref, commit, ep, cache_dir, offline=offline, options=options)
