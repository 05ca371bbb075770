"""Strict rules for the names that arrive in URLs and bodies: repo ids, revisions, file paths.

Repo ids become directories on disk, so they are checked against an allow-list before anything is
joined to a path. Revisions and file paths never become paths (files are stored by sha256), but they
are still held to the same rules the Hub applies, so nothing odd can be committed and later served to
a client that writes it to its own disk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import BadRequest

REPO_TYPES: tuple[str, ...] = ("model", "dataset", "space")
"""Repository kinds, singular as the client's ``repo_type``; URLs use the plural (``models``)."""

DEFAULT_BRANCH = "main"

_NAME_PART = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")
_BRANCH = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?")
_PR_REF = re.compile(r"refs/pr/([1-9][0-9]{0,8})")
_COMMIT_ID = re.compile(r"[0-9a-f]{40}")
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
MAX_PATH_LENGTH = 1000
MAX_SEGMENT_BYTES = 255


@dataclass(frozen=True)
class RepoRef:
    """One repository: its type (``model``/``dataset``/``space``) and ``namespace/name`` id."""

    repo_type: str
    namespace: str
    name: str

    @property
    def repo_id(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def url_path(self) -> str:
        """The repo's path on the website (``org/name``, ``datasets/org/name``), as in ``commitUrl``."""
        return self.repo_id if self.repo_type == "model" else f"{self.repo_type}s/{self.repo_id}"

    def __str__(self) -> str:
        return f"{self.repo_type}:{self.repo_id}"


def repo_type_from_plural(plural: str) -> str:
    """``models`` -> ``model``; anything else is not a route."""
    singular = plural[:-1] if plural.endswith("s") else ""
    if singular not in REPO_TYPES:
        raise BadRequest(f"unknown repository type {plural!r}; expected one of models, datasets, spaces")
    return singular


def parse_repo_ref(repo_type: str, namespace: str, name: str) -> RepoRef:
    """Validate both halves of a repo id (ASCII letters, digits, ``._-``; no ``--`` or ``..``)."""
    if repo_type not in REPO_TYPES:
        raise BadRequest(f"unknown repository type {repo_type!r}; expected one of {', '.join(REPO_TYPES)}")
    for part in (namespace, name):
        if (
            not isinstance(part, str)
            or not _NAME_PART.fullmatch(part)
            or "--" in part
            or ".." in part
            or part.lower().endswith(".git")
        ):
            raise BadRequest(
                f"invalid repo id {namespace!r}/{name!r}: each part must be 1-96 ASCII letters, digits,"
                " '.', '_' or '-', start and end with a letter or digit, and contain no '--' or '..'"
            )
    return RepoRef(repo_type, namespace, name)


def parse_repo_id(repo_type: str, repo_id: str) -> RepoRef:
    """Split and validate ``namespace/name``."""
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    if len(parts) != 2:
        raise BadRequest(f"invalid repo id {repo_id!r}: expected 'namespace/name'")
    return parse_repo_ref(repo_type, parts[0], parts[1])


def is_commit_id(revision: str) -> bool:
    return bool(_COMMIT_ID.fullmatch(revision))


def is_branch_name(name: str) -> bool:
    return bool(_BRANCH.fullmatch(name)) and ".." not in name and not name.endswith(".lock")


def pr_number(revision: str) -> int | None:
    """``refs/pr/7`` -> 7, anything else -> None."""
    match = _PR_REF.fullmatch(revision)
    return int(match.group(1)) if match else None


def check_revision(revision: str) -> str:
    """A branch name, ``refs/heads/<branch>``, ``refs/pr/<n>`` or a 40-hex commit id; else 400."""
    if isinstance(revision, str):
        if is_commit_id(revision) or pr_number(revision) is not None or is_branch_name(revision):
            return revision
        if revision.startswith("refs/heads/") and is_branch_name(revision[len("refs/heads/") :]):
            return revision
    raise BadRequest(
        f"invalid revision {revision!r}: expected a branch name, refs/pr/<n> or a 40-hex commit id"
    )


def check_path(path: str, *, allow_empty: bool = False) -> str:
    """A relative POSIX path inside a repo: no ``..``/``.``/empty segments, no ``\\``, NUL or controls.

    Returns the path without a trailing slash (the client marks folders with one in deletions).
    """
    if not isinstance(path, str):
        raise BadRequest("path must be a string")
    if path == "" and allow_empty:
        return path
    problem = None
    stripped = path[:-1] if path.endswith("/") and len(path) > 1 else path
    if not stripped:
        problem = "is empty"
    elif len(stripped) > MAX_PATH_LENGTH:
        problem = f"is longer than {MAX_PATH_LENGTH} characters"
    elif stripped.startswith("/"):
        problem = "is absolute"
    elif _FORBIDDEN_CHARS.search(stripped):
        problem = "contains a backslash, NUL or control character"
    else:
        for segment in stripped.split("/"):
            if segment in ("", ".", ".."):
                problem = "contains an empty, '.' or '..' segment"
                break
            if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
                problem = f"has a segment longer than {MAX_SEGMENT_BYTES} bytes"
                break
            if segment == ".git":
                problem = "contains a '.git' segment"
                break
    if problem:
        raise BadRequest(f"invalid path {path!r}: it {problem}")
    return stripped
