"""A composition held by a Hub repo (pulled by ``hf:``) whose manifest depends on registry names: each is resolved
against the index the pull was given (default: the bundled one) by the registry's rules (version specs, yanked
versions, cycles through either kind of dependency, depth), pulled verified, locked, and replayed offline from
the lock. Real huggingface_hub client against our server."""

from __future__ import annotations

import json

import pytest
from support.hub_registry import composition_doc, publish_dir, publish_hub_adapter_as, put_composition
from support.hub_repos import put_fixture_repos
from support.store_support import leftovers, views

from adapterhub.cli import main
from adapterhub.errors import (
    ConflictError,
    DependencyCycleError,
    DependencyLimitError,
    NotFoundError,
    YankedError,
)
from adapterhub.manifest import dependency_digest
from adapterhub.registry import open_index, resolve_closure
from adapterhub.registry.resolver import MAX_DEPENDENCY_DEPTH
from adapterhub.store import list_cached, pull, pull_locked
from adapterhub.store.hub_deps import HubChain


def _samples_base() -> dict:
    index = open_index(None)
    return json.loads(json.dumps(index.entries("sst2-houlsby")[-1].raw_manifest["base_model"]))


def test_registry_members_come_from_the_bundled_index_by_default_and_offline_again(hub, cache):
    deps = [{"name": "sst2-houlsby", "spec": ">=1", "role": "member"},
            {"name": "sst2-pfeiffer", "spec": "==1.0.0", "role": "member"}]
    commit = put_composition(hub.server, "org/samples-stack", composition_doc("samples-stack", deps,
                                                                              base=_samples_base()))
    got = pull(f"hf:org/samples-stack@{commit}", endpoint=hub.endpoint)
    assert got.name == "samples-stack" and got.reference == f"hf:org/samples-stack@{commit}"
    assert [(d.name, d.version, d.reference) for d in got.dependencies] == [
        ("sst2-houlsby", "1.0.0", None), ("sst2-pfeiffer", "1.0.0", None)]
    assert all(d.files for d in got.dependencies)
    assert {c.name for c in list_cached()} == {"samples-stack", "sst2-houlsby", "sst2-pfeiffer"}
    hub.server.stop()
    again = pull(f"hf:org/samples-stack@{commit}", offline=True)
    assert [d.path for d in again.dependencies] == [d.path for d in got.dependencies] and again.downloaded == 0


@pytest.fixture
def mixed(hub, cache, tmp_path):
    """A directory registry holding ``reg-seq-bn`` 1.0.0 and 1.1.0 (the library fixture's bytes), and a Hub repo
    ``org/mixed`` whose composition stacks the Hub LoRA (by reference) and ``reg-seq-bn`` (by name)."""
    commits = put_fixture_repos(hub.server)
    registry = tmp_path / "registry"
    publish_hub_adapter_as(tmp_path, registry, f"hf:org/library@{commits.library}:adapters/seq_bn", hub.endpoint,
                           "reg-seq-bn", ("1.0.0", "1.1.0"))
    lora_ref = f"hf:org/peft-lora@{commits.peft}"
    lora = pull(lora_ref, endpoint=hub.endpoint, cache_dir=tmp_path / "scratch-cache")
    deps = [{"name": lora.name, "hub": lora_ref, "manifest_sha256": dependency_digest(lora.manifest),
             "role": "member"}, {"name": "reg-seq-bn", "spec": ">=1,<1.1", "role": "member"}]
    commit = put_composition(hub.server, "org/mixed", composition_doc("mixed-stack", deps))
    return registry, f"hf:org/mixed@{commit}", lora_ref


def test_hub_and_registry_members_are_pulled_locked_and_replayed_offline(mixed, hub, cache, tmp_path, monkeypatch,
                                                                        capsys):
    registry, ref, lora_ref = mixed
    got = pull(ref, index=registry, endpoint=hub.endpoint)
    assert [(d.name, d.version, d.reference) for d in got.dependencies] == [
        ("org-peft-lora", got.dependencies[0].version, lora_ref), ("reg-seq-bn", "1.0.0", None)]
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    capsys.readouterr()
    assert main(["pull", ref, "--index", str(registry), "--json"]) == 0  # the CLI passes --index through
    shown = json.loads(capsys.readouterr().out)["dependencies"]
    assert [(d["name"], d["version"]) for d in shown] == [(d.name, d.version) for d in got.dependencies]
    # The lock records both kinds; --require-hashes replays it into an empty cache, then offline.
    lock = tmp_path / "adapterhub.lock"
    assert main(["lock", ref, "--index", str(registry), "-o", str(lock)]) == 0
    locked = {a["name"]: a for a in json.loads(lock.read_text())["adapters"]}
    assert set(locked) == {"mixed-stack", "org-peft-lora", "reg-seq-bn"}
    assert locked["reg-seq-bn"]["version"] == "1.0.0" and "hub" not in locked["reg-seq-bn"]
    assert locked["reg-seq-bn"]["required_by"] == ["mixed-stack"] and len(locked["reg-seq-bn"]["files"]) >= 1
    assert locked["org-peft-lora"]["hub"] == lora_ref and locked["mixed-stack"]["hub"] == ref
    # a lock that leaves the registry member out installs nothing of the composition
    doc = json.loads(lock.read_text())
    partial = tmp_path / "partial.lock"
    partial.write_text(json.dumps({**doc, "adapters": [a for a in doc["adapters"] if a["name"] != "reg-seq-bn"]}))
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "partial"))
    with pytest.raises(NotFoundError, match="depends on reg-seq-bn, which is not in the lock"):
        pull_locked(partial, index=registry, require_hashes=True)
    assert not any(v.startswith("mixed-stack/") for v in views(tmp_path / "partial"))
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "from-lock"))
    installed = pull_locked(lock, index=registry, require_hashes=True)
    assert {p.name for p in installed} == set(locked)
    hub.server.stop()
    again = pull_locked(lock, index=registry, require_hashes=True, offline=True)
    assert sorted(p.path for p in again) == sorted(p.path for p in installed)
    offline = pull(ref, index=registry, offline=True)
    assert [d.name for d in offline.dependencies] == ["org-peft-lora", "reg-seq-bn"]


def test_a_registry_dependency_missing_from_the_index_names_the_index_and_the_dependency(hub, cache, tmp_path,
                                                                                        capsys):
    registry = tmp_path / "registry"
    assert main(["index", "init", str(registry), "--name", "team"]) == 0
    deps = [{"name": "sst2-houlsby", "spec": ">=1", "role": "member"}]
    commit = put_composition(hub.server, "org/elsewhere", composition_doc("elsewhere", deps, base=_samples_base()))
    with pytest.raises(NotFoundError) as caught:
        pull(f"hf:org/elsewhere@{commit}", index=registry, endpoint=hub.endpoint)
    message = str(caught.value)
    assert f"hf:org/elsewhere@{commit} requires sst2-houlsby>=1" in message and str(registry) in message
    assert "--index" in (caught.value.hint or "")
    assert main(["pull", f"hf:org/elsewhere@{commit}", "--index", str(registry), "--endpoint", hub.endpoint]) == 1
    assert "no adapter named 'sst2-houlsby'" in capsys.readouterr().err
    assert views(cache) == [] and leftovers(cache) == []


def test_a_yanked_only_match_is_refused(mixed, hub, cache, tmp_path):
    registry, ref, _ = mixed
    assert main(["index", "yank", "reg-seq-bn", "1.0.0", "--index", str(registry), "--reason", "CVE-0"]) == 0
    with pytest.raises(YankedError, match=r"only yanked versions match: 1\.0\.0 \(CVE-0\)") as caught:
        pull(ref, index=registry, endpoint=hub.endpoint)
    assert ref in str(caught.value)
    # an exact pin by a Hub composition is a dependency's pin: it does not select the yanked version either
    doc = composition_doc("pins-yanked", [{"name": "reg-seq-bn", "spec": "==1.0.0", "role": "member"}])
    pinned = f"hf:org/pins@{put_composition(hub.server, 'org/pins', doc)}"
    with pytest.raises(YankedError, match=f"{pinned} requires reg-seq-bn==1.0.0"):
        pull(pinned, index=registry, endpoint=hub.endpoint)
    assert not any(v.split("/")[0] in ("mixed-stack", "reg-seq-bn") for v in views(cache))


def test_a_cycle_across_hub_and_registry_dependencies_is_refused_from_either_end(hub, cache, tmp_path):
    registry = tmp_path / "registry"
    held = composition_doc("cyc-held", [{"name": "cyc-listed", "spec": "", "role": "member"}])
    commit = put_composition(hub.server, "org/cyc", held)
    ref = f"hf:org/cyc@{commit}"
    publish_dir(tmp_path, registry, composition_doc("cyc-listed", [{"name": "cyc-held", "hub": ref, "role": "member"}]))
    with pytest.raises(DependencyCycleError) as caught:
        pull(ref, index=registry, endpoint=hub.endpoint)
    assert caught.value.cycle == [ref, "cyc-listed@1.0.0", ref]
    with pytest.raises(DependencyCycleError) as caught:
        pull("cyc-listed", index=registry, endpoint=hub.endpoint)
    assert caught.value.cycle == ["cyc-listed", ref, "cyc-listed"]
    assert views(cache) == [] and leftovers(cache) == []


def test_the_depth_limit_counts_the_whole_chain_of_both_kinds():
    chain = HubChain(tuple(f"hf:org/c{i}@{'c' * 40}" for i in range(MAX_DEPENDENCY_DEPTH - 1)) + ("mid@1.0.0",))
    assert chain.keys[-1] == "mid" and chain.keys[0] == chain.labels[0]
    with pytest.raises(DependencyLimitError, match=f"depth {MAX_DEPENDENCY_DEPTH + 1}"):
        resolve_closure(open_index(None), ["sst2-houlsby"], required_by=chain.keys)
    assert [r.name for r in resolve_closure(open_index(None), ["sst2-houlsby"], required_by=chain.keys[1:])] == [
        "sst2-houlsby"]


def test_one_pull_selects_one_version_of_a_name_across_both_kinds(mixed, hub, cache, tmp_path):
    registry, ref, _ = mixed
    outer = composition_doc("outer", [{"name": "reg-seq-bn", "spec": "==1.1.0", "role": "member"},
                                      {"name": "mixed-stack", "hub": ref, "role": "member"}])
    publish_dir(tmp_path, registry, outer)
    with pytest.raises(ConflictError, match=r"reg-seq-bn: .* needs <1.1,>=1, but outer selected 1\.1\.0"):
        pull("outer", index=registry, endpoint=hub.endpoint)
