"""``adapterhub lock`` and ``pull -r adapterhub.lock [--require-hashes]``: the lock decides what installs."""

# ruff: noqa: F811 - the fixture imported from index_signing_support comes back as a test argument

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support.index_signing_support import tamper_entry

from adapterhub.cli import main
from adapterhub.errors import RollbackError
from adapterhub.fileio import sha256_file
from adapterhub.manifest import manifest_to_dict, parse_manifest
from adapterhub.registry import add_release, open_index
from adapterhub.registry.lockfile import build_lock, load_lock
from adapterhub.registry.resolver import YankedVersionWarning
from adapterhub.registry.trust import pin_root
from adapterhub.resources import bundled_index_dir
from adapterhub.store import pull_locked


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the bundled index (with its mirror of real sample weights) as a directory registry."""
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ADAPTERHUB_TRUST_DIR", str(tmp_path / "trust"))
    for var in ("ADAPTERHUB_INDEX", "ADAPTERHUB_OFFLINE", "HF_HUB_OFFLINE", "ADAPTERHUB_REQUIRE_SIGNED_INDEX"):
        monkeypatch.delenv(var, raising=False)
    copy = tmp_path / "registry"
    shutil.copytree(bundled_index_dir(), copy)
    shutil.rmtree(copy / "metadata")
    return copy


def run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def write_lock(capsys, tmp_path: Path, registry: Path, *names: str) -> Path:
    code, out, err = run(capsys, "lock", *names, "--index", registry)
    assert code == 0, err
    path = tmp_path / "adapterhub.lock"
    path.write_text(out)
    return path


def test_lock_then_pull_with_require_hashes(capsys, tmp_path, registry):
    lock_path = write_lock(capsys, tmp_path, registry, "sst2-houlsby", "sst2-lora>=1")
    doc = json.loads(lock_path.read_text())
    assert doc["requirements"] == ["sst2-houlsby", "sst2-lora>=1"]
    assert doc["index"] == {"location": str(registry.resolve()), "name": "adapterhub-bundled"}  # unsigned: no metadata
    idx = open_index(registry)
    for locked in doc["adapters"]:
        entry = idx.entry(locked["name"], locked["version"])
        assert locked["manifest_sha256"] == entry.manifest_sha256
        assert locked["files"] == [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in entry.manifest.files]
    code, out, err = run(capsys, "pull", "-r", lock_path, "--require-hashes", "--index", registry, "--json")
    assert code == 0, err
    pulled = json.loads(out)
    assert [p["name"] for p in pulled] == ["sst2-houlsby", "sst2-lora"]
    for p, locked in zip(pulled, doc["adapters"], strict=True):
        for f in locked["files"]:
            assert sha256_file(p["files"][f["path"]]) == f["sha256"]


def test_a_changed_hash_in_the_index_is_refused(capsys, tmp_path, registry):
    lock_path = write_lock(capsys, tmp_path, registry, "sst2-houlsby")
    tamper_entry(registry, "sst2-houlsby", "e" * 64)  # a self-consistent entry with other weights
    code, _, err = run(capsys, "pull", "-r", lock_path, "--require-hashes", "--index", registry)
    assert code == 1 and "the index now lists manifest sha256" in err
    assert not (tmp_path / "cache" / "adapters").exists()  # refused before anything was fetched
    # without -r the index decides (the attack works on an unpinned, unsigned index): the lock is what stops it
    assert run(capsys, "info", "sst2-houlsby", "--index", registry, "--json")[0] == 0


def test_a_name_not_in_the_lock_is_refused(capsys, tmp_path, registry):
    lock_path = write_lock(capsys, tmp_path, registry, "sst2-houlsby")
    code, _, err = run(capsys, "pull", "sst2-pfeiffer", "-r", lock_path, "--require-hashes", "--index", registry)
    assert code == 1 and "sst2-pfeiffer is not in the lock" in err
    code, out, _ = run(capsys, "pull", "sst2-houlsby", "-r", lock_path, "--require-hashes", "--index", registry, "-q")
    assert code == 0 and out.strip().endswith("1.0.0")


def _add_stack(registry: Path) -> None:
    """sst2-stack 1.0.0, depending on sst2-houlsby (its files are sst2-lora's, which the mirror holds)."""
    lora = manifest_to_dict(open_index(registry).entry("sst2-lora", "1.0.0").manifest)
    lora.update(name="sst2-stack", dependencies=[{"name": "sst2-houlsby", "spec": ">=1"}])
    add_release(registry, parse_manifest(lora))


def test_a_dependency_missing_from_the_lock_is_refused(capsys, tmp_path, registry):
    _add_stack(registry)
    lock_path = write_lock(capsys, tmp_path, registry, "sst2-stack")
    doc = json.loads(lock_path.read_text())
    assert [(a["name"], a["required_by"]) for a in doc["adapters"]] == [("sst2-houlsby", ["sst2-stack"]),
                                                                         ("sst2-stack", [])]
    code, out, _ = run(capsys, "pull", "sst2-stack", "-r", lock_path, "--require-hashes", "--index", registry, "--json")
    assert code == 0 and [p["name"] for p in json.loads(out)] == ["sst2-houlsby", "sst2-stack"]
    doc["adapters"] = doc["adapters"][1:]
    lock_path.write_text(json.dumps(doc))
    code, _, err = run(capsys, "pull", "-r", lock_path, "--require-hashes", "--index", registry)
    assert code == 1 and "depends on sst2-houlsby, which is not in the lock" in err


def test_require_hashes_refuses_a_lock_entry_without_hashes(capsys, tmp_path, registry):
    lock_path = write_lock(capsys, tmp_path, registry, "sst2-houlsby")
    doc = json.loads(lock_path.read_text())
    del doc["adapters"][0]["manifest_sha256"], doc["adapters"][0]["files"]
    lock_path.write_text(json.dumps(doc))
    code, _, err = run(capsys, "pull", "-r", lock_path, "--require-hashes", "--index", registry)
    assert code == 1 and "--require-hashes, but the lock pins no manifest sha256" in err
    assert run(capsys, "pull", "-r", lock_path, "--index", registry, "-q")[0] == 0  # pinned by version only
    code, _, err = run(capsys, "pull", "sst2-houlsby", "--require-hashes", "--index", registry)
    assert code == 2 and "needs -r LOCKFILE" in err


def test_a_yanked_locked_version_installs_with_a_warning(capsys, tmp_path, registry):
    from adapterhub.registry import set_yanked

    lock = build_lock(open_index(registry), ["sst2-houlsby"])
    set_yanked(registry, "sst2-houlsby", "1.0.0", "wrong labels")
    with pytest.warns(YankedVersionWarning, match="yanked"):
        (pulled,) = pull_locked(lock, index=str(registry), require_hashes=True)
    assert pulled.version == "1.0.0"


def test_lock_records_signed_versions_and_refuses_an_older_index(signed_repo, tmp_path):
    signed_repo.pin()
    old = signed_repo.snapshot("old")
    signed_repo.sign(force=True)  # the index moves on: two more signed versions
    signed_repo.sign(force=True)
    lock = build_lock(signed_repo.client(), ["adapter-00"])
    assert lock.index.metadata["snapshot"] == 3 and lock.index.metadata["targets"] == 3
    path = tmp_path / "adapterhub.lock"
    path.write_text(lock.dumps())
    assert load_lock(path).index == lock.index
    # a new machine (nothing trusted yet but the pinned root) reading yesterday's index: only the lock knows
    signed_repo.serve(old)
    fresh = tmp_path / "fresh-trust"
    pin_root(signed_repo.url, (signed_repo.root / "metadata" / "1.root.json").read_bytes(), trust_dir=fresh)
    index = open_index(signed_repo.url, cache_dir=tmp_path / "fresh-cache", trust_dir=fresh, offline=False)
    with pytest.raises(RollbackError, match="older than the lock"):
        pull_locked(load_lock(path), index=index, require_hashes=True)
