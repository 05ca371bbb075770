"""The real ``huggingface_hub`` client against the adapterhub server: upload, commit, download, list.

Runs unchanged with hub 0.36 (/work/venv) and 2.x (/work/venv5).
"""

# ruff: noqa: F811 - the fixtures imported from server_fixtures come back as test arguments

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder
from support.server_fixtures import HubClient, sha256_of

pytestmark = pytest.mark.network_local


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "adapter"
    (folder / "sub" / "deeper").mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 8}\n')
    (folder / "adapter_model.safetensors").write_bytes(os.urandom(300_000))
    (folder / "sub" / "deeper" / "notes.txt").write_text("nested\n")
    (folder / "README.md").write_text("---\nlibrary_name: peft\nlicense: apache-2.0\n---\n# adapter\n")
    (folder / "empty.bin").write_bytes(b"")
    return folder


def _status(error: BaseException) -> int:
    return error.response.status_code  # type: ignore[attr-defined]


def test_create_upload_download_roundtrip(hub: HubClient, tmp_path: Path) -> None:
    url = hub.api.create_repo("acme/sst2-lora")
    assert url.repo_id == "acme/sst2-lora"
    assert str(url) == f"{hub.endpoint}/acme/sst2-lora"
    assert hub.api.create_repo("acme/sst2-lora", exist_ok=True).repo_id == "acme/sst2-lora"

    folder = _folder(tmp_path)
    info = hub.api.upload_folder(repo_id="acme/sst2-lora", folder_path=folder, commit_message="first upload")
    assert len(info.oid) == 40 and info.commit_url == f"{hub.endpoint}/acme/sst2-lora/commit/{info.oid}"
    assert info.repo_url.repo_id == "acme/sst2-lora"

    for name in (
        "adapter_model.safetensors",
        "adapter_config.json",
        "sub/deeper/notes.txt",
        "README.md",
        "empty.bin",
    ):
        local = hub.download("acme/sst2-lora", name, revision=info.oid)
        assert local.read_bytes() == (folder / name).read_bytes(), name
    # By branch too, into another cache: same bytes, and the cache names the commit we made.
    other = hub.download("acme/sst2-lora", "adapter_model.safetensors", cache_dir=tmp_path / "c2")
    assert sha256_of(other) == sha256_of(folder / "adapter_model.safetensors")
    assert info.oid in str(other)


def test_repo_info_and_listings(hub: HubClient, tmp_path: Path) -> None:
    hub.api.create_repo("acme/listing")
    folder = _folder(tmp_path)
    commit = hub.api.upload_folder(repo_id="acme/listing", folder_path=folder)

    info = hub.api.model_info("acme/listing")
    assert info.id == "acme/listing" and info.sha == commit.oid
    siblings = {s.rfilename: s for s in info.siblings}
    weights = siblings["adapter_model.safetensors"]
    assert weights.size == 300_000
    assert weights.lfs is not None and weights.lfs.sha256 == sha256_of(folder / "adapter_model.safetensors")
    assert hub.api.model_info("acme/listing", revision=commit.oid).sha == commit.oid
    assert hub.api.model_info("acme/listing", files_metadata=True).siblings is not None
    assert hub.api.repo_exists("acme/listing") and not hub.api.repo_exists("acme/nope")

    files = hub.api.list_repo_files("acme/listing")
    assert sorted(files) == sorted(
        ["adapter_config.json", "adapter_model.safetensors", "sub/deeper/notes.txt", "README.md", "empty.bin"]
    )
    top = {e.path: e for e in hub.api.list_repo_tree("acme/listing")}
    assert isinstance(top["sub"], RepoFolder) and isinstance(top["adapter_config.json"], RepoFile)
    assert "sub/deeper/notes.txt" not in top
    nested = {e.path for e in hub.api.list_repo_tree("acme/listing", path_in_repo="sub", recursive=True)}
    assert nested == {"sub/deeper", "sub/deeper/notes.txt"}
    entry = next(e for e in hub.api.list_repo_tree("acme/listing", recursive=True) if e.path == "empty.bin")
    assert isinstance(entry, RepoFile) and entry.size == 0
    assert hub.api.file_exists("acme/listing", "sub/deeper/notes.txt")
    assert not hub.api.file_exists("acme/listing", "missing.txt")
    paths = hub.api.get_paths_info(
        "acme/listing", ["adapter_config.json", "sub", "missing"], revision=commit.oid
    )
    assert {p.path for p in paths} == {"adapter_config.json", "sub"}
    refs = hub.api.list_repo_refs("acme/listing")
    assert [(b.name, b.target_commit) for b in refs.branches] == [("main", commit.oid)]
    history = hub.api.list_repo_commits("acme/listing")
    assert history[0].commit_id == commit.oid and len(history) == 2


def test_tree_pagination_follows_link_header(hub: HubClient) -> None:
    hub.server.config.tree_page_size = 3
    hub.api.create_repo("acme/many")
    ops = [CommitOperationAdd(f"f{i:02d}.txt", f"{i}".encode()) for i in range(8)]
    hub.api.create_commit("acme/many", ops, commit_message="eight files")
    assert sorted(hub.api.list_repo_files("acme/many")) == [f"f{i:02d}.txt" for i in range(8)]


def test_create_commit_with_parent_commit_and_stale_parent_refused(hub: HubClient) -> None:
    hub.api.create_repo("acme/atomic")
    head = hub.api.model_info("acme/atomic").sha
    first = hub.api.create_commit(
        "acme/atomic", [CommitOperationAdd("a.txt", b"one")], commit_message="one", parent_commit=head
    )
    second = hub.api.create_commit(
        "acme/atomic", [CommitOperationAdd("b.txt", b"two")], commit_message="two", parent_commit=first.oid
    )
    with pytest.raises(HfHubHTTPError) as refused:
        hub.api.create_commit(
            "acme/atomic",
            [CommitOperationAdd("c.txt", b"three")],
            commit_message="stale",
            parent_commit=first.oid,
        )
    assert _status(refused.value) == 412
    assert hub.api.model_info("acme/atomic").sha == second.oid
    assert sorted(hub.api.list_repo_files("acme/atomic")) == ["a.txt", "b.txt"]


def test_concurrent_commits_on_one_parent_only_one_wins(hub: HubClient) -> None:
    hub.api.create_repo("acme/race")
    head = hub.api.model_info("acme/race").sha
    outcomes: list[object] = []

    def publish(i: int) -> None:
        try:
            outcomes.append(
                hub.api.create_commit(
                    "acme/race",
                    [CommitOperationAdd(f"v{i}.txt", b"x" * i)],
                    commit_message=f"v{i}",
                    parent_commit=head,
                ).oid
            )
        except HfHubHTTPError as error:
            outcomes.append(_status(error))

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if isinstance(o, str)]
    assert len(winners) == 1 and sorted(o for o in outcomes if not isinstance(o, str)) == [412] * 5
    assert hub.api.model_info("acme/race").sha == winners[0]


def test_delete_operations_and_unchanged_files_are_skipped(hub: HubClient) -> None:
    hub.api.create_repo("acme/edit")
    hub.api.create_commit(
        "acme/edit",
        [CommitOperationAdd(p, p.encode()) for p in ("keep.txt", "old.txt", "dir/a.txt", "dir/b.txt")],
        commit_message="seed",
    )
    after = hub.api.create_commit(
        "acme/edit",
        [CommitOperationDelete("old.txt"), CommitOperationDelete("dir/", is_folder=True)],
        commit_message="prune",
    )
    assert hub.api.list_repo_files("acme/edit") == ["keep.txt"]
    # Re-adding identical content is a no-op the client detects from the preupload oid: no new commit.
    same = hub.api.create_commit(
        "acme/edit", [CommitOperationAdd("keep.txt", b"keep.txt")], commit_message="noop"
    )
    assert same.oid == after.oid
    with pytest.raises(EntryNotFoundError):
        hub.api.create_commit("acme/edit", [CommitOperationDelete("ghost.txt")], commit_message="bad delete")


def test_create_pr_makes_a_pr_ref_and_leaves_main(hub: HubClient) -> None:
    hub.api.create_repo("acme/pr")
    main = hub.api.create_commit("acme/pr", [CommitOperationAdd("a.txt", b"main")], commit_message="main")
    pr = hub.api.create_commit(
        "acme/pr", [CommitOperationAdd("a.txt", b"proposal")], commit_message="proposal", create_pr=True
    )
    assert pr.pr_url == f"{hub.endpoint}/acme/pr/discussions/1" and pr.pr_num == 1
    assert pr.pr_revision == "refs/pr/1"
    assert hub.api.model_info("acme/pr").sha == main.oid
    assert hub.download("acme/pr", "a.txt", revision="refs/pr/1").read_bytes() == b"proposal"
    assert (
        hub.download("acme/pr", "a.txt", revision="main", cache_dir=hub.cache_dir / "m").read_bytes()
        == b"main"
    )
    refs = hub.api.list_repo_refs("acme/pr", include_pull_requests=True)
    assert [(r.ref, r.target_commit) for r in refs.pull_requests] == [("refs/pr/1", pr.oid)]
    second = hub.api.create_commit(
        "acme/pr", [CommitOperationAdd("b.txt", b"2")], commit_message="pr2", create_pr=True
    )
    assert second.pr_num == 2


def test_not_found_errors_map_to_client_types(hub: HubClient) -> None:
    hub.api.create_repo("acme/present")
    hub.api.create_commit("acme/present", [CommitOperationAdd("a.txt", b"a")], commit_message="a")

    with pytest.raises(RepositoryNotFoundError):
        hub.download("acme/absent", "a.txt")
    with pytest.raises(RevisionNotFoundError):
        hub.download("acme/present", "a.txt", revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        hub.download("acme/present", "a.txt", revision="0" * 40)
    with pytest.raises(EntryNotFoundError) as missing:
        hub.download("acme/present", "nope.txt")
    assert isinstance(missing.value, HfHubHTTPError)  # answered by the server, not a local-cache miss

    with pytest.raises(RepositoryNotFoundError):
        hub.api.model_info("acme/absent")
    with pytest.raises(RevisionNotFoundError):
        hub.api.model_info("acme/present", revision="nope")
    with pytest.raises(EntryNotFoundError):
        list(hub.api.list_repo_tree("acme/present", path_in_repo="no/such/dir"))
    with pytest.raises(RepositoryNotFoundError):
        hub.api.create_commit("acme/absent", [CommitOperationAdd("a.txt", b"a")], commit_message="x")
    with pytest.raises(HfHubHTTPError) as taken:
        hub.api.create_repo("acme/present")
    assert _status(taken.value) == 409


def test_commit_pinned_download_needs_no_second_request(hub: HubClient) -> None:
    hub.api.create_repo("acme/pinned")
    commit = hub.api.create_commit(
        "acme/pinned", [CommitOperationAdd("w.bin", b"\x00" * 1000)], commit_message="w"
    )
    first = hub.download("acme/pinned", "w.bin", revision=commit.oid)
    hub.server.stop()  # the cache answers a pinned revision without the network
    again = hf_hub_download(
        "acme/pinned", "w.bin", revision=commit.oid, cache_dir=hub.cache_dir, endpoint=hub.endpoint
    )
    assert Path(again) == first


def test_dataset_repos_work_too(hub: HubClient) -> None:
    hub.api.create_repo("acme/data", repo_type="dataset")
    commit = hub.api.create_commit(
        "acme/data",
        [CommitOperationAdd("train.jsonl", b'{"x": 1}\n')],
        commit_message="d",
        repo_type="dataset",
    )
    assert commit.commit_url == f"{hub.endpoint}/datasets/acme/data/commit/{commit.oid}"
    got = hub.download("acme/data", "train.jsonl", repo_type="dataset", revision=commit.oid)
    assert got.read_bytes() == b'{"x": 1}\n'
    assert hub.api.dataset_info("acme/data").sha == commit.oid
    with pytest.raises(RepositoryNotFoundError):
        hub.api.model_info("acme/data")  # a dataset is not a model
