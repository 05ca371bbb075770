"""Errors the server answers with: each one knows its HTTP status and the Hub's ``X-Error-Code``.

The ``huggingface_hub`` client turns a 404 into a typed exception only when the response carries
``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``), so the code is part of
the error, not something the HTTP layer guesses later. Storage and routing raise these; the handler
is the only place that turns them into responses.
"""

from __future__ import annotations

from adapterhub.errors import AdapterHubError


class HubApiError(AdapterHubError):
    """An error with a place in the Hub HTTP protocol (status, optional ``X-Error-Code``)."""

    status: int = 500
    error_code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        self.headers: dict[str, str] = dict(headers or {})
        self.extra: dict[str, object] = dict(extra or {})
        """More fields for the JSON body next to ``error`` (e.g. ``url`` on a 409 from create)."""


class BadRequest(HubApiError):
    """The request is malformed or names something that can never exist (e.g. ``../`` in a path)."""

    status = 400


class Unauthorized(HubApiError):
    """A write came without a valid bearer token while the server requires one."""

    status = 401


class PrivateRepo(Unauthorized):
    """A private repository read without a valid token; answered as the Hub does (401, ``RepoNotFound``)."""

    error_code = "RepoNotFound"


class RepoNotFound(HubApiError):
    """No repository with this type and id."""

    status = 404
    error_code = "RepoNotFound"


class RevisionNotFound(HubApiError):
    """The repository exists but the branch, PR ref or commit does not."""

    status = 404
    error_code = "RevisionNotFound"


class EntryNotFound(HubApiError):
    """The revision exists but the file or folder does not."""

    status = 404
    error_code = "EntryNotFound"


class NotFound(HubApiError):
    """No route matches the URL (not a repository question)."""

    status = 404


class MethodNotAllowed(HubApiError):
    """The URL exists but not for this HTTP method."""

    status = 405


class RepoExists(HubApiError):
    """``create_repo`` for an id that is taken (the client tolerates it with ``exist_ok=True``)."""

    status = 409


class ParentMismatch(HubApiError):
    """``parentCommit`` is not the branch head any more: someone else committed first."""

    status = 412


class PayloadTooLarge(HubApiError):
    """The request body is larger than the server accepts."""

    status = 413


class LengthRequired(HubApiError):
    """A body without ``Content-Length`` (chunked uploads are not supported)."""

    status = 411
