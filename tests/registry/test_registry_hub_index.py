"""An index in a Hub dataset repo (``--index hf:datasets/ORG/NAME[@REV]``), read with the real
``huggingface_hub`` client against our Hub-compatible server on 127.0.0.1: revision → commit once per
read, files cached per commit (no request for a cached one), offline reads, signatures, lockfiles.
"""

# ruff: noqa: F811 - fixtures come back as test arguments
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support.hub_index_support import LOCATION, env, team_index  # noqa: F401 - env is a fixture
from support.index_signing_support import add, tamper_entry
from support.server_fixtures import HubClient

from adapterhub.errors import IndexTrustError, InvalidNameError, NotFoundError, OfflineError
from adapterhub.publish import push_index
from adapterhub.registry import SearchQuery, open_index, resolve, search
from adapterhub.registry.keys import generate_keyring
from adapterhub.registry.lockfile import build_lock
from adapterhub.registry.signing import sign_index
from adapterhub.registry.trust import location_key, pin_root
from adapterhub.server import HubServer, RepoRef

REF = RepoRef("dataset", "team", "registry")


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    return team_index(tmp_path, "adapter-00", "adapter-01")


def _versions(location: str, name: str = "adapter-00") -> list[str]:
    return [e.version for e in open_index(location).entries(name)]


def test_read_at_main_a_branch_name_and_a_commit(env: HubClient, index_dir: Path) -> None:
    first = push_index(index_dir, LOCATION).commit
    add(index_dir, "adapter-00", "1.1.0")
    second = push_index(index_dir, LOCATION).commit
    assert first and second and first != second
    idx = open_index(LOCATION)
    assert idx.location == f"{LOCATION}@{second}"  # the revision is resolved to one commit for the whole read
    assert [e.version for e in idx.entries("adapter-00")] == ["1.0.0", "1.1.0"]
    assert resolve(idx, "adapter-00").version == "1.1.0"
    assert [r["name"] for r in search(idx, SearchQuery("adapter"))] == ["adapter-00", "adapter-01"]
    assert _versions(f"{LOCATION}@main") == ["1.0.0", "1.1.0"]
    assert open_index(f"{LOCATION}@{first}").location == f"{LOCATION}@{first}"
    assert _versions(f"{LOCATION}@{first}") == ["1.0.0"]  # an older commit is an older index state
    assert open_index(LOCATION).entries("unknown-name") == []


def test_cached_files_of_a_commit_need_no_server(env: HubClient, index_dir: Path, hub_server: HubServer) -> None:
    commit = push_index(index_dir, LOCATION).commit
    assert _versions(f"{LOCATION}@{commit}") == ["1.0.0"]
    hub_server.stop()  # not offline mode: a commit's files never change, so the cached copy is used as it is
    assert _versions(f"{LOCATION}@{commit}") == ["1.0.0"]


def test_offline_reads_the_cache_and_says_when_nothing_is_cached(env: HubClient, index_dir: Path,
                                                                  hub_server: HubServer,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    commit = push_index(index_dir, LOCATION).commit
    assert _versions(LOCATION) == ["1.0.0"]
    hub_server.stop()
    for var in ("ADAPTERHUB_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(var, "1")
        idx = open_index(LOCATION)  # main -> the commit recorded at the last online read
        assert idx.location == f"{LOCATION}@{commit}"
        assert [e.version for e in idx.entries("adapter-00")] == ["1.0.0"]
        with pytest.raises(OfflineError, match="adapter-01.* is not cached"):
            idx.entries("adapter-01")  # never read: not cached
        monkeypatch.delenv(var)
    monkeypatch.setenv("ADAPTERHUB_OFFLINE", "1")
    with pytest.raises(OfflineError, match="never read online, so nothing of it is cached"):
        open_index("hf:datasets/team/other")
    with pytest.raises(OfflineError, match="never read online"):
        open_index(f"{LOCATION}@some-branch")


def test_model_repo_form_and_bad_locations_are_refused(env: HubClient) -> None:
    with pytest.raises(InvalidNameError, match="names a model repo") as info:
        open_index("hf:team/registry")
    assert "hf:datasets/team/registry" in (info.value.hint or "")
    for bad in ("hf:datasets/team", "hf:datasets/team/registry/extra", "hf:datasets/team/registry@a..b",
                "hf:datasets/../registry"):
        with pytest.raises(InvalidNameError):
            open_index(bad)
    with pytest.raises(NotFoundError, match="no such dataset repo"):
        open_index("hf:datasets/team/missing")


def test_trust_is_per_repository_not_per_revision() -> None:
    key = location_key(LOCATION)
    assert key == LOCATION
    assert location_key(f"{LOCATION}@main") == key == location_key(f"{LOCATION}@{'a' * 40}")


def test_signed_index_verifies_and_a_tampered_served_file_is_refused(env: HubClient, index_dir: Path,
                                                                     hub_server: HubServer, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    keys = generate_keyring(tmp_path / "keys")
    sign_index(index_dir, keys)
    push_index(index_dir, LOCATION)
    pin_root(LOCATION, (index_dir / "metadata" / "root.json").read_bytes())
    idx = open_index(LOCATION)
    assert idx.trusted_state() is not None and _versions(LOCATION) == ["1.0.0"]
    # the Hub now serves a self-consistent but different entry file for adapter-01 (same commit, same size)
    path = "ad/ap/adapter-01"
    entry = hub_server.storage.resolve(REF, "main").files[path]
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    (tampered / "ad" / "ap").mkdir(parents=True)
    (tampered / path).write_bytes((index_dir / path).read_bytes())
    tamper_entry(tampered, "adapter-01", "f" * 64)
    blob = hub_server.storage.blob_path(entry.sha256)
    genuine = blob.read_bytes()
    os.chmod(blob, 0o644)
    blob.write_bytes((tampered / path).read_bytes())
    with pytest.raises(IndexTrustError, match="does not match the signed index metadata"):
        open_index(LOCATION).entries("adapter-01")
    # the refused copy was not kept in the per-commit cache: once the genuine bytes are served again (a
    # man in the middle gone), the next read gets them
    blob.write_bytes(genuine)
    assert [e.version for e in open_index(LOCATION).entries("adapter-01")] == ["1.0.0"]


def test_lockfile_pins_the_commit_and_locking_at_it_reproduces_the_lock(env: HubClient, index_dir: Path) -> None:
    commit = push_index(index_dir, LOCATION).commit
    lock = build_lock(open_index(LOCATION), ["adapter-00"])
    assert lock.index is not None and lock.index.location == f"{LOCATION}@{commit}"
    add(index_dir, "adapter-00", "1.1.0")
    push_index(index_dir, LOCATION)
    assert build_lock(open_index(LOCATION), ["adapter-00"]).adapters[0].version == "1.1.0"
    again = build_lock(open_index(lock.index.location), ["adapter-00"])
    assert json.loads(again.dumps()) == json.loads(lock.dumps())


def test_a_private_index_is_read_with_the_token_of_the_configured_endpoint(env: HubClient, index_dir: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    env.api.create_repo("team/registry", repo_type="dataset", private=True)
    push_index(index_dir, LOCATION)
    assert _versions(LOCATION) == ["1.0.0"]  # HF_TOKEN goes to HF_ENDPOINT, the endpoint the user configured
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(env.cache_dir.parent / "cache-2"))
    with pytest.raises(NotFoundError, match="no token was sent"):
        open_index(LOCATION)


def test_cli_trust_and_verify_a_hub_index(env: HubClient, index_dir: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from adapterhub.cli import cli

    sign_index(index_dir, generate_keyring(tmp_path / "keys"))
    push_index(index_dir, LOCATION)
    root = index_dir / "metadata" / "root.json"
    trusted = CliRunner().invoke(cli, ["index", "trust", LOCATION, "--root", str(root)])
    assert trusted.exit_code == 0, (trusted.output, trusted.exception)
    assert f"pinned root of {LOCATION} " in trusted.output
    verified = CliRunner().invoke(cli, ["index", "verify", LOCATION, "--json"])
    assert verified.exit_code == 0, (verified.output, verified.exception)
    report = json.loads(verified.output)
    assert report["ok"] and report["index"] == LOCATION and "pinned" in report["root"] and report["targets"] >= 3
