"""Fetch an adapter's base model from the Hub at the manifest's pinned commit, checked, when no local copy exists.

The bytes travel through ``huggingface_hub`` (its progress bars, retries and resumption) into its own
cache, where transformers, ``hf`` and :mod:`adapterhub.store.base_locator` find them afterwards. Only
what a model needs is fetched: ``config.json``, safetensors weights (one file or an index and its
shards), the tokenizer files and ``generation_config.json``. A base with only pickle weights is refused:
adapterhub never loads a pickle it downloaded.

The client does not check content hashes, so every fetched file is then hashed against the hash the
Hub lists for it at that commit (:mod:`adapterhub.store.hub_repo`), and the safetensors headers go
through our own gate. Until the caller has also compared the weights with the manifest's fingerprint
(:meth:`FetchedBase.confirm`), the snapshot carries an "unverified" marker the locator honours
(:mod:`adapterhub.store.hf_cache`); a file that fails its hash is deleted with its blob.

Offline mode and an explicit base directory never reach this module (:func:`obtain_base`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import settings
from ..errors import DownloadError, IntegrityError, NotFoundError, OfflineError, UnsafeFileError
from ..fileio import HASH_CHUNK
from ..jsonio import load_strict
from ..names import commit_of
from ..progress import hub_download_bars
from ..transport import TokenScope
from .base_locator import (
    BaseLocation,
    env_var_for,
    find_local_base,
    locate_base,
    require_base_id,
    where_looked,
)
from .hf_cache import discard_file, is_ref_name, mark_unverified, mark_verified, record_ref, snapshot_dir
from .hub_repo import HubFile, HubRepo, client_call, client_routed_to, list_files, resolve_revision
from .room import ensure_room
from .safetensors_check import check_safetensors, is_safetensors_path

CONFIG = "config.json"
SAFE_WEIGHTS = "model.safetensors"
SAFE_INDEX = "model.safetensors.index.json"
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")
EXTRA_FILES = ("generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
               "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model",
               "sentencepiece.bpe.model", "tokenizer.model", "chat_template.jinja", "chat_template.json")
"""Besides config and weights: what a tokenizer and generation need, when the repository has it."""
DEFAULT_BRANCH = "main"


class UnpinnedBaseWarning(UserWarning):
    """The base revision was not a pinned commit (none, or a branch), so the branch's current commit was fetched."""


@dataclass(frozen=True)
class FetchedBase:
    """A base fetched into the Hugging Face cache, its files matching the Hub's hashes; not yet confirmed
    against the adapter's fingerprint (see :meth:`confirm`)."""

    repo_id: str
    commit: str
    requested: str | None
    """The revision the manifest pins (None: it pins none, and the default branch was used)."""
    location: BaseLocation
    files: tuple[str, ...]
    downloaded: int
    """Bytes of the files that were not in the cache before."""

    @property
    def pinned(self) -> bool:
        """Whether the manifest pinned the commit (not a branch, not nothing)."""
        return commit_of(self.requested) is not None

    @property
    def unpinned_warning(self) -> str | None:
        """What to tell the user when the base revision was not a pinned commit (None when it was)."""
        if self.pinned:
            return None
        what = (f"the adapter's manifest pins no revision of its base {self.repo_id}" if self.requested is None
                else f"base {self.repo_id} revision {self.requested!r} is a branch or tag, not a commit")
        return (f"{what}; fetched commit {self.commit} (the current {self.requested or DEFAULT_BRANCH}), which may "
                "differ from the one the adapter was trained on")

    def confirm(self) -> None:
        """The weights matched the fingerprint (or the manifest has none): the snapshot may be used from now
        on, offline too; a lookup by the branch it came from finds it as well."""
        if not self.pinned and is_ref_name(self.requested or DEFAULT_BRANCH):
            record_ref(self.location.path, self.requested or DEFAULT_BRANCH)
        mark_verified(self.location.path)

    def reject(self, reason: str) -> None:
        """The base is not the one the adapter needs: the locator keeps skipping this snapshot."""
        mark_unverified(self.location.path, reason)


def _select(listing: dict[str, HubFile], where: str) -> list[str]:
    """The files of ``listing`` (repository root) a model needs; refuses pickle-only weights."""
    if CONFIG not in listing:
        raise NotFoundError(f"{where} has no {CONFIG}: not a transformers model repository")
    weights = [SAFE_WEIGHTS] if SAFE_WEIGHTS in listing else [SAFE_INDEX] if SAFE_INDEX in listing else []
    if not weights:
        pickles = [p for p in PICKLE_WEIGHTS if p in listing] + sorted(
            p for p in listing if "/" not in p and p.startswith("pytorch_model-") and p.endswith(".bin"))
        if pickles:
            raise UnsafeFileError(
                f"{where} has only pickle weights ({', '.join(pickles[:3])}); adapterhub never loads a pickle "
                "it downloaded",
                hint="use a revision that has model.safetensors, or download the base yourself and pass --base PATH")
        raise NotFoundError(f"{where} has no {SAFE_WEIGHTS} or {SAFE_INDEX}")
    return [CONFIG, *weights, *(f for f in EXTRA_FILES if f in listing)]


def _shards(index_path: Path, listing: dict[str, HubFile], where: str) -> list[str]:
    """The shard files a (verified) ``model.safetensors.index.json`` names, each one in the listing."""
    doc = load_strict(index_path)
    weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
    if not isinstance(weight_map, dict) or not weight_map or not all(isinstance(v, str) for v in weight_map.values()):
        raise IntegrityError(f"{where}: {SAFE_INDEX} has no weight_map of tensor name -> file")
    shards = sorted(set(weight_map.values()))
    for shard in shards:
        if shard not in listing or not is_safetensors_path(shard):
            raise IntegrityError(f"{where}: {SAFE_INDEX} names {shard!r}, which is not a safetensors file of "
                                 "this commit")
    return shards


def _check_file(path: Path, file: HubFile, snapshot: Path, where: str) -> None:
    """Hash ``path`` against the Hub's listing and gate safetensors headers; a failure deletes the file and
    its blob, so the bad bytes are never used, and raises."""
    check = file.check()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(HASH_CHUNK):
                check.update(chunk)
        check.finish()
        if is_safetensors_path(file.path):
            check_safetensors(path)
    except (IntegrityError, UnsafeFileError) as exc:
        mark_unverified(snapshot, f"{file.path} failed its check: {exc.message}")  # again: a concurrent fetch
        discard_file(snapshot, file.path)                                         # may have confirmed it
        raise type(exc)(f"base model {where}: {exc.message}; the file was removed from the Hugging Face cache",
                        hint="nothing of this base is used; try again, and if it fails again the server (or "
                             "something between) changes the bytes") from None


def fetch_base(repo_id: str, revision: str | None = None, *, endpoint: str | None = None,
               token: str | bool | None = None, progress: bool | None = None) -> FetchedBase:
    """Fetch the files base model ``repo_id`` needs at ``revision`` (None: the default branch) from the Hub
    the user configured (``endpoint``, else ``HF_ENDPOINT``), each checked against the Hub's hash.

    The result is still marked unverified: call :meth:`FetchedBase.confirm` once the fingerprint
    matched, or :meth:`FetchedBase.reject`. ``progress``: the client's bars (None: on a terminal only).
    """
    scope = TokenScope.configured([endpoint])
    repo = HubRepo(repo_id, endpoint=endpoint, token=token)
    commit = commit_of(revision) or resolve_revision(repo, revision, scope=scope).commit
    where = f"{repo_id}@{commit[:12]} ({repo.base_url})"
    listing = {f.path: f for f in list_files(repo, commit, scope=scope)}
    wanted = _select(listing, where)
    snapshot = snapshot_dir(repo_id, commit)

    def room_for(names: Sequence[str]) -> None:
        ensure_room(snapshot, sum(listing[n].size for n in names if not (snapshot / n).exists()),
                    f"base model {where}")

    room_for(wanted)
    mark_unverified(snapshot, f"fetch of {repo_id}@{commit} from {repo.base_url} not finished")
    downloaded = 0

    def get(names: Sequence[str]) -> None:
        nonlocal downloaded
        for name in names:
            cached = (snapshot / name).exists()
            path = Path(client_call(repo, f"base model {where}: downloading {name}",
                                    lambda api, name=name: api.hf_hub_download(repo_id, name, revision=commit),
                                    scope))
            if path != snapshot / name:
                raise IntegrityError(f"base model {where}: the client stored {name} at {path}, not in the "
                                     f"snapshot {snapshot}")
            downloaded += 0 if cached else listing[name].size
            _check_file(path, listing[name], snapshot, where)

    with hub_download_bars(progress), client_routed_to(repo.base_url):
        get(wanted)
        if SAFE_INDEX in wanted:
            shards = _shards(snapshot / SAFE_INDEX, listing, where)
            room_for(shards)
            get(shards)
            wanted += shards
    location = BaseLocation(snapshot, f"fetched from {repo.base_url} ({repo_id}@{commit})")
    return FetchedBase(repo_id, commit, revision, location, tuple(wanted), downloaded)


def obtain_base(repo_id: str | None, revision: str | None = None, *, explicit: str | Path | None = None,
                offline: bool | None = None, endpoint: str | None = None, token: str | bool | None = None,
                progress: bool | None = None) -> tuple[BaseLocation, FetchedBase | None]:
    """The base's local directory, fetched first when it is nowhere on this machine.

    ``explicit`` (``--base``) and offline mode (``offline``, else the environment) only look locally, as
    :func:`~adapterhub.store.base_locator.locate_base` does. A fetched base comes with its
    :class:`FetchedBase` (the caller confirms or rejects it after the fingerprint check); a revision-less
    manifest also raises an :class:`UnpinnedBaseWarning` naming the commit used.
    """
    if explicit is not None:
        return locate_base(repo_id, explicit=explicit), None
    repo_id = require_base_id(repo_id)
    found = find_local_base(repo_id, revision=revision)
    if found is not None:
        return found, None
    named = f"{repo_id}{'@' + revision if revision else ''}"
    if settings.offline() if offline is None else offline:
        raise OfflineError(
            f"base model {named} is not on this machine (looked at {where_looked(repo_id)}) and offline mode "
            "is on, so it was not downloaded",
            hint=f"fetch it once online (`adapterhub pull ADAPTER --with-base`, or `adapterhub run` without "
                 f"--offline), pass --base PATH, or set {env_var_for(repo_id)}")
    try:
        fetched = fetch_base(repo_id, revision, endpoint=endpoint, token=token, progress=progress)
    except (NotFoundError, DownloadError) as exc:  # the Hub answers 401 for a missing repo too
        first = exc.hint or ("" if isinstance(exc, NotFoundError) else "check the network and HF_ENDPOINT")
        local = f"pass --base PATH or set {env_var_for(repo_id)}"
        raise type(exc)(f"base model {named} is not on this machine (looked at {where_looked(repo_id)}), and "
                        f"fetching it failed: {exc.message}", hint=f"{first}; or {local}" if first else local) from None
    if fetched.unpinned_warning:
        warnings.warn(fetched.unpinned_warning, UnpinnedBaseWarning, stacklevel=2)
    return fetched.location, fetched
