"""``adapterhub publish --repo``: the real huggingface_hub client against our Hub-compatible server.

Nothing of the client is mocked: every call is real HTTP to a server on 127.0.0.1. The client's
``constants.ENDPOINT`` is left at its default so the publish code's own endpoint handling (hub 0.36
needs it) is what is tested. The 412 race uses a real second commit made between our read of the
head and our commit.
"""

# ruff: noqa: F811 - fixtures imported from server_fixtures come back as test arguments
from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.repocard import ModelCard
from support.publish_support import assert_same_logits, init_and_package, load_logits, ok, run, save_adapter
from support.server_fixtures import ADMIN_TOKEN, isolate_from_machine

from adapterhub.errors import AuthenticationError, ConflictError, PublishError
from adapterhub.publish import publish_to_hub
from adapterhub.registry import init_index, open_index
from adapterhub.server import FaultPlan, HubServer, RepoRef, TokenGrant

REPO = "org/tiny-sst"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No token or cache of this machine is used; the client's endpoint constant stays the default.

    ``HF_TOKEN`` is the test server's admin token, as a publisher would have it set.
    """
    isolate_from_machine(monkeypatch, tmp_path)
    monkeypatch.setenv("HF_TOKEN", ADMIN_TOKEN)


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    return init_index(tmp_path / "index", "team")


def _history(server: HubServer, repo: str = REPO) -> list[str]:
    ref = RepoRef("model", *repo.split("/"))
    if not server.storage.repo_exists(ref):
        return []
    return [c.oid for c in server.storage.history(ref, "main")]


def _entries(index_dir: Path, name: str = "tiny-sst") -> list:
    return open_index(index_dir).entries(name)


def test_publish_pull_load_gives_the_outputs_of_before(tmp_path: Path, hub_server: HubServer, index_dir: Path) -> None:
    saved = save_adapter(tmp_path)
    d = init_and_package(saved)
    result = ok("publish", d, "--repo", REPO, "--endpoint", hub_server.endpoint, "--index", index_dir)
    (entry,) = _entries(index_dir)
    commit = _history(hub_server)[0]
    assert f"committed {commit}" in result.output and len(_history(hub_server)) == 2  # initial + ours
    hf = entry.manifest.sources[0]
    assert (hf.type, hf.repo_id, hf.revision, hf.endpoint) == ("hf", REPO, commit, hub_server.endpoint)
    # One commit holds every file plus adapterhub.json; that copy has no source naming its own commit.
    api = HfApi(endpoint=hub_server.endpoint)
    assert sorted(api.list_repo_files(REPO, revision=commit)) == ["README.md", "adapter.safetensors",
                                                                   "adapterhub.json", "head.safetensors"]
    ref = RepoRef("model", "org", "tiny-sst")
    stored = hub_server.storage.resolve(ref, commit).files
    uploaded = json.loads(hub_server.storage.blob_path(stored["adapterhub.json"].sha256).read_bytes())
    assert "sources" not in uploaded
    assert {k: v for k, v in entry.raw_manifest.items() if k != "sources"} == uploaded
    card = ModelCard(hub_server.storage.blob_path(stored["README.md"].sha256).read_text())
    assert card.data.library_name == "adapterhub" and len(card.data.eval_results) == 2
    # Pull by name into an empty cache, then load: the same logits as before publishing.
    pulled = ok("pull", "tiny-sst", "--index", index_dir, "--endpoint", hub_server.endpoint, "-q").output.strip()
    assert Path(pulled).is_relative_to(tmp_path / "cache")
    assert_same_logits(load_logits(saved.base_dir, Path(pulled)), saved.expected)


def test_a_version_already_in_the_index_is_refused_before_any_network(tmp_path: Path, hub_server: HubServer,
                                                                       index_dir: Path) -> None:
    saved = save_adapter(tmp_path)
    d = init_and_package(saved)
    ok("publish", d, "--repo", REPO, "--endpoint", hub_server.endpoint, "--index", index_dir)
    before = _history(hub_server)
    for endpoint in (hub_server.endpoint, "http://127.0.0.1:9"):  # the second one would fail to connect
        result = run("publish", d, "--repo", REPO, "--endpoint", endpoint, "--index", index_dir)
        assert isinstance(result.exception, ConflictError) and "immutable" in str(result.exception)
    assert _history(hub_server) == before and len(_entries(index_dir)) == 1


def test_a_directory_that_does_not_validate_is_refused(tmp_path: Path, hub_server: HubServer, index_dir: Path) -> None:
    saved = save_adapter(tmp_path)
    d = init_and_package(saved)
    data = bytearray((d / "head.safetensors").read_bytes())
    data[-1] ^= 1
    (d / "head.safetensors").write_bytes(bytes(data))
    result = run("publish", d, "--repo", REPO, "--endpoint", hub_server.endpoint, "--index", index_dir)
    assert isinstance(result.exception, PublishError) and "sha256" in str(result.exception)
    assert _history(hub_server) == [] and _entries(index_dir) == []


def test_a_failed_commit_leaves_no_commit_and_no_index_entry(tmp_path: Path, hub_server: HubServer,
                                                              fault_plan: FaultPlan, index_dir: Path) -> None:
    saved = save_adapter(tmp_path)
    d = init_and_package(saved)
    fault_plan.fail(500, methods=("POST",), path=":commit")
    result = run("publish", d, "--repo", REPO, "--endpoint", hub_server.endpoint, "--index", index_dir)
    assert isinstance(result.exception, PublishError) and "nothing was committed" in str(result.exception)
    assert [f.path for f in fault_plan.applied] == [":commit"]
    assert len(_history(hub_server)) == 1  # only the repository's initial commit
    assert _entries(index_dir) == []
    ok("publish", d, "--repo", REPO, "--endpoint", hub_server.endpoint, "--index", index_dir)
    assert len(_history(hub_server)) == 2 and len(_entries(index_dir)) == 1


class _RacingApi(HfApi):
    """A real client that lets another real client commit first, just before its own commit."""

    def create_commit(self, repo_id, operations, **kwargs):  # type: ignore[override]
        HfApi(endpoint=self.endpoint).create_commit(
            repo_id, [CommitOperationAdd(path_in_repo="NOTES.md", path_or_fileobj=b"someone else\n")],
            commit_message="meanwhile")
        return super().create_commit(repo_id, operations, **kwargs)


def test_a_parent_commit_race_is_refused_with_412_and_nothing_is_indexed(tmp_path: Path, hub_server: HubServer,
                                                                         index_dir: Path) -> None:
    saved = save_adapter(tmp_path)
    d = init_and_package(saved)
    with pytest.raises(ConflictError, match="someone committed"):
        publish_to_hub(d, REPO, endpoint=hub_server.endpoint, index=index_dir,
                       api=_RacingApi(endpoint=hub_server.endpoint))
    history = _history(hub_server)
    assert len(history) == 2  # initial + the other writer's commit; ours was refused whole
    head_files = hub_server.storage.resolve(RepoRef("model", "org", "tiny-sst"), "main").files
    assert sorted(head_files) == ["NOTES.md"]
    assert _entries(index_dir) == []


def test_publish_without_index_prints_the_entry_and_a_rerun_reuses_the_commit(tmp_path: Path, hub_server: HubServer,
                                                                            index_dir: Path) -> None:
    saved = save_adapter(tmp_path)
    d = init_and_package(saved)
    out = ok("publish", d, "--repo", REPO, "--endpoint", hub_server.endpoint).output
    printed = json.loads(out.strip().splitlines()[-1])
    commit = _history(hub_server)[0]
    assert printed["manifest"]["sources"][0]["revision"] == commit and printed["name"] == "tiny-sst"
    again = ok("publish", d, "--repo", REPO, "--endpoint", hub_server.endpoint, "--index", index_dir, "--json")
    data = json.loads(again.output)
    assert data["reused_commit"] is True and data["commit"] == commit
    assert _history(hub_server)[0] == commit and len(_history(hub_server)) == 2
    (entry,) = _entries(index_dir)
    assert entry.manifest_sha256 == printed["manifest_sha256"]


def test_the_hub_repo_holding_the_version_with_other_files_is_refused(tmp_path: Path, hub_server: HubServer,
                                                                      index_dir: Path) -> None:
    first = init_and_package(save_adapter(tmp_path / "a"))
    ok("publish", first, "--repo", REPO, "--endpoint", hub_server.endpoint)
    second = init_and_package(save_adapter(tmp_path / "b", seed=3))
    result = run("publish", second, "--repo", REPO, "--endpoint", hub_server.endpoint, "--index", index_dir)
    assert isinstance(result.exception, ConflictError) and "different content" in str(result.exception)
    assert len(_history(hub_server)) == 2 and _entries(index_dir) == []


def test_changed_metadata_under_a_published_version_is_refused_too(tmp_path: Path, hub_server: HubServer,
                                                                   index_dir: Path) -> None:
    d = init_and_package(save_adapter(tmp_path))
    ok("publish", d, "--repo", REPO, "--endpoint", hub_server.endpoint)
    ok("init", d, "--yes", "--description", "A better description")
    ok("package", d)
    result = run("publish", d, "--repo", REPO, "--endpoint", hub_server.endpoint, "--index", index_dir)
    assert isinstance(result.exception, ConflictError) and "different content" in str(result.exception)
    assert _entries(index_dir) == []


def test_a_new_version_replaces_files_at_main_and_old_versions_stay_pinned(tmp_path: Path, hub_server: HubServer,
                                                                           index_dir: Path) -> None:
    saved = save_adapter(tmp_path)
    d = init_and_package(saved)
    ok("publish", d, "--repo", REPO, "--endpoint", hub_server.endpoint, "--index", index_dir)
    (d / "head.safetensors").unlink()
    ok("init", d, "--yes", "--version", "1.1.0")
    ok("package", d)
    ok("publish", d, "--repo", REPO, "--endpoint", hub_server.endpoint, "--index", index_dir)
    v1, v2 = _entries(index_dir)
    main = hub_server.storage.resolve(RepoRef("model", "org", "tiny-sst"), "main")
    assert main.oid == v2.manifest.sources[0].revision and "head.safetensors" not in main.files
    ok("pull", "tiny-sst==1.0.0", "--index", index_dir, "--endpoint", hub_server.endpoint, "-q")


def test_dry_run_uploads_nothing(tmp_path: Path, hub_server: HubServer, index_dir: Path) -> None:
    d = init_and_package(save_adapter(tmp_path))
    out = ok("publish", d, "--repo", REPO, "--endpoint", hub_server.endpoint, "--index", index_dir, "--dry-run").output
    assert "dry run" in out and "adapter.safetensors" in out
    assert _history(hub_server) == [] and _entries(index_dir) == []


def test_writes_need_the_token_private_and_create_pr(tmp_path: Path, index_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN")
    server = HubServer(tmp_path / "hub", tokens=[TokenGrant("secret-token", "org-bot", write=frozenset({"org"}))],
                       socket_timeout=10)
    server.start()
    try:
        d = init_and_package(save_adapter(tmp_path))
        refused = run("publish", d, "--repo", REPO, "--endpoint", server.endpoint, "--index", index_dir)
        assert isinstance(refused.exception, AuthenticationError) and _entries(index_dir) == []
        out = ok("publish", d, "--repo", REPO, "--endpoint", server.endpoint, "--index", index_dir,
                 "--token", "secret-token", "--private", "--create-pr", "--json").output
        data = json.loads(out)
        ref = RepoRef("model", "org", "tiny-sst")
        assert server.storage.repo_meta(ref).get("private") is True
        assert data["pull_request"] and "discussions/1" in data["pull_request"]
        main = server.storage.resolve(ref, "main")
        assert data["commit"] != main.oid and "adapterhub.json" not in main.files  # main untouched
        assert server.storage.resolve(ref, data["commit"]).files.keys() >= {"adapterhub.json", "adapter.safetensors"}
        (entry,) = _entries(index_dir)
        assert entry.manifest.sources[0].revision == data["commit"]
    finally:
        server.stop()
