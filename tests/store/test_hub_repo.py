"""store/hub_repo.py against our server with the real huggingface_hub client: a revision resolves to a
commit, files come with the Hub's hashes, and the streaming check accepts exactly the listed bytes."""

from __future__ import annotations

import hashlib

import pytest
from support.store_support import put_repo, safetensors_bytes

from adapterhub.errors import AuthenticationError, IntegrityError, NotFoundError, SizeLimitError
from adapterhub.store.hub_repo import HubFile, HubRepo, MemorySink, list_files, resolve_revision
from adapterhub.store.sources import HubSource


def _git_oid(body: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(body) + body).hexdigest()


@pytest.fixture
def toy(hub, cache):
    files = {"adapter_model.safetensors": safetensors_bytes(4096), "adapter_config.json": b'{"r": 4}\n',
             "sub/adapter_config.json": b'{"r": 8}\n'}
    return files, put_repo(hub.server, "org/toy", files), HubRepo("org/toy", endpoint=hub.endpoint)


def test_resolve_branch_and_commit(toy):
    _, commit, repo = toy
    assert resolve_revision(repo, "main").commit == commit
    assert resolve_revision(repo, None).commit == commit
    assert resolve_revision(repo, commit).commit == commit


def test_unknown_revision_and_repo_are_typed(toy, hub):
    _, _, repo = toy
    with pytest.raises(NotFoundError):
        resolve_revision(repo, "no-such-branch")
    with pytest.raises(AuthenticationError) as info:  # as on the Hub: missing or private, no token sent
        resolve_revision(HubRepo("org/missing", endpoint=hub.endpoint), "main")
    assert "org/missing" in str(info.value)


def test_listing_carries_the_hubs_hashes(toy):
    files, commit, repo = toy
    listed = {f.path: f for f in list_files(repo, commit)}
    assert set(listed) == set(files)
    weights = listed["adapter_model.safetensors"]
    assert weights.size == len(files["adapter_model.safetensors"])
    config = listed["adapter_config.json"]
    assert config.git_oid == _git_oid(files["adapter_config.json"])
    sub = list_files(repo, commit, "sub")
    assert [f.path for f in sub] == ["sub/adapter_config.json"]


@pytest.mark.parametrize("lfs", [False, True])
def test_check_accepts_only_the_listed_bytes(lfs):
    body = b'{"r": 4}\n'
    entry = HubFile("a.json", len(body), None if lfs else _git_oid(body),
                    hashlib.sha256(body).hexdigest() if lfs else None)
    check = entry.check()
    check.update(body[:3])
    check.update(body[3:])
    assert check.finish() == hashlib.sha256(body).hexdigest()
    bad = entry.check()
    bad.update(body.replace(b"4", b"5"))
    with pytest.raises(IntegrityError):
        bad.finish()
    over = entry.check()
    with pytest.raises(SizeLimitError):
        over.update(body + b"x")


def test_memory_sink_streams_a_plain_file_through_the_client(toy):
    files, commit, repo = toy
    entry = next(f for f in list_files(repo, commit) if f.path == "adapter_config.json")
    sink = MemorySink(entry)
    HubSource(repo.repo_id, commit, endpoint=repo.endpoint).stream(entry.path, entry.size, sink)
    body, sha = sink.finish()
    assert body == files["adapter_config.json"] and sha == hashlib.sha256(body).hexdigest()


def _tree_route(server, commit: str, folder: str, items: list) -> None:
    import json as _json

    from support.http_faults import Reply

    body = _json.dumps(items).encode()
    for flags in ("recursive=True&expand=False", "recursive=true&expand=false"):  # requests / httpx spelling
        server.route(f"/api/models/org/x/tree/{commit}/{folder}?{flags}",
                     Reply(headers=[("Content-Type", "application/json")], body=body))


@pytest.mark.parametrize("item, words", [
    ({"type": "file", "path": "elsewhere/adapter_config.json", "size": 2, "oid": "a" * 40}, "outside"),
    ({"type": "file", "path": "sub/a.json", "size": 2, "oid": None}, "neither"),
    ({"type": "file", "path": "sub/a.json", "size": 2}, "cannot read .KeyError: 'oid'"),
    ({"type": "file", "path": "sub/w.safetensors", "size": 2, "oid": "a" * 40,
      "lfs": {"oid": "not-a-digest", "size": 2, "sha256": "not-a-digest", "pointerSize": 9}}, "without a valid sha256"),
])
def test_a_listing_that_cannot_be_checked_is_refused(scripted, item, words):
    """Listings our server never sends, from a scripted one: a file outside the folder asked for, no hash."""
    commit = "c" * 40
    _tree_route(scripted, commit, "sub", [item])
    with pytest.raises(IntegrityError, match=words):
        list_files(HubRepo("org/x", endpoint=scripted.origin, token=False), commit, "sub")
