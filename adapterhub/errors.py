"""One typed error hierarchy for the whole package.

Every error says what went wrong, where (a file, a JSON pointer, a URL, a name) and, when there is
one, what to do about it. The CLI maps each class to an exit code and prints ``str(error)`` on one
line; ``--debug`` shows the traceback. Library users catch the class they care about.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .records import frozen_record


class AdapterHubError(Exception):
    """Base class of every error adapterhub raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")


# --- formats -------------------------------------------------------------------------------------


@frozen_record
class SchemaProblem:
    """One validation failure: where (JSON pointer) and what was expected."""

    pointer: str
    message: str

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


class SchemaError(AdapterHubError):
    """A manifest or index file does not follow its JSON Schema (all problems collected)."""

    def __init__(self, source: str, problems: Sequence[SchemaProblem]) -> None:
        self.source = source
        self.problems = list(problems)
        shown = "; ".join(str(p) for p in self.problems[:8])
        more = f" (+{len(self.problems) - 8} more)" if len(self.problems) > 8 else ""
        super().__init__(f"{source}: {len(self.problems)} problem(s): {shown}{more}")


class DuplicateKeyError(AdapterHubError):
    """A JSON object repeats a key; parsers disagree on which value wins, so we refuse it."""


class JSONFormatError(AdapterHubError):
    """A file is not valid UTF-8 JSON (or JSON Lines)."""


class UnsupportedSchemaVersionError(AdapterHubError):
    """A format's major version is newer than this adapterhub understands."""


class InvalidNameError(AdapterHubError):
    """An adapter name breaks the naming rules."""


class ArgumentKindError(AdapterHubError):
    """A command-line argument is of the wrong kind: a file where a text or name goes, a Hub repo id
    where an index name goes. Exit code 2, like other usage errors; the message names the right form."""

    exit_code = 2


class InvalidVersionError(AdapterHubError):
    """A version or version specifier does not parse (PEP 440)."""


class UnsafePathError(AdapterHubError):
    """A file path could escape its directory or alias another file on some OS."""


# --- registry ------------------------------------------------------------------------------------


class NotFoundError(AdapterHubError):
    """A name, version or file does not exist where it was looked for."""


class YankedError(NotFoundError):
    """Only yanked versions match; pin one exactly (name==X) to use it anyway."""


class ConflictError(AdapterHubError):
    """Two requirements cannot both hold, or a name/version already exists."""


class DependencyCycleError(ConflictError):
    """Dependencies form a cycle."""

    def __init__(self, cycle: Iterable[str]) -> None:
        self.cycle = list(cycle)
        super().__init__("dependency cycle: " + " -> ".join(self.cycle))


class DependencyLimitError(AdapterHubError):
    """A dependency closure is deeper or larger than the resolver accepts (a hostile or broken index)."""


class IndexFormatError(AdapterHubError):
    """A registry index (config or entry file) is malformed."""


# --- index authentication (TUF-style signed metadata; see docs/security.md) ---------------------------


class IndexTrustError(AdapterHubError):
    """A registry index could not be authenticated: unsigned where signatures are required, a file
    that does not match its signed hash, or no trusted root to check it against."""


class IndexSignatureError(IndexTrustError):
    """Signed index metadata lacks the threshold of valid signatures from the keys its root trusts."""


class RollbackError(IndexTrustError):
    """The index offers metadata older than a version this client already trusted (a rollback)."""


class ExpiredMetadataError(IndexTrustError):
    """Signed index metadata is past its expiry (a frozen or abandoned index)."""


class MetadataSizeError(IndexTrustError):
    """An index metadata file is larger than its cap (an endless-data attack or a broken server)."""


class SigningKeyError(IndexTrustError):
    """A signing key is missing or unreadable, or the index's root does not trust it for the role."""


# --- store ---------------------------------------------------------------------------------------


class IntegrityError(AdapterHubError):
    """Bytes do not match the sha256 or size the manifest pins."""


class SizeLimitError(IntegrityError):
    """More bytes arrived than the manifest (or the index's size cap) allows."""


class IndexFileSizeError(SizeLimitError, IndexFormatError):
    """An index file (entry or signed metadata) is larger than its cap: a broken server or an
    endless-data attack. Both a size limit and a malformed index, so either handler catches it."""


class UnsafeFileError(AdapterHubError):
    """A weight file is not a well-formed safetensors file (or is a pickle in disguise)."""


class DiskSpaceError(AdapterHubError):
    """The cache's filesystem has no room for what a pull must write: found before the first byte when the
    free space is known to be short, or when a write fails with ENOSPC / EDQUOT (nothing is left half-written)."""


class OfflineError(AdapterHubError):
    """Offline mode is on and something needed is not in the cache."""


class DownloadError(AdapterHubError):
    """A transfer failed after retries (timeouts, HTTP errors, broken ranges)."""


class SignatureError(AdapterHubError):
    """An adapter signature is missing, malformed, made by no trusted signer, or does not match the files."""


class SignatureMismatchError(SignatureError):
    """A trusted signer's signature verifies, but the files differ from what it signed (changed after signing)."""


class OptionalDependencyError(AdapterHubError):
    """A feature needs packages of an optional extra that is not installed (the message names the extra)."""
AUTH_HINT = ("set HF_TOKEN=<token>, pass --token <token>, or log in once with `hf auth login`; the token "
             "needs access to the repository (write access to publish)")


class AuthenticationError(DownloadError):
    """A Hub-compatible server refused the request for lack of a valid token (HTTP 401/403).

    A :class:`DownloadError` so that a pull still falls back to the next source; the default hint names
    every way to give a token.
    """

    def __init__(self, message: str, *, hint: str | None = AUTH_HINT) -> None:
        super().__init__(message, hint=hint)


class RetryableError(DownloadError):
    """One HTTP attempt failed in a way worth trying again (connection lost, timeout, 429, 5xx)."""

    def __init__(self, message: str, *, hint: str | None = None, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message, hint=hint)


class RedirectError(DownloadError):
    """Too many redirects, or a redirect to a scheme other than http(s) (``file:``, ``ftp:``)."""


class TransferTimeoutError(DownloadError):
    """A transfer ran past its overall deadline or stayed below the minimum rate."""


class InsecureTokenError(AdapterHubError):
    """A token would go over plain http to a non-loopback host; it is never sent that way."""


# --- runtime -------------------------------------------------------------------------------------


class IncompatibleBaseError(AdapterHubError):
    """The adapter was made for another base model than the one it is attached to."""


class UnsupportedArchitectureError(AdapterHubError):
    """The model family has no entry in the architecture table, or the model's modules (their calls,
    outputs or attention kernel) are not what the table expects of them."""


class InvalidArgumentError(AdapterHubError, ValueError):
    """A library function got an argument outside its documented range (no batches, zero iterations);
    the message names the argument. Also a ``ValueError``, which such arguments raised before."""


class AdapterStateError(AdapterHubError):
    """An adapter operation does not fit the model's current state (name taken, not merged, ...)."""


class MergeConflictError(AdapterStateError):
    """Merging, unmerging or activating would make the merged weights compute something other than the
    active composition (an adapter folded into a weight acts before every hook on it, in merge order)."""


class WeightMismatchError(AdapterHubError):
    """Tensors are missing, unexpected or of the wrong shape for the declared adapter."""


class CompositionError(AdapterHubError):
    """A composition block is not defined for these members or nestings."""


class PublishError(AdapterHubError):
    """Publishing failed; nothing was committed or indexed."""
