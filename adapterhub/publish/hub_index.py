"""Writing an index held in a Hub dataset repo (``hf:datasets/ORG/NAME``): ``index push`` and
``publish --index/--to hf:datasets/…``.

Every change is ONE commit with ``parent_commit`` pinned to the head it was computed from, so two
writers cannot both win: the Hub answers 412 to the second and nothing of it is committed.

- :func:`push_index` makes the repo hold a local index directory: it lists the remote files with their
  hashes (the tree API: the LFS sha256, or the git blob sha1 of a small file), uploads only what differs
  and deletes what the directory no longer has. It never deletes ``mirror/`` blobs (content-addressed,
  entries may still name them), dotfiles (``.gitattributes``) or the repo's ``README.md``.
- :func:`update_hub_index` is a read-modify-write: it copies the index at the head into a temporary
  directory (every file but ``mirror/``, read through the index's own reader and cache), applies a
  change there with the ordinary local tools (``add_release``, ``sign_index``, ``publish_local``), and
  pushes the difference pinned to that head. A concurrent change makes it start over from the new
  head, a few times, then stop with a :class:`~adapterhub.errors.ConflictError`.

Signing works as for a directory: a signed index is re-signed with the publisher's keyring before the
push, in the same commit; readers keep verifying against the root they pinned.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .. import settings
from ..errors import (
    AdapterHubError,
    AuthenticationError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    PublishError,
)
from ..fileio import atomic_write_bytes
from ..jsonio import loads_strict
from ..paths import safe_join
from ..registry.layout import METADATA_DIR
from ..store.hub_repo import client_routed_to
from .hub import publish_to_hub
from .local import publish_local
from .release import require_index

T = TypeVar("T")
ATTEMPTS = 3
"""How often :func:`update_hub_index` starts over when another writer committed first."""
CHUNK = 1 << 20
TIMESTAMP = f"{METADATA_DIR}/timestamp.json"


@dataclass
class IndexPushResult:
    """One push: the commit made (None when the repo already held the directory's state)."""

    location: str
    endpoint: str
    parent: str
    commit: str | None
    uploaded: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def _status(exc: BaseException) -> int | None:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _failure(where: str, exc: BaseException, what: str) -> Exception:
    status = _status(exc)
    if status in (401, 403):
        why = "no valid token was sent" if status == 401 else "the token has no write access to this repository"
        return AuthenticationError(f"{where}: HTTP {status}, {why} ({_first_line(exc)}); {what}")
    if status == 404 or type(exc).__name__ == "RepositoryNotFoundError":
        return NotFoundError(f"{where}: no such dataset repo ({_first_line(exc)}); {what}",
                             hint="create it with `adapterhub index push DIR --to hf:datasets/ORG/NAME`")
    return PublishError(f"{where}: {_first_line(exc)}; {what}")


def _protected(path: str) -> bool:
    """Remote files a push never deletes (see the module docstring)."""
    parts = path.split("/")
    return parts[0] == "mirror" or any(p.startswith(".") for p in parts) or path == "README.md"


def local_files(root: Path) -> dict[str, Path]:
    """Every file of an index directory that belongs on the Hub (dotfiles such as the writers' lock left out)."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not any(p.startswith(".") for p in rel.split("/")):
            out[rel] = path
    return out


def _digests(path: Path) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file: the two hashes the Hub may list for it."""
    size = path.stat().st_size
    sha256, sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\x00" % size, usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            sha256.update(chunk)
            sha1.update(chunk)
    return sha256.hexdigest(), sha1.hexdigest()


def _remote_digest(item: Any) -> tuple[str | None, str | None]:
    """(LFS sha256, git blob sha1) the tree listing gives a file; either may be missing."""
    lfs = getattr(item, "lfs", None)
    sha256 = lfs.get("sha256") if isinstance(lfs, dict) else getattr(lfs, "sha256", None)
    return sha256, getattr(item, "blob_id", None)


def _unchanged(local: Path, remote: Any) -> bool:
    sha256, sha1 = _digests(local)
    remote_sha256, remote_sha1 = _remote_digest(remote)
    if remote_sha256:
        return remote_sha256 == sha256
    return remote_sha1 == sha1


class HubIndexWriter:
    """The dataset repo of one ``hf:datasets/ORG/NAME`` location, for the calls a push makes."""

    def __init__(self, location: str, *, endpoint: str | None = None, token: str | bool | None = None,
                 api: Any = None) -> None:
        from ..registry.hub_index import parse_hub_index  # deferred: CLI import cost (registry)

        self.ref = parse_hub_index(location)
        if self.ref.revision is not None:
            raise InvalidArgumentError(f"{location}: an index is written to its main branch; drop @{self.ref.revision}")
        self.location = self.ref.key
        self.endpoint = (endpoint or settings.hub_endpoint()).rstrip("/")
        self.token = token
        self._api = api

    @property
    def api(self) -> Any:
        if self._api is None:
            from huggingface_hub import HfApi

            from ..transport import check_token_destination  # deferred: CLI import cost (socket, threading)

            check_token_destination(self.endpoint, self.token)  # a token never crosses a network in clear text
            self._api = HfApi(endpoint=self.endpoint, token=self.token)
        return self._api

    @property
    def where(self) -> str:
        return f"{self.location} ({self.endpoint})"

    def head(self, *, create: bool) -> str:
        """The commit ``main`` points at (creating the dataset repo first when ``create``)."""
        with client_routed_to(self.endpoint):
            try:
                if create:
                    self.api.create_repo(self.ref.repo_id, repo_type="dataset", exist_ok=True, token=self.token)
                return self.api.repo_info(self.ref.repo_id, repo_type="dataset", revision="main", token=self.token).sha
            except Exception as exc:  # the client's error types differ between 0.x and 1.x+
                raise _failure(self.where, exc, "nothing was committed") from None

    def files(self, commit: str) -> dict[str, Any]:
        """Every file at ``commit`` -> its tree item (path, size, hashes)."""
        with client_routed_to(self.endpoint):
            try:
                items = self.api.list_repo_tree(self.ref.repo_id, recursive=True, revision=commit,
                                                repo_type="dataset", token=self.token)
                return {i.path: i for i in items if type(i).__name__ == "RepoFile"}
            except Exception as exc:
                raise _failure(self.where, exc, "nothing was committed") from None

    def commit(self, operations: list[Any], parent: str, message: str) -> str:
        with client_routed_to(self.endpoint):
            try:
                info = self.api.create_commit(self.ref.repo_id, operations, commit_message=message,
                                              commit_description="Written with adapterhub: the whole index change "
                                              "in one commit.", parent_commit=parent, repo_type="dataset",
                                              token=self.token)
            except Exception as exc:
                if _status(exc) == 412:
                    raise ConflictError(f"{self.where}: the index changed while it was being pushed (main moved on "
                                        f"from {parent[:12]}); nothing was committed",
                                        hint="someone else wrote to it: for `index push`, bring your directory up "
                                        "to date with theirs first (your push would replace their change), then "
                                        "push again; `publish` retries by itself") from None
                raise _failure(self.where, exc, "nothing was committed") from None
        return info.oid


def push_index(directory: str | Path, to: str, *, endpoint: str | None = None, token: str | bool | None = None,
               api: Any = None, parent: str | None = None, message: str | None = None,
               writer: HubIndexWriter | None = None) -> IndexPushResult:
    """Make the dataset repo ``to`` hold the index in ``directory``: changed files only, in one commit pinned
    to ``parent`` (default: the head read now), or no commit when nothing differs."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    root = require_index(directory)
    writer = writer or HubIndexWriter(to, endpoint=endpoint, token=token, api=api)
    head = parent or writer.head(create=True)
    remote = writer.files(head)
    local = local_files(root)
    if TIMESTAMP in remote and TIMESTAMP in local and not _unchanged(local[TIMESTAMP], remote[TIMESTAMP]):
        _refuse_older(writer, head, root)
    uploaded = [p for p, path in local.items() if p not in remote or not _unchanged(path, remote[p])]
    deleted = sorted(p for p in remote if p not in local and not _protected(p))
    result = IndexPushResult(writer.location, writer.endpoint, head, None, uploaded, deleted)
    if not uploaded and not deleted:
        return result
    ops: list[Any] = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(local[p])) for p in uploaded]
    ops += [CommitOperationDelete(path_in_repo=p) for p in deleted]
    result.commit = writer.commit(ops, head, message or f"Update the index from {root.name or root}")
    return result


def _signed_version(data: bytes | None, where: str) -> int:
    doc = loads_strict(data or b"null", where)
    version = doc.get("signed", {}).get("version") if isinstance(doc, dict) else None
    if not isinstance(version, int):
        raise PublishError(f"{where}: not signed timestamp metadata; nothing was committed")
    return version


def _refuse_older(writer: HubIndexWriter, head: str, root: Path) -> None:
    """Refuse to replace a signed index by an older signed state (a stale copy would roll readers back)."""
    from ..registry.hub_index import HubIndexBackend  # deferred: CLI import cost (registry)

    remote = _signed_version(HubIndexBackend(writer.ref, head, writer.endpoint, settings.cache_dir() / "index",
                                             token=writer.token).read(TIMESTAMP), f"{writer.location}@{head}/{TIMESTAMP}")
    local = _signed_version((root / TIMESTAMP).read_bytes(), str(root / TIMESTAMP))
    if local <= remote:
        raise ConflictError(f"{writer.where} holds newer signed metadata (timestamp v{remote}) than {root} "
                            f"(v{local}); pushing would roll its readers back; nothing was committed",
                            hint="start from the index on the Hub (changes made since your copy would be lost), "
                            "or publish with `adapterhub publish --index/--to " + writer.location + "`")


def checkout(writer: HubIndexWriter, commit: str, into: Path) -> Path:
    """Copy the index at ``commit`` (all but ``mirror/``) into ``into``, through the index reader and its cache."""
    from ..registry.hub_index import HubIndexBackend  # deferred: CLI import cost (registry)
    from ..registry.layout import CONFIG_FILE  # deferred: CLI import cost (registry)
    from ..transport import TokenScope, Transport  # deferred: CLI import cost (socket, threading)

    paths = [p for p in writer.files(commit) if not _protected(p)]
    if CONFIG_FILE not in paths:
        raise NotFoundError(f"{writer.where} holds no registry index ({CONFIG_FILE} missing at {commit[:12]})",
                            hint=f"create one: `adapterhub index init DIR --name NAME`, then "
                                 f"`adapterhub index push DIR --to {writer.location}`")
    with Transport(scope=TokenScope.configured([writer.endpoint])) as transport:
        backend = HubIndexBackend(writer.ref, commit, writer.endpoint, settings.cache_dir() / "index",
                                  transport=transport, token=writer.token)
        for rel in paths:
            data = backend.read(rel)
            if data is None:
                raise PublishError(f"{writer.where}: {rel} is listed at {commit[:12]} but not served; nothing was "
                                   "committed", hint="try again later")
            atomic_write_bytes(safe_join(into, rel), data)
    return into


def _renamed(exc: AdapterHubError, root: Path, location: str) -> AdapterHubError:
    """``exc`` (same type) with every mention of the temporary copy ``root`` replaced by ``location``."""
    def fix(text: str | None) -> str | None:
        return None if text is None else text.replace(str(root), location)

    try:
        renamed = type(exc)(fix(exc.message) or "", hint=fix(exc.hint))
    except TypeError:  # an error type with another constructor: keep it as it is
        return exc
    return renamed


def update_hub_index(to: str, change: Callable[[Path], T], *, endpoint: str | None = None,
                     token: str | bool | None = None, api: Any = None, message: Callable[[T], str],
                     dry_run: bool = False) -> tuple[T, IndexPushResult | None]:
    """Apply ``change`` to the index at the head of ``to`` and commit the result pinned to that head (see the
    module docstring); ``change`` may run again, on a newer head, after a concurrent commit."""
    writer = HubIndexWriter(to, endpoint=endpoint, token=token, api=api)
    for attempt in range(1, ATTEMPTS + 1):
        head = writer.head(create=False)
        with tempfile.TemporaryDirectory(prefix="adapterhub-index-") as tmp:
            root = checkout(writer, head, Path(tmp) / "index")
            try:
                value = change(root)
            except AdapterHubError as exc:  # name the index the user gave, not the temporary copy
                raise _renamed(exc, root, f"{writer.location}@{head}") from None
            if dry_run:
                return value, None
            try:
                return value, push_index(root, to, parent=head, message=message(value), writer=writer)
            except ConflictError:
                if attempt == ATTEMPTS:
                    raise
    raise AssertionError("unreachable")


@dataclass
class HubIndexPublishResult:
    """``publish`` into a Hub-hosted index: what publishing did, and the index commit (None: unchanged or dry run)."""

    location: str
    published: Any
    """A :class:`~adapterhub.publish.hub.HubPublishResult` (files in the adapter's repo) or a
    :class:`~adapterhub.publish.local.LocalPublishResult` (files in the index's ``mirror/``)."""
    push: IndexPushResult | None


def publish_to_hub_index(directory: str | Path, index: str, *, repo_id: str | None = None,
                         endpoint: str | None = None, token: str | bool | None = None, private: bool = False,
                         create_pr: bool = False, dry_run: bool = False, keys: str | Path | None = None,
                         api: Any = None) -> HubIndexPublishResult:
    """Publish the adapter in ``directory`` into the index at ``index`` (``hf:datasets/ORG/NAME``).

    With ``repo_id`` its files go to that model repo first (:func:`~adapterhub.publish.publish_to_hub`, one
    commit there; a retry reuses it); without, they go into the index's own ``mirror/`` in the same commit as
    the entry (:func:`~adapterhub.publish.publish_local` on the checked-out index). Either way the index
    changes in one commit pinned to the head it was read at, re-signed with ``keys`` when it is signed.
    """
    def change(root: Path) -> Any:
        if repo_id is None:
            return publish_local(directory, root, dry_run=dry_run, keys=keys)
        return publish_to_hub(directory, repo_id, endpoint=endpoint, token=token, private=private,
                              create_pr=create_pr, dry_run=dry_run, index=root, keys=keys, api=api)

    def message(value: Any) -> str:
        return f"Publish {value.manifest.name} {value.manifest.version}"

    published, push = update_hub_index(index, change, endpoint=endpoint, token=token, api=api, message=message,
                                       dry_run=dry_run)
    return HubIndexPublishResult(HubIndexWriter(index, endpoint=endpoint).location, published, push)
