"""Writing an index held in a Hub dataset repo: ``index push``, ``publish --to/--index hf:datasets/…``,
and the CLI reading it (``search``, ``info``, ``pull`` with ``--index hf:datasets/…``). The real
``huggingface_hub`` client against adapterhub.server on 127.0.0.1; the race is a real second commit.
"""

# ruff: noqa: F811 - fixtures come back as test arguments
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support.doc_examples import python_blocks
from support.hub_index_support import LOCATION, env, team_index  # noqa: F401 - env is a fixture
from support.index_signing_support import add
from support.publish_support import ok, run, sample_adapter
from support.server_fixtures import HubClient

from adapterhub.errors import ConflictError, InvalidArgumentError, NotFoundError, SigningKeyError
from adapterhub.publish import publish_to_hub_index, push_index
from adapterhub.publish.hub_index import HubIndexWriter, update_hub_index
from adapterhub.registry import init_index, open_index
from adapterhub.registry.keys import generate_keyring
from adapterhub.registry.signing import sign_index
from adapterhub.registry.trust import pin_root
from adapterhub.server import HubServer, RepoRef

REF = RepoRef("dataset", "team", "registry")


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    return team_index(tmp_path, "adapter-00")


def _history(server: HubServer) -> list[str]:
    return [c.oid for c in server.storage.history(REF, "main")]


def _files(server: HubServer) -> dict[str, str]:
    return {p: e.sha256 for p, e in server.storage.resolve(REF, "main").files.items()}


def test_push_uploads_changed_files_only_in_one_commit(env: HubClient, index_dir: Path, hub_server: HubServer) -> None:
    first = push_index(index_dir, LOCATION)
    assert sorted(first.uploaded) == ["ad/ap/adapter-00", "config.json", "search-index.jsonl"]
    assert _history(hub_server)[0] == first.commit
    again = push_index(index_dir, LOCATION)
    assert again.commit is None and again.uploaded == [] and again.parent == first.commit  # nothing to commit
    add(index_dir, "adapter-01", "1.0.0")
    (index_dir / "ad" / "ap" / "adapter-00").unlink()  # a name dropped from the directory is deleted remotely
    second = push_index(index_dir, LOCATION)
    assert sorted(second.uploaded) == ["ad/ap/adapter-01", "search-index.jsonl"]
    assert second.deleted == ["ad/ap/adapter-00"] and second.parent == first.commit
    assert _history(hub_server)[:2] == [second.commit, first.commit]
    assert "ad/ap/adapter-00" not in _files(hub_server) and ".gitattributes" not in second.deleted


def test_two_concurrent_pushes_one_is_refused(env: HubClient, index_dir: Path, hub_server: HubServer,
                                              tmp_path: Path) -> None:
    base = push_index(index_dir, LOCATION).commit
    assert base is not None
    other = init_index(tmp_path / "other", "team")
    add(other, "adapter-09", "1.0.0")
    add(index_dir, "adapter-01", "1.0.0")
    # both writers read the same head; the first commit wins, the second is refused whole
    won = push_index(index_dir, LOCATION, parent=base)
    before = _files(hub_server)
    with pytest.raises(ConflictError, match="changed while it was being pushed") as info:
        push_index(other, LOCATION, parent=base)
    assert "bring your directory up to date" in (info.value.hint or "")
    assert _history(hub_server)[0] == won.commit and _files(hub_server) == before
    out = run("index", "push", other, "--to", LOCATION)  # the CLI, at the current head: no race, it succeeds
    assert out.exit_code == 0, out.output


def test_publish_retries_on_a_concurrent_commit_and_keeps_both(env: HubClient, index_dir: Path,
                                                               hub_server: HubServer, tmp_path: Path) -> None:
    push_index(index_dir, LOCATION)
    teammate = tmp_path / "teammate"
    calls = []

    def change(root: Path) -> str:
        calls.append(root)
        if len(calls) == 1:  # a teammate publishes between our read and our commit
            for p in sorted(p for p in root.rglob("*") if p.is_file()):
                (teammate / p.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
                (teammate / p.relative_to(root)).write_bytes(p.read_bytes())
            add(teammate, "adapter-07", "1.0.0")
            push_index(teammate, LOCATION)
        add(root, "adapter-08", "1.0.0")
        return "ours"

    value, push = update_hub_index(LOCATION, change, message=lambda v: f"add {v}")
    assert value == "ours" and len(calls) == 2 and push is not None and push.commit == _history(hub_server)[0]
    idx = open_index(LOCATION)
    assert {n: [e.version for e in idx.entries(n)] for n in ("adapter-00", "adapter-07", "adapter-08")} == {
        "adapter-00": ["1.0.0"], "adapter-07": ["1.0.0"], "adapter-08": ["1.0.0"]}


def test_publish_to_the_index_mirror_then_read_and_pull(env: HubClient, index_dir: Path, hub_server: HubServer,
                                                        tmp_path: Path) -> None:
    push_index(index_dir, LOCATION)
    before = len(_history(hub_server))
    d = sample_adapter(tmp_path / "adapter")
    result = publish_to_hub_index(d, LOCATION)
    assert result.push is not None and len(_history(hub_server)) == before + 1  # entry and files: one commit
    files = _files(hub_server)
    manifest = result.published.manifest
    assert all(files[f"mirror/{f.sha256}"] == f.sha256 for f in manifest.files)
    (entry,) = open_index(LOCATION).entries(manifest.name)
    assert entry.version == manifest.version and [s.type for s in entry.manifest.sources] == ["bundled"]
    again = publish_to_hub_index(d, LOCATION)  # the same release again: nothing to commit
    assert again.push is not None and again.push.commit is None and len(_history(hub_server)) == before + 1
    # the CLI reads it: search, info, pull (files verified from the dataset repo's mirror/)
    assert manifest.name in ok("search", "--index", LOCATION).output
    info = json.loads(ok("info", manifest.name, "--index", LOCATION, "--json").output)
    assert info["index"] == f"{LOCATION}@{_history(hub_server)[0]}" and info["manifest"]["version"] == "1.0.0"
    pulled = json.loads(ok("pull", manifest.name, "--index", LOCATION, "--json").output)
    assert pulled["downloaded_bytes"] == sum(f.size for f in manifest.files)
    lock = ok("lock", manifest.name, "--index", LOCATION).output
    assert json.loads(lock)["index"]["location"] == f"{LOCATION}@{_history(hub_server)[0]}"


def test_publish_with_files_in_the_adapter_repo_and_the_entry_in_the_hub_index(
        env: HubClient, index_dir: Path, hub_server: HubServer, tmp_path: Path) -> None:
    push_index(index_dir, LOCATION)
    d = sample_adapter(tmp_path / "adapter")
    out = ok("publish", d, "--repo", "team/sst2-houlsby", "--index", LOCATION).output
    assert f"in {LOCATION}" in out
    (entry,) = open_index(LOCATION).entries("sst2-houlsby")
    model_head = hub_server.storage.resolve(RepoRef("model", "team", "sst2-houlsby"), "main").oid
    first = entry.manifest.sources[0]
    assert first.type == "hf" and first.repo_id == "team/sst2-houlsby" and first.revision == model_head
    assert not any(p.startswith("mirror/") for p in _files(hub_server))
    refused = run("publish", d, "--repo", "team/sst2-houlsby", "--index", LOCATION)  # releases are immutable
    assert isinstance(refused.exception, ConflictError)
    assert f"already in the index at {LOCATION}@" in str(refused.exception) and "/tmp" not in str(refused.exception)


def test_a_signed_hub_index_is_re_signed_by_publish_and_still_verifies(env: HubClient, index_dir: Path,
                                                                      hub_server: HubServer, tmp_path: Path) -> None:
    keys = generate_keyring(tmp_path / "keys")
    sign_index(index_dir, keys)
    push_index(index_dir, LOCATION)
    pin_root(LOCATION, (index_dir / "metadata" / "root.json").read_bytes())
    d = sample_adapter(tmp_path / "adapter")
    before = _history(hub_server)
    refused = run("publish", d, "--to", LOCATION)  # a signed index needs the keyring, checked before any commit
    assert isinstance(refused.exception, SigningKeyError) and f"{LOCATION}@" in str(refused.exception)
    assert _history(hub_server) == before
    ok("publish", d, "--to", LOCATION, "--keys", tmp_path / "keys")
    idx = open_index(LOCATION)
    (entry,) = idx.entries("sst2-houlsby")
    assert idx.trusted_state() is not None and idx.trusted_state().targets >= 2


def test_writing_needs_an_index_and_a_branch_free_location(env: HubClient, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no such dataset repo"):
        update_hub_index("hf:datasets/team/none", lambda root: None, message=lambda v: "x")
    HubIndexWriter(LOCATION).head(create=True)  # an empty dataset repo: no config.json
    with pytest.raises(NotFoundError, match="holds no registry index"):
        update_hub_index(LOCATION, lambda root: None, message=lambda v: "x")
    bad = run("index", "push", init_index(tmp_path / "i", "x"), "--to", f"{LOCATION}@dev")
    assert isinstance(bad.exception, InvalidArgumentError) and "main branch" in str(bad.exception)


def test_the_registry_doc_example_runs_against_the_hub(env: HubClient, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/registry.md "An index on the Hub": the Python block runs as written (HF_ENDPOINT is the test
    server, HF_TOKEN its writer's token, as a reader would have them set)."""
    monkeypatch.chdir(tmp_path)
    sample_adapter(tmp_path / "my-adapter")
    (block,) = [b for b in python_blocks("registry.md") if "publish_to_hub_index" in b]
    namespace: dict = {}
    exec(compile(block, "docs/registry.md", "exec"), namespace)  # noqa: S102 - our own documentation
    assert namespace["added"].push.commit == env.server.storage.resolve(RepoRef("dataset", "my-team", "adapters"),
                                                                        "main").oid


def test_push_refuses_a_stale_copy_of_a_signed_index(env: HubClient, index_dir: Path, hub_server: HubServer,
                                                     tmp_path: Path) -> None:
    keys = generate_keyring(tmp_path / "keys")
    sign_index(index_dir, keys)
    push_index(index_dir, LOCATION)
    stale = tmp_path / "stale"
    shutil.copytree(index_dir, stale)
    add(index_dir, "adapter-01", "1.0.0")
    sign_index(index_dir, keys)
    newer = push_index(index_dir, LOCATION).commit
    add(stale, "adapter-02", "1.0.0")
    sign_index(stale, keys)  # same timestamp version as the Hub's, other content: it would replace adapter-01
    with pytest.raises(ConflictError, match="holds newer signed metadata"):
        push_index(stale, LOCATION)
    assert _history(hub_server)[0] == newer
    dry = json.loads(ok("publish", sample_adapter(tmp_path / "adapter"), "--to", LOCATION, "--keys", tmp_path / "keys",
                        "--dry-run", "--json").output)
    assert dry["dry_run"] and dry["index_commit"] is None and _history(hub_server)[0] == newer
