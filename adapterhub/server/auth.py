"""Who may do what: tokens the operator configures, the namespaces they own, private repositories.

The rules (docs/security.md, "Server"):

* Anyone who can connect reads **public** repositories; no token is needed.
* **Writes need a token** (create a repo, pre-upload, commit). Only an operator who explicitly passes
  ``allow_anonymous_writes`` (``--allow-anonymous-writes``) lets callers without one write, anywhere.
* A token writes only the **namespaces** (or single repositories) it is granted; elsewhere it gets
  403. An ``admin`` token writes and reads everything.
* A **private** repository is readable by tokens that may write it or were granted ``read`` on it or
  its namespace; to everyone else every endpoint answers 404 ``RepoNotFound``, exactly as for a
  repository that does not exist, so its existence is not revealed.
* A token the server does not know is 401 on every request, reads included, as the Hub does: a
  client with a stale token learns it at once instead of silently seeing less.

Tokens live in a JSON file (``--token-file``), never on the command line where ``ps`` shows them::

    {"tokens": [
      {"token": "...", "user": "alice", "write": ["alice", "acme"], "read": ["partner/eval-set"]},
      {"token": "...", "user": "ci", "admin": true}
    ]}
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapterhub.errors import AdapterHubError
from adapterhub.jsonio import load_strict

from .errors import BadRequest, Forbidden, RepoNotFound, Unauthorized
from .names import RepoRef, parse_repo_ref

_TOKEN = re.compile(r"[\x21-\x7e]{1,512}")
_GRANT_KEYS = frozenset({"token", "user", "write", "read", "admin"})


class TokenFileError(AdapterHubError):
    """The operator's token file is unreadable or does not follow the documented shape."""


def _scopes(values: Iterable[str], what: str) -> frozenset[str]:
    """Lower-cased scopes, each a valid namespace or ``namespace/name`` (the rules repo ids follow)."""
    out = set()
    for value in values:
        parts = value.split("/") if isinstance(value, str) else []
        try:
            if not 1 <= len(parts) <= 2:
                raise BadRequest("one or two parts")
            parse_repo_ref("model", parts[0], parts[-1])
        except BadRequest:
            raise TokenFileError(f"{what}: {value!r} is not a namespace or 'namespace/name'") from None
        out.add(value.lower())
    return frozenset(out)


@dataclass(frozen=True)
class TokenGrant:
    """One token and what it may do. Scopes are namespaces (``acme``) or repositories (``acme/x``)."""

    token: str = field(repr=False)
    user: str
    write: frozenset[str] = frozenset()
    read: frozenset[str] = frozenset()
    admin: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.token, str) or not _TOKEN.fullmatch(self.token):
            raise TokenFileError(f"token of {self.user!r}: must be 1-512 printable ASCII characters without spaces")
        object.__setattr__(self, "write", _scopes(self.write, f"write scopes of {self.user!r}"))
        object.__setattr__(self, "read", _scopes(self.read, f"read scopes of {self.user!r}"))

    @classmethod
    def admin_token(cls, token: str, user: str = "admin") -> TokenGrant:
        return cls(token, user, admin=True)

    def covers(self, scopes: Collection[str], repo: RepoRef) -> bool:
        return self.admin or repo.namespace.lower() in scopes or repo.repo_id.lower() in scopes

    def may_write(self, repo: RepoRef) -> bool:
        return self.covers(self.write, repo)

    def may_read_private(self, repo: RepoRef) -> bool:
        return self.covers(self.write | self.read, repo)


@dataclass(frozen=True)
class Caller:
    """The identity behind one request: a grant, or anonymous (``grant is None``)."""

    grant: TokenGrant | None
    anonymous_writes: bool = False

    def check_read(self, repo: RepoRef, private: bool) -> None:
        """404 for a private repository this caller may not see (the same answer as a missing one)."""
        if private and (self.grant is None or not self.grant.may_read_private(repo)):
            raise RepoNotFound(f"repository {repo.repo_id} ({repo.repo_type}) not found")

    def check_write(self, repo: RepoRef, private: bool | None) -> None:
        """401 without a token, 404 for a private repository it cannot see, 403 outside its namespaces.

        ``private`` is None for a repository that does not exist yet (``create_repo``).
        """
        grant = self.require_writer()
        if grant is None:
            return
        if private:
            self.check_read(repo, True)
        if not grant.may_write(repo):
            raise Forbidden(f"token of {grant.user!r} may not write to {repo.repo_id}: it may write "
                            f"{', '.join(sorted(grant.write)) or 'nowhere'}")

    def require_writer(self) -> TokenGrant | None:
        """The caller's grant; None for an anonymous caller the operator lets write; else 401."""
        if self.grant is None and not self.anonymous_writes:
            raise Unauthorized("this server requires a token for writes: send 'Authorization: Bearer <token>'")
        return self.grant

    def require_token(self) -> TokenGrant:
        if self.grant is None:
            raise Unauthorized("this endpoint needs a token: send 'Authorization: Bearer <token>'")
        return self.grant


@dataclass(frozen=True)
class AuthPolicy:
    """The operator's choices: known tokens, and whether anonymous callers may write."""

    grants: tuple[TokenGrant, ...] = ()
    allow_anonymous_writes: bool = False

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for grant in self.grants:
            if grant.token in seen:
                raise TokenFileError(f"a token is listed twice (second time for {grant.user!r})")
            seen.add(grant.token)

    def identify(self, authorization: str | None) -> Caller:
        """The caller behind an ``Authorization`` header (absent: anonymous; unknown token: 401)."""
        if not authorization:
            return Caller(None, self.allow_anonymous_writes)
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Invalid credentials in Authorization header")
        presented = token.encode("utf-8", "replace")
        match = None
        for grant in self.grants:  # compare with every token, in constant time each
            if hmac.compare_digest(presented, grant.token.encode()):
                match = grant
        if match is None:
            raise Unauthorized("Invalid credentials in Authorization header")
        return Caller(match, self.allow_anonymous_writes)


def grant_from_json(item: Any, where: str) -> TokenGrant:
    if not isinstance(item, Mapping):
        raise TokenFileError(f"{where}: each token entry must be a JSON object")
    unknown = sorted(set(item) - _GRANT_KEYS)
    if unknown:
        raise TokenFileError(f"{where}: unknown keys {unknown} (known: {sorted(_GRANT_KEYS)})")
    user, admin = item.get("user"), item.get("admin", False)
    if not isinstance(user, str) or not user:
        raise TokenFileError(f"{where}: 'user' (the name whoami reports) is required")
    if not isinstance(admin, bool):
        raise TokenFileError(f"{where}: 'admin' must be true or false")
    lists = {k: item.get(k, []) for k in ("write", "read")}
    for key, value in lists.items():
        if not isinstance(value, list):
            raise TokenFileError(f"{where}: '{key}' must be a list of namespaces or 'namespace/name'")
    if not (admin or lists["write"] or lists["read"]):
        raise TokenFileError(f"{where}: token of {user!r} grants nothing; give it 'write', 'read' or 'admin'")
    return TokenGrant(item.get("token"), user, frozenset(lists["write"]), frozenset(lists["read"]), admin)


def load_token_file(path: Path) -> tuple[TokenGrant, ...]:
    """Grants from the operator's JSON token file (shape in the module docstring)."""
    try:
        doc = load_strict(path, max_bytes=16 << 20)
    except AdapterHubError as exc:
        raise TokenFileError(f"token file: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("tokens"), list) or set(doc) != {"tokens"}:
        raise TokenFileError(f"{path}: expected {{\"tokens\": [{{\"token\", \"user\", \"write\", \"read\", \"admin\"}}, ...]}}")
    grants = tuple(grant_from_json(item, f"{path}: tokens[{i}]") for i, item in enumerate(doc["tokens"]))
    AuthPolicy(grants)  # refuses a token listed twice
    return grants
