"""Server storage and name rules without HTTP: ids, atomic refs, immutability, refusal of odd names."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from adapterhub.server import HubStorage, RepoRef, StorageError
from adapterhub.server.errors import (
    BadRequest,
    EntryNotFound,
    ParentMismatch,
    RepoExists,
    RepoNotFound,
    RevisionNotFound,
)
from adapterhub.server.names import check_path, check_revision, parse_repo_id
from adapterhub.server.ranges import ByteRange, Unsatisfiable, parse_range
from adapterhub.server.routes import match
from adapterhub.server.storage import AddFile, DeleteFile, DeleteFolder, commit_oid, git_blob_oid

REPO = RepoRef("model", "acme", "store")


@pytest.fixture
def storage(tmp_path: Path) -> HubStorage:
    store = HubStorage(tmp_path / "root")
    store.create_repo(REPO)
    return store


def _add(store: HubStorage, path: str, data: bytes) -> AddFile:
    return AddFile(path, store.put_blob(data))


def test_blobs_are_content_addressed_and_deduplicated(storage: HubStorage) -> None:
    first = storage.put_blob(b"hello")
    second = storage.put_blob(b"hello")
    assert (
        first == second
        and first.git_oid == git_blob_oid(b"hello") == "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"
    )
    assert storage.blob_path(first.sha256).read_bytes() == b"hello"
    assert storage.entry_for_blob(first.sha256, 5) == first
    with pytest.raises(BadRequest):
        storage.entry_for_blob(first.sha256, 6)
    with pytest.raises(BadRequest):
        storage.entry_for_blob("0" * 64)


def test_commits_chain_and_ids_cover_their_content(storage: HubStorage) -> None:
    initial = storage.resolve(REPO, "main")
    assert initial.files == {} and initial.parent is None and len(initial.oid) == 40
    result = storage.commit(REPO, "main", [_add(storage, "a.txt", b"a")], summary="add a")
    commit = result.commit
    assert commit.parent == initial.oid and storage.resolve(REPO, "main").oid == commit.oid
    assert storage.resolve(REPO, commit.oid).oid == commit.oid
    assert commit.oid == commit_oid(commit.parent, commit.files, "add a", "", commit.created_at)
    assert [c.oid for c in storage.history(REPO, "main")] == [commit.oid, initial.oid]
    assert storage.find_commit(REPO, commit.oid[:10]).oid == commit.oid
    assert storage.find_commit(REPO, commit.oid[:6]) is None  # too short to be trusted


def test_tampered_commit_is_detected(tmp_path: Path) -> None:
    store = HubStorage(tmp_path / "root")
    store.create_repo(REPO)
    oid = store.commit(REPO, "main", [_add(store, "a.txt", b"a")], summary="x").commit.oid
    record_path = store.repo_dir(REPO) / "commits" / f"{oid}.json"
    record = json.loads(record_path.read_text())
    record["files"]["a.txt"]["size"] = 999
    record_path.write_text(json.dumps(record))
    with pytest.raises(StorageError):
        HubStorage(tmp_path / "root").get_commit(REPO, oid)  # fresh instance: no cached copy


def test_parent_commit_guards_the_branch(storage: HubStorage) -> None:
    head = storage.resolve(REPO, "main").oid
    storage.commit(REPO, "main", [_add(storage, "a", b"1")], summary="one", parent_commit=head)
    with pytest.raises(ParentMismatch):
        storage.commit(REPO, "main", [_add(storage, "b", b"2")], summary="two", parent_commit=head)
    with pytest.raises(ParentMismatch):
        storage.commit(REPO, "main", [_add(storage, "b", b"2")], summary="two", parent_commit="nonsense")
    assert sorted(storage.resolve(REPO, "main").files) == ["a"]


def test_concurrent_commits_serialise(storage: HubStorage) -> None:
    def commit(i: int) -> None:
        storage.commit(REPO, "main", [_add(storage, f"f{i}", bytes([i]))], summary=f"c{i}")

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(storage.resolve(REPO, "main").files) == sorted(f"f{i}" for i in range(10))
    assert len(list(storage.history(REPO, "main"))) == 11


def test_create_pr_from_parent_commit(storage: HubStorage) -> None:
    base = storage.resolve(REPO, "main").oid
    storage.commit(REPO, "main", [_add(storage, "main.txt", b"m")], summary="main moves on")
    pr = storage.commit(
        REPO, "main", [_add(storage, "pr.txt", b"p")], summary="pr", parent_commit=base, create_pr=True
    )
    assert pr.pr_num == 1 and pr.commit.parent == base
    assert sorted(storage.resolve(REPO, "refs/pr/1").files) == ["pr.txt"]
    follow_up = storage.commit(REPO, "refs/pr/1", [_add(storage, "pr2.txt", b"q")], summary="more")
    assert storage.refs(REPO).prs[1] == follow_up.commit.oid
    assert sorted(storage.resolve(REPO, "main").files) == ["main.txt"]


def test_operations(storage: HubStorage) -> None:
    ops = [_add(storage, p, p.encode()) for p in ("a/b/c.txt", "a/d.txt", "top.txt")]
    storage.commit(REPO, "main", ops, summary="seed")
    with pytest.raises(BadRequest):  # a file where a folder is
        storage.commit(REPO, "main", [_add(storage, "a", b"x")], summary="clash")
    with pytest.raises(BadRequest):  # a folder under a file
        storage.commit(REPO, "main", [_add(storage, "top.txt/x", b"x")], summary="clash")
    with pytest.raises(EntryNotFound):
        storage.commit(REPO, "main", [DeleteFile("nope")], summary="x")
    with pytest.raises(EntryNotFound):
        storage.commit(REPO, "main", [DeleteFolder("nope")], summary="x")
    storage.commit(REPO, "main", [DeleteFolder("a")], summary="drop a")
    assert list(storage.resolve(REPO, "main").files) == ["top.txt"]


def test_repo_lifecycle_errors(storage: HubStorage) -> None:
    with pytest.raises(RepoExists):
        storage.create_repo(REPO)
    other = RepoRef("model", "acme", "other")
    with pytest.raises(RepoNotFound):
        storage.resolve(other, "main")
    with pytest.raises(RepoNotFound):
        storage.commit(other, "main", [], summary="x")
    with pytest.raises(RevisionNotFound):
        storage.resolve(REPO, "dev")
    with pytest.raises(RevisionNotFound):
        storage.commit(REPO, "dev", [], summary="x")
    with pytest.raises(BadRequest):
        storage.commit(REPO, storage.resolve(REPO, "main").oid, [], summary="to a commit id")
    assert storage.list_repos("model") == [REPO]


def test_storage_never_leaves_its_root(tmp_path: Path) -> None:
    store = HubStorage(tmp_path / "root")
    for namespace, name in (
        (("..", "..")),
        ("acme", ".."),
        ("..", "x"),
        ("a/b", "c"),
        (".", "x"),
        ("acme", ""),
    ):
        with pytest.raises(BadRequest):
            store.repo_dir(RepoRef("model", namespace, name))  # a RepoRef built without the name checks
    with pytest.raises(BadRequest):
        store.blob_path("../../etc/passwd")


def test_unknown_layout_is_refused(tmp_path: Path) -> None:
    HubStorage(tmp_path / "root")
    (tmp_path / "root" / "adapterhub-server.json").write_text('{"layout": 99}')
    with pytest.raises(StorageError):
        HubStorage(tmp_path / "root")


@pytest.mark.parametrize(
    "bad",
    [
        "../x",
        "/x",
        "a/../b",
        "a\\b",
        "a\x00b",
        "a\nb",
        "a//b",
        "./a",
        ".git/x",
        "",
        "a" * 256,
        "x/" + "y" * 1000,
    ],
)
def test_check_path_refuses(bad: str) -> None:
    with pytest.raises(BadRequest):
        check_path(bad)


def test_names() -> None:
    assert check_path("a/b.txt") == "a/b.txt" and check_path("dir/") == "dir"
    assert parse_repo_id("model", "Org-1/name_2.v3").repo_id == "Org-1/name_2.v3"
    for bad in ("a", "a/b/c", "../b", "a/..", "a--b/c", "a/b.git", "-a/b", "a/b-", "a/" + "x" * 97, "ä/b"):
        with pytest.raises(BadRequest):
            parse_repo_id("model", bad)
    for good in (
        "main",
        "v1.0",
        "refs/pr/3",
        "refs/heads/dev",
        "a" * 40,
        "0123456789abcdef0123456789abcdef01234567",
    ):
        assert check_revision(good) == good
    for bad in ("..", "a/b", "refs/pr/0", "refs/pr/x", "x.lock", "", "-x", "a..b", "refs/heads/../x"):
        with pytest.raises(BadRequest):
            check_revision(bad)


def test_routes() -> None:
    route = match("GET", "/datasets/acme/d/resolve/refs%2Fpr%2F2/dir%2Ff.txt")
    assert (route.name, route.repo.repo_type, route.revision, route.path) == (
        "resolve",
        "dataset",
        "refs/pr/2",
        "dir/f.txt",
    )
    assert match("GET", "/api/models/acme/m/revision/refs/pr/1").revision == "refs/pr/1"
    assert match("POST", "/api/models/acme/m/commit/main").access == "write"
    assert match("POST", "/api/models/acme/m/preupload/main").access == "write"
    assert match("GET", "/api/models/acme/m/tree/main/a/b").access == "read"
    assert match("POST", "/api/models/acme/m/paths-info/main").access == "read"
    assert match("POST", "/api/repos/create").access == "create"
    assert match("GET", "/api/whoami-v2").access == "user"
    assert match("HEAD", "/api/models/acme/m").name == "repo_info"


def test_parse_range() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=2-4", 10) == ByteRange(2, 4, 10)
    assert parse_range("bytes=-3", 10) == ByteRange(7, 9, 10)
    assert parse_range("bytes=-30", 10) == ByteRange(0, 9, 10)
    assert parse_range("bytes=8-100", 10) == ByteRange(8, 9, 10)
    assert parse_range("bytes=1-2,4-5", 10) is None
    for unsatisfiable in ("bytes=10-", "bytes=-0", "bytes=11-12"):
        with pytest.raises(Unsatisfiable):
            parse_range(unsatisfiable, 10)


@pytest.mark.parametrize("level", ["namespace", "name"])
def test_a_repository_reached_through_a_symlink_is_refused(storage: HubStorage, tmp_path: Path, level: str) -> None:
    """Repository paths are checked with two lstat calls, not a resolve: a symlink at either level is refused."""
    outside = tmp_path / "outside"
    (outside / "bench").mkdir(parents=True)
    (outside / "bench" / "repo.json").write_text("{}")
    models = storage.root / "repos" / "models"
    models.mkdir(parents=True, exist_ok=True)
    if level == "namespace":
        (models / "org").symlink_to(outside, target_is_directory=True)
    else:
        (models / "org").mkdir()
        (models / "org" / "bench").symlink_to(outside / "bench", target_is_directory=True)
    with pytest.raises(BadRequest, match="outside"):
        storage.repo_exists(RepoRef("model", "org", "bench"))
    if level == "name":  # a real namespace directory: its other repositories are still served
        assert storage.repo_exists(RepoRef("model", "org", "other")) is False


@pytest.mark.parametrize("ref", [RepoRef("model", "org", ".."), RepoRef("model", "..", "x"), RepoRef("model", "a/b", "c"),
                                 RepoRef("weights", "org", "x")])
def test_a_repository_name_that_is_no_plain_name_is_refused_by_storage_too(storage: HubStorage, ref: RepoRef) -> None:
    with pytest.raises(BadRequest):
        storage.repo_dir(ref)
