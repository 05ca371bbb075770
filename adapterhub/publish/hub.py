"""``adapterhub publish DIR --repo ORG/NAME``: one atomic Hub commit, then the index entry.

Order, and why:

1. Check the directory (every size and sha256, nothing unlisted) and that name@version is not in the
   index yet — before any network traffic.
2. Create the repo if needed and read its head commit. If the head's ``adapterhub.json`` already is
   this name@version, either it is exactly the manifest we would upload (a publish whose index step
   failed: reuse that commit) or publishing is refused (releases are immutable).
3. Upload every file plus ``adapterhub.json`` (and delete files the previous version had) in ONE
   ``create_commit`` with ``parent_commit`` = the head read in step 2: if anyone committed in
   between, the Hub answers 412 and nothing is committed. The Hub applies a commit whole or not at
   all, so a failed upload leaves no half-made commit.
4. Only then add the index entry. Its manifest carries ``{"type": "hf", "repo_id", "revision":
   <the new commit>}`` as its first source (and, for a signed directory, the ``model.sig`` file that
   was uploaded with the rest: see ``sign.py``). The ``adapterhub.json`` inside the commit cannot contain
   its own commit id, so it has no source for this repo; the index entry is the published truth,
   and a pull checks every file against the sha256 in it, whichever copy of the manifest you hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import settings
from ..errors import AdapterHubError, AuthenticationError, ConflictError, PublishError
from ..jsonio import MAX_JSON_BYTES, dumps_pretty, loads_strict
from ..manifest import MANIFEST_FILENAME, SIGNATURE_FILENAME, HfSource, Manifest, manifest_to_dict
from ..settings import PUBLIC_HUB
from ..store.hub_repo import client_routed_to
from .release import check_version_free, load_release, require_index, with_sources
from .sign import with_signature


@dataclass
class HubPublishResult:
    repo_id: str
    endpoint: str
    manifest: Manifest
    """The final manifest (the index entry's): first source = this repo at ``commit``."""
    entry: dict[str, Any]
    commit: str | None
    """The commit holding the files (``None`` for a dry run)."""
    operations: list[str]
    index: Path | None = None
    pull_request: str | None = None
    reused_commit: bool = False
    dry_run: bool = False


def _status(exc: BaseException) -> int | None:
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _refused(where: str, status: int | None, detail: str) -> AuthenticationError | None:
    """The typed error for a 401/403 answer (``None`` for any other status)."""
    if status not in (401, 403):
        return None
    why = "no valid token was sent" if status == 401 else "the token has no write access to this repository"
    return AuthenticationError(f"{where}: HTTP {status}, {why} ({detail}); nothing was published")


def _remote_bytes(endpoint: str, repo_id: str, commit: str, path: str, token: str | bool | None) -> bytes | None:
    """The file ``path`` at ``commit`` (None when the repo has none), through the shared transport
    (the token goes only to the endpoint the user named)."""
    from ..transport import TokenScope, Transport  # deferred: CLI import cost (socket, threading)

    url = f"{endpoint}/{repo_id}/resolve/{commit}/{path}"
    with Transport(scope=TokenScope.configured([endpoint])) as transport:
        try:
            got = transport.fetch(url, max_bytes=MAX_JSON_BYTES, token=token, keep=(401, 403, 404))
        except AdapterHubError as exc:
            raise PublishError(f"{url}: {exc.message}; nothing was published") from None
    if got.status == 404:
        return None
    refused = _refused(url, got.status, "refused")
    if refused is not None:
        raise refused
    return got.body


def _remote_manifest(endpoint: str, repo_id: str, commit: str, token: str | bool | None) -> dict[str, Any] | None:
    """``adapterhub.json`` at ``commit`` (None when the repo has none)."""
    content = _remote_bytes(endpoint, repo_id, commit, MANIFEST_FILENAME, token)
    if content is None:
        return None
    try:
        data = loads_strict(content, f"{endpoint}/{repo_id}/resolve/{commit}/{MANIFEST_FILENAME}")
    except AdapterHubError:
        return None
    return data if isinstance(data, dict) else None


def _same_signature(local: Path, existing: list[str], fetch: Any) -> bool:
    """Whether the remote commit holds this directory's ``model.sig`` (trivially, when it is unsigned)."""
    sig = local / SIGNATURE_FILENAME
    if not sig.is_file():
        return True
    return SIGNATURE_FILENAME in existing and fetch(SIGNATURE_FILENAME) == sig.read_bytes()


def _check_remote(remote: dict[str, Any] | None, upload: Manifest, repo_id: str) -> bool:
    """True when the repo's head already holds exactly this release (the manifest we would upload);
    raises when it holds this name@version with any other content, or another adapter."""
    if remote is None:
        return False
    name, version = remote.get("name"), remote.get("version")
    if name != upload.name:
        raise ConflictError(f"{repo_id} holds the adapter {name!r}, not {upload.name!r}",
                            hint="publish each adapter name to its own repository")
    if version != upload.version:
        return False
    if remote == manifest_to_dict(upload):
        return True
    raise ConflictError(f"{repo_id} already holds {name} {version} with different content; releases are immutable",
                        hint="publish a new version (bump `version` in adapterhub.json)")


def publish_to_hub(directory: str | Path, repo_id: str, *, endpoint: str | None = None,
                   token: str | bool | None = None, private: bool = False, create_pr: bool = False,
                   dry_run: bool = False, index: str | Path | None = None, api: Any = None,
                   keys: str | Path | None = None) -> HubPublishResult:
    """Publish the packaged adapter in ``directory`` to ``repo_id`` (see the module docstring).

    ``index``: a registry index directory to add the entry to (else only the result carries it); a signed
    one is re-signed with ``keys`` (or ``ADAPTERHUB_INDEX_KEYS``), checked before anything is uploaded.
    ``api``: an ``HfApi`` to use (default: one for ``endpoint`` and ``token``).
    """
    from ..registry.entries import entry_for  # deferred: CLI import cost (store, registry)
    from ..registry.signing import signing_keyring  # deferred: CLI import cost (store, registry)

    d = Path(directory)
    manifest = load_release(d)
    index_root = require_index(index) if index is not None else None
    keyring = None
    if index_root is not None:
        check_version_free(index_root, manifest)
        keyring = signing_keyring(index_root, keys)
    ep = (endpoint or settings.hub_endpoint()).rstrip("/")
    keep = tuple(s for s in manifest.sources or () if not (isinstance(s, HfSource) and s.repo_id == repo_id))
    upload = with_sources(manifest, keep[0], keep[1:]) if keep else _without_sources(manifest)
    upload_bytes = dumps_pretty(manifest_to_dict(upload)).encode()
    release = with_signature(d, manifest)  # + model.sig, when the directory is signed
    paths = [f.path for f in release.files] + [MANIFEST_FILENAME]

    def final(commit: str) -> Manifest:
        return with_sources(release, HfSource(repo_id, commit, endpoint=None if ep == PUBLIC_HUB else ep), keep)

    if dry_run:
        planned = final("0" * 40)
        return HubPublishResult(repo_id, ep, planned, entry_for(planned).to_json(), None, paths, index_root,
                                dry_run=True)
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    from ..transport import check_token_destination  # deferred: CLI import cost (socket, threading)

    check_token_destination(ep, token)  # a token never crosses a network in clear text
    api = api or HfApi(endpoint=ep, token=token)
    with client_routed_to(ep):
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model", token=token)
            head = api.repo_info(repo_id, revision="main", token=token).sha
            existing = api.list_repo_files(repo_id, revision=head, token=token)
        except Exception as exc:  # the client's error types differ between 0.x and 1.x+
            raise _refused(f"{ep}/{repo_id}", _status(exc), _first_line(exc)) or \
                PublishError(f"{ep}/{repo_id}: {_first_line(exc)}; nothing was published") from None
        reused = _check_remote(_remote_manifest(ep, repo_id, head, token), upload, repo_id) and _same_signature(
            d, existing, lambda path: _remote_bytes(ep, repo_id, head, path, token))  # else commit it with model.sig
        pr_url = None
        if reused:
            commit = head
        else:
            ops: list[Any] = [CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=str(d / f.path))
                              for f in release.files]
            ops.append(CommitOperationAdd(path_in_repo=MANIFEST_FILENAME, path_or_fileobj=upload_bytes))
            ops += [CommitOperationDelete(path_in_repo=p) for p in existing
                    if p not in paths and not any(s.startswith(".") for s in p.split("/"))]
            try:
                info = api.create_commit(repo_id, ops, commit_message=f"Publish {manifest.name} {manifest.version}",
                                         commit_description="Published with adapterhub: files and adapterhub.json "
                                         "in one commit.", parent_commit=head, create_pr=create_pr, token=token)
            except Exception as exc:
                if _status(exc) == 412:
                    raise ConflictError(f"{repo_id}: someone committed to the repository while publishing "
                                        f"(the head moved from {head[:12]}); nothing was committed or indexed",
                                        hint="check the repository, then run publish again") from None
                raise _refused(f"{ep}/{repo_id}", _status(exc), _first_line(exc)) or \
                    PublishError(f"{ep}/{repo_id}: commit failed: {_first_line(exc)}; nothing was committed "
                                 "or indexed") from None
            commit = info.oid
            pr_url = getattr(info, "pr_url", None)
    published = final(commit)
    result = HubPublishResult(repo_id, ep, published, entry_for(published).to_json(), commit, paths, index_root,
                              pr_url, reused)
    if index_root is not None:
        from ..registry.writer import add_release  # deferred: CLI import cost (store, registry)

        try:
            result.entry = add_release(index_root, published).to_json()
            if keyring is not None:
                from ..registry.signing import sign_index  # deferred: CLI import cost (store, registry)

                sign_index(index_root, keyring)
        except Exception as exc:
            raise PublishError(f"committed {repo_id}@{commit} but the index at {index_root} refused the entry: "
                               f"{_first_line(exc)}", hint="fix the index and run publish again: it reuses the "
                               "commit instead of uploading twice") from None
    return result


def _without_sources(manifest: Manifest) -> Manifest:
    import dataclasses

    return dataclasses.replace(manifest, sources=None)
