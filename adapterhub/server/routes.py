"""Turn a request line into a named route with validated parts; no I/O here.

URL shapes follow what ``huggingface_hub`` 0.36 and 2.x send. Each path segment is percent-decoded on
its own, so a revision the client quoted with ``safe=""`` (``refs%2Fpr%2F1``) stays one segment and a
file path may arrive with or without its slashes encoded. Every decoded part goes through
``names`` before anything else sees it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

from .errors import BadRequest, MethodNotAllowed, NotFound
from .names import RepoRef, check_path, check_revision, parse_repo_ref, repo_type_from_plural

RESERVED_NAMESPACES = frozenset({"api", "models", "datasets", "spaces"})
"""First URL segments with a meaning of their own; no repository may live under them."""


@dataclass(frozen=True)
class Route:
    """A matched URL: endpoint name, and the repo/revision/path it names (validated)."""

    name: str
    repo: RepoRef | None = None
    revision: str | None = None
    path: str | None = None
    access: str = "read"
    """What the caller must be allowed: ``read`` the repo, ``write`` it, ``create`` (checked on the body's
    repo id), ``user`` (any valid token), or ``open`` (nothing)."""


@dataclass(frozen=True)
class ParsedUrl:
    path: str
    query: dict[str, list[str]]


def split_url(raw: str) -> ParsedUrl:
    path, _, query = raw.partition("?")
    return ParsedUrl(path, parse_qs(query, keep_blank_values=True))


def _decode(segment: str) -> str:
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise BadRequest("URL is not valid UTF-8 after percent-decoding") from None


_REPO_API: dict[str, tuple[frozenset[str], bool]] = {
    # action -> (methods, needs write permission)
    "revision": (frozenset({"GET"}), False),
    "tree": (frozenset({"GET"}), False),
    "paths-info": (frozenset({"POST"}), False),
    "refs": (frozenset({"GET"}), False),
    "commits": (frozenset({"GET"}), False),
    "preupload": (frozenset({"POST"}), True),
    "commit": (frozenset({"POST"}), True),
}


def match(method: str, raw_path: str) -> Route:
    """The route for ``method`` + raw (still percent-encoded) path, or a ``HubApiError``."""
    segments = raw_path.split("/")[1:] if raw_path.startswith("/") else []
    if not segments:
        raise NotFound(f"no such endpoint: {raw_path[:200]}")
    if segments[0] == "api":
        return _match_api(method, segments[1:], raw_path)
    return _match_resolve(method, segments, raw_path)


def _require(method: str, allowed: frozenset[str] | set[str]) -> None:
    """405 unless ``method`` fits; HEAD is allowed wherever GET is (same answer, no body)."""
    if method in allowed or (method == "HEAD" and "GET" in allowed):
        return
    raise MethodNotAllowed(
        f"method {method} is not allowed here", headers={"Allow": ", ".join(sorted(allowed))}
    )


def _match_api(method: str, seg: list[str], raw_path: str) -> Route:
    if seg == ["repos", "create"]:
        _require(method, {"POST"})
        return Route("create_repo", access="create")
    if seg == ["validate-yaml"]:
        _require(method, {"POST"})
        return Route("validate_yaml", access="open")
    if seg == ["whoami-v2"]:
        _require(method, {"GET"})
        return Route("whoami", access="user")
    if len(seg) in (1, 2) and seg[0] in ("models", "datasets") and seg[1:] in ([], [""]):
        _require(method, {"GET"})
        return Route("list_repos", path=repo_type_from_plural(seg[0]), access="open")
    if len(seg) < 3:
        raise NotFound(f"no such endpoint: {raw_path[:200]}")
    repo_type = repo_type_from_plural(seg[0])
    repo = parse_repo_ref(repo_type, _decode(seg[1]), _decode(seg[2]))
    rest = seg[3:]
    if not rest or rest == [""]:
        _require(method, {"GET"})
        return Route("repo_info", repo)
    action = rest[0]
    if action not in _REPO_API:
        raise NotFound(f"no such endpoint: {raw_path[:200]}")
    methods, write = _REPO_API[action]
    _require(method, methods)
    if action == "refs":
        if len(rest) != 1:
            raise NotFound(f"no such endpoint: {raw_path[:200]}")
        return Route("refs", repo)
    if len(rest) < 2 or rest[1] == "":
        raise BadRequest(f"{action} needs a revision in the URL")
    if action in ("revision", "commits"):
        # The client quotes the revision; accept an unquoted refs/pr/N too.
        revision = check_revision(_decode("/".join(rest[1:])))
        return Route("repo_info" if action == "revision" else "commits", repo, revision)
    revision = check_revision(_decode(rest[1]))
    if action == "tree":
        path = check_path(_decode("/".join(rest[2:])), allow_empty=True)
        return Route("tree", repo, revision, path)
    if len(rest) != 2:
        raise NotFound(f"no such endpoint: {raw_path[:200]}")
    return Route(action.replace("-", "_"), repo, revision, access="write" if write else "read")


def _match_resolve(method: str, seg: list[str], raw_path: str) -> Route:
    if len(seg) >= 5 and seg[0] in ("datasets", "spaces") and seg[3] == "resolve":
        repo_type, namespace, name, rest = seg[0][:-1], seg[1], seg[2], seg[4:]
    elif len(seg) >= 4 and seg[2] == "resolve":
        repo_type, namespace, name, rest = "model", seg[0], seg[1], seg[3:]
    else:
        raise NotFound(f"no such endpoint: {raw_path[:200]}")
    _require(method, {"GET"})
    repo = parse_repo_ref(repo_type, _decode(namespace), _decode(name))
    if len(rest) < 2:
        raise BadRequest("resolve needs a revision and a file path")
    revision = check_revision(_decode(rest[0]))
    path = check_path(_decode("/".join(rest[1:])))
    return Route("resolve", repo, revision, path)
