"""Fetching a base model: the real huggingface_hub client against the test server, into a Hugging Face cache.

The bases here are hand-built safetensors files (no torch); fingerprints, ``run`` and ``pull --with-base``
on a real tiny model are in ``tests/cli/test_run_base_fetch.py``.
"""

from __future__ import annotations

import json
import warnings

import pytest
from support.base_fetch_support import no_local_bases, serve_base
from support.server_fixtures import ADMIN_TOKEN
from support.store_support import safetensors_bytes

from adapterhub.errors import (
    AuthenticationError,
    IntegrityError,
    NotFoundError,
    OfflineError,
    UnsafeFileError,
)
from adapterhub.store.base_fetch import UnpinnedBaseWarning, fetch_base, obtain_base
from adapterhub.store.base_locator import find_local_base, locate_base
from adapterhub.store.hf_cache import unverified_reason
from adapterhub.store.hub_repo import HubRepo, list_files

pytestmark = pytest.mark.network_local

REPO_ID = "org/tiny-base"
CONFIG = json.dumps({"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2}).encode()
BASE = {"config.json": CONFIG, "model.safetensors": safetensors_bytes(20_000), "vocab.txt": b"[PAD]\n[UNK]\n",
        "tokenizer_config.json": b"{}", "README.md": b"# not needed", "pytorch_model.bin": b"pickle, never fetched"}


@pytest.fixture
def served(hub, cache, monkeypatch, tmp_path):
    """The base on the server (commit returned), and a machine with no base of it anywhere."""
    hf_cache = no_local_bases(monkeypatch, tmp_path, REPO_ID)
    return serve_base(hub, monkeypatch, REPO_ID, BASE), hf_cache


def test_fetch_lands_in_the_hf_cache_checked_and_is_found_offline_once_confirmed(served, hub, monkeypatch):
    commit, hf_cache = served
    fetched = fetch_base(REPO_ID, commit)
    snapshot = hf_cache / "models--org--tiny-base" / "snapshots" / commit
    assert fetched.location.path == snapshot and fetched.commit == commit and fetched.pinned
    assert sorted(fetched.files) == ["config.json", "model.safetensors", "tokenizer_config.json", "vocab.txt"]
    for name in fetched.files:  # in the client's own layout: a pointer into blobs/
        assert (snapshot / name).read_bytes() == BASE[name] and (snapshot / name).is_symlink()
    assert not (snapshot / "pytorch_model.bin").exists() and not (snapshot / "README.md").exists()
    assert fetched.downloaded == sum(len(BASE[n]) for n in fetched.files)
    assert find_local_base(REPO_ID, revision=commit) is None  # not before the fingerprint was compared
    fetched.confirm()
    hub.server.stop()
    monkeypatch.setenv("ADAPTERHUB_OFFLINE", "1")
    assert locate_base(REPO_ID, revision=commit).path == snapshot
    assert obtain_base(REPO_ID, commit) == (locate_base(REPO_ID, revision=commit), None)


def test_a_tampered_byte_is_refused_and_nothing_of_it_stays_usable(served, hub, monkeypatch):
    commit, hf_cache = served
    assert {f.path: f for f in list_files(HubRepo(REPO_ID), commit)}["model.safetensors"].is_lfs
    hub.server.fault_plan.flip_byte(path="model.safetensors")
    with pytest.raises(IntegrityError, match="model.safetensors.*sha256.*removed from the Hugging Face cache"):
        fetch_base(REPO_ID, commit)
    snapshot = hf_cache / "models--org--tiny-base" / "snapshots" / commit
    assert not (snapshot / "model.safetensors").exists()
    blobs = hf_cache / "models--org--tiny-base" / "blobs"
    assert all(b.read_bytes() in BASE.values() for b in blobs.iterdir())  # the bad blob went with its pointer
    assert find_local_base(REPO_ID, revision=commit) is None and unverified_reason(snapshot)
    again = fetch_base(REPO_ID, commit)  # the next fetch downloads it anew; config.json (before it) stays
    assert (snapshot / "model.safetensors").read_bytes() == BASE["model.safetensors"]
    assert again.downloaded == sum(len(BASE[n]) for n in again.files if n != "config.json")


def test_a_tampered_small_file_is_refused_too(served, hub):
    """A small file is listed with its git blob sha1 only (not LFS): that hash is checked too."""
    commit, _ = served
    assert not {f.path: f for f in list_files(HubRepo(REPO_ID), commit)}["config.json"].is_lfs
    hub.server.fault_plan.flip_byte(path="config.json", fraction=0.0)
    with pytest.raises(IntegrityError, match="config.json"):
        fetch_base(REPO_ID, commit)


@pytest.mark.parametrize("target", ["model.safetensors", "vocab.txt"])
def test_a_listing_that_lies_about_a_hash_or_gives_none_is_refused(served, hub, target):
    commit, hf_cache = served
    hub.server.fault_plan.tamper_listing(path=target)
    with pytest.raises(IntegrityError, match=target):
        fetch_base(REPO_ID, commit)
    snapshot = hf_cache / "models--org--tiny-base" / "snapshots" / commit
    assert not (snapshot / target).exists() and find_local_base(REPO_ID, revision=commit) is None
    hub.server.fault_plan.clear()
    hub.server.fault_plan.tamper_listing(path=target, unhashed=True)
    with pytest.raises(IntegrityError, match="cannot be checked"):
        fetch_base(REPO_ID, commit)


def test_pickle_only_bases_are_refused_before_any_download(hub, cache, monkeypatch, tmp_path):
    hf_cache = no_local_bases(monkeypatch, tmp_path, "org/pickled")
    commit = serve_base(hub, monkeypatch, "org/pickled", {"config.json": CONFIG, "pytorch_model.bin": b"\x80\x02}q"})
    with pytest.raises(UnsafeFileError, match="only pickle weights.*pytorch_model.bin") as info:
        fetch_base("org/pickled", commit)
    assert "--base" in str(info.value) and not hf_cache.exists()


def test_sharded_safetensors_fetch_every_shard_the_index_names(hub, cache, monkeypatch, tmp_path):
    no_local_bases(monkeypatch, tmp_path, "org/sharded")
    shards = {"model-00001-of-00002.safetensors": safetensors_bytes(64, name="a"),
              "model-00002-of-00002.safetensors": safetensors_bytes(64, name="b", seed=2)}
    index = json.dumps({"weight_map": {"a": "model-00001-of-00002.safetensors",
                                       "b": "model-00002-of-00002.safetensors"}}).encode()
    commit = serve_base(hub, monkeypatch, "org/sharded", {"config.json": CONFIG,
                                                          "model.safetensors.index.json": index, **shards})
    fetched = fetch_base("org/sharded", commit)
    assert set(shards) < set(fetched.files)
    assert all((fetched.location.path / n).read_bytes() == b for n, b in shards.items())


def test_an_index_naming_a_file_outside_the_commit_is_refused(hub, cache, monkeypatch, tmp_path):
    no_local_bases(monkeypatch, tmp_path, "org/bad-index")
    index = json.dumps({"weight_map": {"a": "../elsewhere.safetensors"}}).encode()
    commit = serve_base(hub, monkeypatch, "org/bad-index", {"config.json": CONFIG,
                                                            "model.safetensors.index.json": index})
    with pytest.raises(IntegrityError, match="not a safetensors file of this commit"):
        fetch_base("org/bad-index", commit)


def test_a_hostile_safetensors_header_is_refused_and_removed(hub, cache, monkeypatch, tmp_path):
    no_local_bases(monkeypatch, tmp_path, "org/hostile")
    bad = b"\x10\x00\x00\x00\x00\x00\x00\x00" + b'{"w":{"dtype":1}}'[:16]
    commit = serve_base(hub, monkeypatch, "org/hostile", {"config.json": CONFIG, "model.safetensors": bad})
    with pytest.raises(UnsafeFileError):
        fetch_base("org/hostile", commit)
    assert find_local_base("org/hostile", revision=commit) is None


def test_a_revision_less_base_uses_main_warns_with_the_commit_and_is_found_by_branch(served, hub, monkeypatch):
    commit, _ = served
    with pytest.warns(UnpinnedBaseWarning, match=commit):
        location, fetched = obtain_base(REPO_ID, None)
    assert fetched is not None and fetched.commit == commit and not fetched.pinned
    fetched.confirm()
    hub.server.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # found locally now: no fetch, no warning
        again, refetched = obtain_base(REPO_ID, None)
    assert again.path == location.path and refetched is None and "@main" in again.how


def test_a_branch_revision_is_resolved_warned_about_and_recorded(served, hub, monkeypatch, tmp_path):
    commit, hf_cache = served
    with pytest.warns(UnpinnedBaseWarning, match=f"'main' is a branch or tag, not a commit; fetched commit {commit}"):
        _, fetched = obtain_base(REPO_ID, "main")
    fetched.confirm()
    assert (hf_cache / "models--org--tiny-base" / "refs" / "main").read_text() == commit
    assert fetch_base(REPO_ID, commit).unpinned_warning is None


def test_offline_uses_only_local_files_and_says_what_to_do(served, hub, monkeypatch):
    commit, hf_cache = served
    hub.server.stop()  # a request would fail with a connection error, not OfflineError
    monkeypatch.setenv("ADAPTERHUB_OFFLINE", "1")
    with pytest.raises(OfflineError) as info:
        obtain_base(REPO_ID, commit)
    msg = str(info.value)
    assert REPO_ID in msg and "offline" in msg and "--with-base" in msg and "--base PATH" in msg
    assert not hf_cache.exists()
    with pytest.raises(OfflineError):
        obtain_base(REPO_ID, commit, offline=True)


def test_an_explicit_base_directory_never_fetches(served, hub, tmp_path):
    commit, hf_cache = served
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "config.json").write_bytes(CONFIG)
    hub.server.stop()
    location, fetched = obtain_base(REPO_ID, commit, explicit=tmp_path / "mine")
    assert location.how == "--base" and fetched is None and not hf_cache.exists()


def test_a_base_missing_everywhere_names_both_places(served, hub):
    with pytest.raises(AuthenticationError) as info:  # as on the Hub: missing, or private without a token
        obtain_base("org/nowhere", "a" * 40)
    with pytest.raises(NotFoundError) as found:
        obtain_base("org/nowhere", "a" * 40, token=ADMIN_TOKEN)
    for msg in (str(info.value), str(found.value)):
        assert "org/nowhere" in msg and "not on this machine" in msg and "fetching it failed" in msg
        assert "--base PATH" in msg


def test_a_private_base_gets_the_users_token_for_the_endpoint_they_configured(hub, cache, monkeypatch, tmp_path):
    no_local_bases(monkeypatch, tmp_path, "org/private-base")
    commit = serve_base(hub, monkeypatch, "org/private-base", BASE, private=True)
    with pytest.raises(AuthenticationError):
        fetch_base("org/private-base", commit)
    assert fetch_base("org/private-base", commit, token=ADMIN_TOKEN).commit == commit
    monkeypatch.setenv("HF_TOKEN", ADMIN_TOKEN)  # the token huggingface_hub finds, sent to HF_ENDPOINT only
    assert fetch_base("org/private-base", commit).commit == commit
    with pytest.raises(AuthenticationError):
        fetch_base("org/private-base", commit, token=False)


def test_a_base_larger_than_the_free_space_is_refused_before_any_download(served, hub, monkeypatch):
    """The base's files must fit the Hugging Face cache's filesystem; nothing is fetched or marked otherwise."""
    import shutil
    from collections import namedtuple

    from adapterhub.errors import DiskSpaceError

    commit, hf_cache = served
    needed = sum(len(BASE[n]) for n in ("config.json", "model.safetensors", "tokenizer_config.json", "vocab.txt"))
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(1 << 40, 0, needed - 1))
    with pytest.raises(DiskSpaceError, match=f"needs {needed:,} bytes"):
        fetch_base(REPO_ID, commit)
    assert not (hf_cache / "models--org--tiny-base" / "snapshots").exists()
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(1 << 40, 0, needed))
    assert fetch_base(REPO_ID, commit).downloaded == needed
