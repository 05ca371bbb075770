"""On-disk repositories: content-addressed blobs, immutable commits, and refs.

Layout under the root directory (``LAYOUT_VERSION`` 1)::

    adapterhub-server.json            {"layout": 1}
    blobs/<sha256[:2]>/<sha256>       file contents, named by their sha256, written once
    tmp/                              temp files, renamed into place when complete
    repos/<type>s/<namespace>/<name>/
        repo.json                     {"id", "type", "created_at", "private"}
        commits/<oid>.json            one immutable commit: parent, full file map, message
        refs.json                     {"branches": {"main": oid}, "prs": {"1": oid}}

A commit stores the whole file map (path -> sha256, size, git blob sha1), not a diff, so reading any
revision is one small JSON file. Its id is the sha1 of a canonical JSON of parent, files, messages
and time, so ids are 40-hex like git's and a stored commit can be checked against its own name.
Adapters repos are small; a repo with very many files would want trees, which this layout can grow.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from adapterhub.errors import AdapterHubError
from adapterhub.fileio import create_temp_dir

from .errors import BadRequest, EntryNotFound, ParentMismatch, RepoExists, RepoNotFound, RevisionNotFound
from .fsutil import PathLocks, atomic_write_bytes, commit_temp, fsync_dir, temp_file
from .names import (
    DEFAULT_BRANCH,
    RepoRef,
    check_path,
    check_revision,
    is_branch_name,
    is_commit_id,
    parse_repo_ref,
    pr_number,
)

LAYOUT_VERSION = 1
_LAYOUT_FILE = "adapterhub-server.json"
_COMMIT_CACHE_SIZE = 4096
_READ_CHUNK = 1 << 20


class StorageError(AdapterHubError):
    """The storage root is unusable (unknown layout, a commit that does not match its id, ...)."""


@dataclass(frozen=True)
class FileEntry:
    """A file in a commit: its content address, size, and git blob sha1 (the client's change check)."""

    sha256: str
    size: int
    git_oid: str


@dataclass(frozen=True, eq=False)
class Commit:
    """An immutable snapshot of a repository."""

    oid: str
    parent: str | None
    files: Mapping[str, FileEntry]
    summary: str
    description: str
    created_at: str


@dataclass(frozen=True)
class Refs:
    """Branch heads and pull-request refs of one repository."""

    branches: Mapping[str, str]
    prs: Mapping[int, str]


@dataclass(frozen=True)
class AddFile:
    path: str
    entry: FileEntry


@dataclass(frozen=True)
class DeleteFile:
    path: str


@dataclass(frozen=True)
class DeleteFolder:
    path: str


Operation = AddFile | DeleteFile | DeleteFolder


@dataclass(frozen=True)
class CommitResult:
    commit: Commit
    pr_num: int | None


def now_iso() -> str:
    """UTC time in the one format ``huggingface_hub.utils.parse_datetime`` reads."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def git_blob_oid(data: bytes) -> str:
    """git's blob id: sha1 over ``blob <size>\\0`` + content."""
    digest = hashlib.sha1(b"blob %d\x00" % len(data), usedforsecurity=False)
    digest.update(data)
    return digest.hexdigest()


def commit_oid(
    parent: str | None, files: Mapping[str, FileEntry], summary: str, description: str, created_at: str
) -> str:
    """The commit id: sha1 over a canonical JSON of everything the commit says."""
    canonical = {
        "parent": parent,
        "files": {path: [entry.sha256, entry.size] for path, entry in sorted(files.items())},
        "summary": summary,
        "description": description,
        "created_at": created_at,
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()


class HubStorage:
    """All repositories under one root directory. Safe for many threads (and processes, on POSIX)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / "tmp"
        self._locks = PathLocks()
        self._cache: OrderedDict[tuple[Path, str], Commit] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._check_layout()

    # --- layout -----------------------------------------------------------------------------

    def _check_layout(self) -> None:
        marker = self.root / _LAYOUT_FILE
        if marker.exists():
            try:
                layout = json.loads(marker.read_text("utf-8")).get("layout")
            except (OSError, ValueError, AttributeError) as exc:
                raise StorageError(f"{marker}: unreadable layout marker: {exc}") from exc
            if layout != LAYOUT_VERSION:
                raise StorageError(
                    f"{self.root}: storage layout {layout!r} is not supported (this server reads {LAYOUT_VERSION})",
                    hint="use the adapterhub version that created this root",
                )
            return
        atomic_write_bytes(marker, json.dumps({"layout": LAYOUT_VERSION}).encode(), self._tmp)

    # --- blobs ------------------------------------------------------------------------------

    def blob_path(self, sha256: str) -> Path:
        if not (len(sha256) == 64 and all(c in "0123456789abcdef" for c in sha256)):
            raise BadRequest(f"invalid sha256 {sha256!r}")
        return self.root / "blobs" / sha256[:2] / sha256

    def put_blob(self, data: bytes) -> FileEntry:
        """Store ``data`` once under its sha256 (a second copy of the same bytes is not rewritten)."""
        sha256 = hashlib.sha256(data).hexdigest()
        final = self.blob_path(sha256)
        if not final.exists():
            with temp_file(self._tmp, prefix=".blob-") as (handle, tmp_path):
                handle.write(data)
                commit_temp(handle, tmp_path, final)
        return FileEntry(sha256=sha256, size=len(data), git_oid=git_blob_oid(data))

    def entry_for_blob(self, sha256: str, size: int | None = None) -> FileEntry:
        """Describe a blob already stored (an ``lfsFile`` commit line copies by sha256)."""
        path = self.blob_path(sha256.lower())
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            raise BadRequest(f"no stored object with sha256 {sha256}; upload its content first") from None
        if size is not None and size != actual:
            raise BadRequest(f"object {sha256} has size {actual}, not {size}")
        digest = hashlib.sha1(b"blob %d\x00" % actual, usedforsecurity=False)
        with open(path, "rb") as handle:
            while chunk := handle.read(_READ_CHUNK):
                digest.update(chunk)
        return FileEntry(sha256=sha256.lower(), size=actual, git_oid=digest.hexdigest())

    # --- repositories -----------------------------------------------------------------------

    def repo_dir(self, repo: RepoRef) -> Path:
        """``repos/<type>s/<namespace>/<name>``; names are validated upstream, and checked here again.

        Two plain names (no separator, no ``..``: :func:`parse_repo_ref`) can only lead outside through a
        symlink, so neither level may be one. Two ``lstat`` calls instead of resolving the whole path: every
        request looks its repository up several times (a resolve was a third of a small file's request).
        """
        checked = parse_repo_ref(repo.repo_type, repo.namespace, repo.name)
        base = self.root / "repos" / f"{checked.repo_type}s"
        namespace = base / checked.namespace
        path = namespace / checked.name
        if namespace.is_symlink() or path.is_symlink():
            raise BadRequest(f"refusing a repository path outside {base}: {repo}")
        return path

    def repo_exists(self, repo: RepoRef) -> bool:
        return (self.repo_dir(repo) / "repo.json").is_file()

    def repo_meta(self, repo: RepoRef) -> dict[str, object]:
        try:
            return json.loads((self.repo_dir(repo) / "repo.json").read_text("utf-8"))
        except FileNotFoundError:
            raise RepoNotFound(f"repository {repo.repo_id} ({repo.repo_type}) not found") from None

    def is_private(self, repo: RepoRef) -> bool | None:
        """Whether ``repo`` is private; None when it does not exist."""
        try:
            return bool(self.repo_meta(repo).get("private", False))
        except RepoNotFound:
            return None

    def list_repos(self, repo_type: str) -> list[RepoRef]:
        base = self.root / "repos" / f"{repo_type}s"
        found = []
        for meta in sorted(base.glob("*/*/repo.json")):
            found.append(RepoRef(repo_type, meta.parent.parent.name, meta.parent.name))
        return found

    def create_repo(self, repo: RepoRef, *, private: bool = False) -> Commit:
        """Create ``repo`` with an empty first commit on ``main``; ``RepoExists`` if the id is taken."""
        final = self.repo_dir(repo)
        with self._locks.hold(self.root / ".create.lock"):
            if final.exists():
                raise RepoExists(f"repository {repo.repo_id} ({repo.repo_type}) already exists")
            self._tmp.mkdir(parents=True, exist_ok=True)
            staging = create_temp_dir(self._tmp, prefix=".repo-")
            try:
                created = now_iso()
                first = self._write_commit(staging, None, {}, "initial commit", "", created)
                meta = {"id": repo.repo_id, "type": repo.repo_type, "created_at": created, "private": private}
                atomic_write_bytes(staging / "repo.json", json.dumps(meta).encode(), self._tmp)
                self._write_refs(staging, Refs(branches={DEFAULT_BRANCH: first.oid}, prs={}))
                final.parent.mkdir(parents=True, exist_ok=True)
                staging.rename(final)
                fsync_dir(final.parent)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return first

    # --- refs and commits -------------------------------------------------------------------

    def refs(self, repo: RepoRef) -> Refs:
        path = self.repo_dir(repo) / "refs.json"
        try:
            raw = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise RepoNotFound(f"repository {repo.repo_id} ({repo.repo_type}) not found") from None
        return Refs(branches=dict(raw["branches"]), prs={int(k): v for k, v in raw["prs"].items()})

    def _write_refs(self, repo_dir: Path, refs: Refs) -> None:
        data = {
            "branches": dict(sorted(refs.branches.items())),
            "prs": {str(k): v for k, v in sorted(refs.prs.items())},
        }
        atomic_write_bytes(repo_dir / "refs.json", json.dumps(data, indent=1).encode(), self._tmp)

    def _write_commit(
        self,
        repo_dir: Path,
        parent: str | None,
        files: Mapping[str, FileEntry],
        summary: str,
        description: str,
        created_at: str,
    ) -> Commit:
        oid = commit_oid(parent, files, summary, description, created_at)
        commit = Commit(oid, parent, dict(sorted(files.items())), summary, description, created_at)
        record = {
            "oid": oid,
            "parent": parent,
            "summary": summary,
            "description": description,
            "created_at": created_at,
            "files": {
                p: {"sha256": e.sha256, "size": e.size, "git_oid": e.git_oid} for p, e in commit.files.items()
            },
        }
        atomic_write_bytes(repo_dir / "commits" / f"{oid}.json", json.dumps(record).encode(), self._tmp)
        return commit

    def get_commit(self, repo: RepoRef, oid: str) -> Commit:
        """Load (and verify against its id) one commit; ``RevisionNotFound`` if absent."""
        if not is_commit_id(oid):
            raise RevisionNotFound(f"invalid commit id {oid!r}")
        repo_dir = self.repo_dir(repo)
        key = (repo_dir, oid)
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        try:
            raw = json.loads((repo_dir / "commits" / f"{oid}.json").read_text("utf-8"))
        except FileNotFoundError:
            if not self.repo_exists(repo):
                raise RepoNotFound(f"repository {repo.repo_id} ({repo.repo_type}) not found") from None
            raise RevisionNotFound(f"commit {oid} not found in {repo.repo_id}") from None
        files = {p: FileEntry(e["sha256"], int(e["size"]), e["git_oid"]) for p, e in raw["files"].items()}
        commit = Commit(oid, raw["parent"], files, raw["summary"], raw["description"], raw["created_at"])
        if commit_oid(commit.parent, files, commit.summary, commit.description, commit.created_at) != oid:
            raise StorageError(f"{repo_dir}/commits/{oid}.json does not match its id (corrupted storage)")
        with self._cache_lock:
            self._cache[key] = commit
            while len(self._cache) > _COMMIT_CACHE_SIZE:
                self._cache.popitem(last=False)
        return commit

    def find_commit(self, repo: RepoRef, prefix: str) -> Commit | None:
        """A commit by full id or unique prefix of at least 7 hex digits (as the Hub accepts)."""
        prefix = prefix.lower()
        if is_commit_id(prefix):
            try:
                return self.get_commit(repo, prefix)
            except RevisionNotFound:
                return None
        if len(prefix) < 7 or any(c not in "0123456789abcdef" for c in prefix):
            return None
        matches = sorted((self.repo_dir(repo) / "commits").glob(f"{prefix}*.json"))
        return self.get_commit(repo, matches[0].stem) if len(matches) == 1 else None

    def resolve(self, repo: RepoRef, revision: str) -> Commit:
        """Branch, ``refs/heads/x``, ``refs/pr/n`` or commit id -> commit (typed 404s otherwise)."""
        check_revision(revision)
        if is_commit_id(revision):
            return self.get_commit(repo, revision)
        refs = self.refs(repo)
        oid = self._ref_target(refs, revision)
        if oid is None:
            raise RevisionNotFound(f"revision {revision!r} not found in {repo.repo_id}")
        return self.get_commit(repo, oid)

    @staticmethod
    def _ref_target(refs: Refs, revision: str) -> str | None:
        number = pr_number(revision)
        if number is not None:
            return refs.prs.get(number)
        branch = revision[len("refs/heads/") :] if revision.startswith("refs/heads/") else revision
        return refs.branches.get(branch)

    def history(self, repo: RepoRef, revision: str) -> Iterator[Commit]:
        """The commit at ``revision`` and its ancestors, newest first."""
        commit: Commit | None = self.resolve(repo, revision)
        while commit is not None:
            yield commit
            commit = self.get_commit(repo, commit.parent) if commit.parent else None

    # --- writing commits --------------------------------------------------------------------

    def commit(
        self,
        repo: RepoRef,
        revision: str,
        operations: Iterable[Operation],
        *,
        summary: str,
        description: str = "",
        parent_commit: str | None = None,
        create_pr: bool = False,
    ) -> CommitResult:
        """Apply ``operations`` on top of ``revision`` (a branch or PR ref) in one atomic step.

        ``parent_commit`` makes it conditional: without ``create_pr`` the branch head must still be
        that commit (else ``ParentMismatch``, HTTP 412); with ``create_pr`` the new PR starts from it.
        Blobs must already be stored; only the commit file and the ref change here.
        """
        check_revision(revision)
        if is_commit_id(revision):
            raise BadRequest("commits go to a branch or refs/pr/<n>, not to a commit id")
        operations = list(operations)
        repo_dir = self.repo_dir(repo)
        if not self.repo_exists(repo):
            raise RepoNotFound(f"repository {repo.repo_id} ({repo.repo_type}) not found")
        with self._locks.hold(repo_dir / ".lock"):
            refs = self.refs(repo)
            head = self._ref_target(refs, revision)
            if head is None:
                raise RevisionNotFound(f"revision {revision!r} not found in {repo.repo_id}")
            base = head
            if parent_commit is not None:
                parent = self.find_commit(repo, parent_commit)
                if create_pr:
                    if parent is None:
                        raise RevisionNotFound(f"parent commit {parent_commit!r} not found in {repo.repo_id}")
                    base = parent.oid
                elif parent is None or parent.oid != head:
                    raise ParentMismatch(
                        f"{revision} of {repo.repo_id} is at {head}, not at the given parent commit"
                        f" {parent_commit}: someone committed in between; fetch the new head and retry"
                    )
            files = apply_operations(self.get_commit(repo, base).files, operations)
            commit = self._write_commit(repo_dir, base, files, summary, description, now_iso())
            branches, prs = dict(refs.branches), dict(refs.prs)
            pr_num = None
            if create_pr:
                pr_num = max(prs, default=0) + 1
                prs[pr_num] = commit.oid
            elif pr_number(revision) is not None:
                prs[pr_number(revision)] = commit.oid  # type: ignore[index]
            else:
                branch = revision[len("refs/heads/") :] if revision.startswith("refs/heads/") else revision
                if not is_branch_name(branch):  # pragma: no cover - check_revision already refused it
                    raise BadRequest(f"invalid branch {branch!r}")
                branches[branch] = commit.oid
            self._write_refs(repo_dir, Refs(branches=branches, prs=prs))
        return CommitResult(commit=commit, pr_num=pr_num)


def apply_operations(files: Mapping[str, FileEntry], operations: Iterable[Operation]) -> dict[str, FileEntry]:
    """The file map after ``operations``, in order; deleting what is not there is ``EntryNotFound``."""
    result = dict(files)
    for op in operations:
        path = check_path(op.path)
        if isinstance(op, AddFile):
            if any(existing.startswith(path + "/") for existing in result):
                raise BadRequest(f"cannot add file {path!r}: a folder with this name exists")
            for parent in _parents(path):
                if parent in result:
                    raise BadRequest(f"cannot add {path!r}: {parent!r} is a file")
            result[path] = op.entry
        elif isinstance(op, DeleteFile):
            if path not in result:
                raise EntryNotFound(f"cannot delete {path!r}: A file with this name doesn't exist")
            del result[path]
        else:
            doomed = [p for p in result if p.startswith(path + "/")]
            if not doomed:
                raise EntryNotFound(f"cannot delete folder {path!r}: it does not exist")
            for p in doomed:
                del result[p]
    return result


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]
