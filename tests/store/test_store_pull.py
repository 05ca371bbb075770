"""Pull → verify → cache, through the real huggingface_hub client and plain HTTP on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
import os
import sys

import pytest
from support.store_support import (
    FAST,
    blobs,
    leftovers,
    manifest_for,
    put_repo,
    safetensors_bytes,
    sha,
    views,
    with_http_source,
)

from adapterhub.errors import IntegrityError, NotFoundError, OfflineError
from adapterhub.manifest import BundledSource
from adapterhub.registry import add_release, init_index
from adapterhub.store import (
    ContentDirSource,
    HttpMirrorSource,
    HttpSource,
    LocalDirSource,
    check_safetensors,
    gc,
    list_cached,
    pull,
    remove_cached,
    verify,
)


def test_pull_through_the_hub_client(cache, repo):
    result = pull(repo.manifest(), options=FAST)
    assert result.path == cache / "adapters" / "toy-adapter" / "1.0.0"
    for path, body in repo.files.items():
        assert result.files[path].read_bytes() == body
        assert (cache / "blobs" / "sha256" / sha(body)).read_bytes() == body
    check_safetensors(result.files["adapter.safetensors"])
    assert json.loads((result.path / "adapterhub.json").read_text())["name"] == "toy-adapter"
    assert result.downloaded == sum(len(b) for b in repo.files.values())
    assert leftovers(cache) == []
    assert os.stat(result.files["adapter.safetensors"]).st_mode & 0o222 == 0  # read-only


def test_warm_pull_touches_no_network_and_imports_nothing_heavy(cache, repo, monkeypatch):
    manifest = repo.manifest()
    pull(manifest, options=FAST)
    repo.server.stop()  # any network access would now fail
    for mod in [m for m in sys.modules if m.split(".")[0] in ("torch",)]:
        monkeypatch.delitem(sys.modules, mod)
    again = pull(manifest, options=FAST)
    assert again.downloaded == 0
    assert "torch" not in sys.modules


def test_plain_http_source_and_content_addressed_mirror(cache, repo):
    manifest = with_http_source(repo.manifest(), repo.resolve_base())
    result = pull(manifest, options=FAST)
    assert result.files["adapter_config.json"].read_bytes() == repo.files["adapter_config.json"]
    # any source may serve any file: a mirror that only knows blobs by sha256
    mirror_root = cache.parent / "mirror"
    mirror_root.mkdir()
    for body in repo.files.values():
        (mirror_root / sha(body)).write_bytes(body)
    m2 = dataclasses.replace(manifest, version="2.0.0")
    assert pull(m2, sources=[ContentDirSource(mirror_root)]).files["adapter.safetensors"].exists()


def test_sources_are_tried_in_order(cache, repo, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    local = tmp_path / "local"
    local.mkdir()
    for p, b in repo.files.items():
        (local / p).write_bytes(b)
    sources = [LocalDirSource(empty), HttpMirrorSource(repo.endpoint + "/nothing/{sha256}"), LocalDirSource(local)]
    result = pull(repo.manifest(), sources=sources, options=FAST)
    assert result.files["adapter.safetensors"].read_bytes() == repo.files["adapter.safetensors"]


def test_no_source_has_it(cache, repo, tmp_path):
    with pytest.raises(NotFoundError, match="not found on any source"):
        pull(repo.manifest(), sources=[LocalDirSource(tmp_path)], options=FAST)
    assert blobs(cache) == [] and views(cache) == []


def test_pull_by_name_through_an_index_with_mirrors(cache, repo, tmp_path):
    from adapterhub.registry import add_release, init_index

    index = init_index(tmp_path / "index", "test-index")
    config = json.loads((index / "config.json").read_text())
    config["artifacts"] = {"mirrors": [repo.endpoint + "/none/{sha256}", "bundled"]}
    (index / "config.json").write_text(json.dumps(config))
    add_release(index, repo.manifest(version="1.0.0"))
    add_release(index, repo.manifest(version="1.1.0"))
    result = pull("toy-adapter>=1,<1.1", index=str(index), options=FAST)
    assert result.version == "1.0.0"
    assert pull("toy-adapter", index=str(index), options=FAST).version == "1.1.0"
    assert [c.version for c in list_cached("toy-adapter")] == ["1.0.0", "1.1.0"]


def test_bundled_manifest_source_is_used(cache, repo, monkeypatch, tmp_path):
    import adapterhub.resources as resources

    mirror = tmp_path / "bundled-index"
    (mirror / "mirror").mkdir(parents=True)
    for body in repo.files.values():
        (mirror / "mirror" / sha(body)).write_bytes(body)
    monkeypatch.setattr(resources, "bundled_index_dir", lambda: mirror)
    manifest = dataclasses.replace(repo.manifest(), sources=(BundledSource(),))
    assert pull(manifest).files["adapter.safetensors"].exists()


def test_offline_pull_reads_mirrors_on_this_disk(cache, repo, tmp_path):
    """Offline, with an empty cache: a directory registry's mirror is on disk, so the pull needs no network;
    a file missing from it is reported as missing, not fetched."""
    index = init_index(tmp_path / "index", "local")
    (index / "mirror").mkdir()
    body = repo.files["adapter.safetensors"]
    (index / "mirror" / sha(body)).write_bytes(body)
    config = repo.files["adapter_config.json"]
    (index / "mirror" / sha(config)).write_bytes(config)
    add_release(index, dataclasses.replace(repo.manifest(), sources=(BundledSource(), *repo.manifest().sources)))
    result = pull("toy-adapter", index=index, offline=True, options=FAST)
    assert result.files["adapter.safetensors"].read_bytes() == body
    assert repo.plan.applied == [] and leftovers(cache) == []
    remove_cached("toy-adapter")
    gc()
    (index / "mirror" / sha(config)).unlink()
    with pytest.raises(OfflineError, match="adapter_config.json"):
        pull("toy-adapter", index=index, offline=True, options=FAST)


def test_offline_pull_of_something_not_cached(cache, repo):
    with pytest.raises(OfflineError) as err:
        pull(repo.manifest(), offline=True, options=FAST)
    assert "adapter.safetensors" in str(err.value) and "adapter_config.json" in str(err.value)
    assert repo.plan.applied == []
    assert not (cache / "adapters").exists()


def test_offline_env_var_and_cached_blobs_make_a_view(cache, repo, monkeypatch):
    manifest = repo.manifest()
    pull(manifest, options=FAST)
    remove_cached("toy-adapter")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    repo.server.stop()
    result = pull(manifest)  # blobs are still there; view rebuilt without network
    assert result.files["adapter.safetensors"].exists()


def test_verify_detects_corruption_and_next_pull_refetches(cache, repo):
    manifest = repo.manifest()
    result = pull(manifest, options=FAST)
    target = result.files["adapter.safetensors"]
    os.chmod(target, 0o644)
    with open(target, "r+b") as fh:  # a hard link: this corrupts the blob too
        fh.seek(100)
        fh.write(b"\xff")
    report = verify("toy-adapter")
    assert not report.ok and report.evicted_blobs == [sha(repo.files["adapter.safetensors"])]
    assert views(cache) == []
    again = pull(manifest, options=FAST)
    assert again.downloaded == len(repo.files["adapter.safetensors"])
    assert verify().ok


def test_cache_rm_and_gc(cache, repo):
    manifest = repo.manifest()
    pull(manifest, options=FAST)
    pull(dataclasses.replace(manifest, version="2.0.0"), options=FAST)
    assert len(blobs(cache)) == 2
    assert [r.version for r in remove_cached("toy-adapter<2")] == ["1.0.0"]
    assert gc().removed_blobs == []  # 2.0.0 still uses them
    remove_cached("toy-adapter")
    report = gc()
    assert sorted(report.removed_blobs) == sorted(sha(b) for b in repo.files.values())
    assert blobs(cache) == [] and views(cache) == [] and leftovers(cache) == []


def test_dependencies_are_pulled(cache, hub_server, tmp_path):
    from adapterhub.registry import add_release, init_index

    base_files = {"adapter.safetensors": safetensors_bytes(32, seed=3)}
    c1 = put_repo(hub_server, "org/dep", base_files)
    dep = manifest_for(base_files, [{"type": "hf", "repo_id": "org/dep", "revision": c1,
                                     "endpoint": hub_server.endpoint}], name="dep-adapter")
    top_files = {"adapter.safetensors": safetensors_bytes(16, seed=5)}
    c2 = put_repo(hub_server, "org/top", top_files)
    top = manifest_for(top_files, [{"type": "hf", "repo_id": "org/top", "revision": c2,
                                    "endpoint": hub_server.endpoint}], name="top-adapter",
                       dependencies=[{"name": "dep-adapter", "spec": ">=1"}])
    index = init_index(tmp_path / "index", "deps")
    add_release(index, dep)
    add_release(index, top)
    result = pull("top-adapter", index=str(index), options=FAST)
    assert [d.name for d in result.dependencies] == ["dep-adapter"]
    assert result.dependencies[0].files["adapter.safetensors"].exists()


def test_cli_pull_verify_cache(cache, repo, tmp_path, capsys):
    import adapterhub.cli.store_cmds  # noqa: F401 - registers the commands
    from adapterhub.cli import main
    from adapterhub.registry import add_release, init_index

    index = init_index(tmp_path / "index", "cli")
    add_release(index, repo.manifest())
    assert main(["pull", "toy-adapter", "--index", str(index), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["path"] == str(cache / "adapters" / "toy-adapter" / "1.0.0")
    assert main(["pull", "toy-adapter", "--index", str(index), "-q"]) == 0
    assert capsys.readouterr().out.strip() == out["path"]
    assert main(["verify"]) == 0
    assert "ok" in capsys.readouterr().out
    assert main(["cache", "ls", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert [a["name"] for a in listing["adapters"]] == ["toy-adapter"] and listing["blobs"] == 2
    assert main(["cache", "rm", "toy-adapter"]) == 0
    assert "freed" in capsys.readouterr().out
    assert main(["cache", "gc"]) == 0
    assert main(["pull", "toy-adapter", "--index", str(index), "--offline"]) == 1
    assert "offline" in capsys.readouterr().err


def test_integrity_error_type_is_kept_per_source(cache, repo):
    bad = dataclasses.replace(repo.manifest(), files=tuple(
        dataclasses.replace(f, sha256="0" * 64) if f.path.endswith(".json") else f for f in repo.manifest().files))
    with pytest.raises(IntegrityError, match="sha256"):
        pull(bad, sources=[HttpSource(repo.resolve_base())], options=FAST)
