"""Hub dependencies of a composition (manifest format 1.1 ``dependencies[].hub``) against hostile input, with the
real huggingface_hub client and our server: a manifest sha256 or name that is not what the repo yields, a
reference that is unpinned, malformed or climbs out of the repo, a cycle, a lock that leaves one out. Each is a
typed error, and a failed pull leaves no view, no recorded manifest and no temp file in the cache."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
from support.hub_repos import BASE_ID, put_fixture_repos
from support.store_support import leftovers, views

from adapterhub.errors import (
    DependencyCycleError,
    DependencyLimitError,
    IntegrityError,
    NotFoundError,
    OfflineError,
    SchemaError,
)
from adapterhub.manifest import dependency_digest, manifest_problems, parse_manifest
from adapterhub.names import parse_hub_reference
from adapterhub.registry import open_index
from adapterhub.registry.lockfile import Lockfile, build_lock, parse_lock
from adapterhub.store import list_cached, pull, pull_locked
from adapterhub.store.hub_deps import MAX_HUB_DEPTH, HubChain
from adapterhub.store.hub_records import cached_hub_manifest

C = "c" * 40


def _composition(deps: list[dict], *, name: str = "hub-comp") -> dict:
    return {
        "schema_version": "1.1", "name": name, "version": "1.0.0", "description": "a stack over Hub adapters",
        "license": "NOASSERTION", "authors": ["me"], "task": {"type": "other", "name": name},
        "base_model": {"id": BASE_ID, "model_type": "bert", "hidden_size": 32, "num_hidden_layers": 5},
        "adapter": {"method": "composition", "config": {"composition": {
            "type": "Stack", "children": [d["name"] for d in deps]}}},
        "files": [], "dependencies": deps,
    }


@pytest.fixture
def members(hub, cache):
    """The two fixture repos as pinned dependencies (name and sha256 from a pull into a scratch cache)."""
    commits = put_fixture_repos(hub.server)
    refs = [f"hf:org/peft-lora@{commits.peft}", f"hf:org/library@{commits.library}:adapters/seq_bn"]
    scratch = cache.parent / "scratch-cache"
    pulled = [pull(r, endpoint=hub.endpoint, cache_dir=scratch) for r in refs]
    return [{"name": p.name, "hub": r, "manifest_sha256": dependency_digest(p.manifest), "role": "member"}
            for p, r in zip(pulled, refs, strict=True)]


def _clean(cache: Path) -> None:
    assert views(cache) == [] and list_cached() == [] and leftovers(cache) == []
    assert not list((cache / "hub").rglob("*.json")) if (cache / "hub").is_dir() else True


def test_pulls_each_member_by_reference_then_the_composition_and_offline_again(members, hub, cache):
    comp = parse_manifest(_composition(members))
    got = pull(comp, endpoint=hub.endpoint)
    assert [d.reference for d in got.dependencies] == [m["hub"] for m in members]
    assert {c.name for c in list_cached()} == {"hub-comp", *(m["name"] for m in members)}
    for m in members:  # recorded by reference, as `pull hf:...` records it
        assert cached_hub_manifest(parse_hub_reference(m["hub"])).name == m["name"]
    hub.server.stop()
    again = pull(comp, endpoint=hub.endpoint, offline=True)
    assert [d.path for d in again.dependencies] == [d.path for d in got.dependencies] and again.downloaded == 0
    # --no-deps pulls the composition alone
    assert pull(comp, offline=True, dependencies=False).dependencies == ()


def test_manifest_sha256_mismatch_installs_nothing(members, hub, cache):
    bad = copy.deepcopy(members)
    bad[1]["manifest_sha256"] = "0" * 64
    with pytest.raises(IntegrityError, match="the composition pins 0000"):
        pull(parse_manifest(_composition(bad)), endpoint=hub.endpoint)
    # the first member was complete and stays (as after any failed pull); the bad one and the composition do not
    assert {c.name for c in list_cached()} == {members[0]["name"]}
    assert cached_hub_manifest(parse_hub_reference(members[1]["hub"])) is None
    assert leftovers(cache) == []


def test_a_dependency_named_other_than_what_the_repo_yields_is_refused(members, hub, cache):
    bad = copy.deepcopy(members[:1])
    bad[0]["name"] = "someone-else"
    with pytest.raises(IntegrityError, match="yields the adapter 'org-peft-lora'"):
        pull(parse_manifest(_composition(bad)), endpoint=hub.endpoint)
    _clean(cache)


def test_offline_with_nothing_cached_is_an_offline_error(members, hub, cache):
    with pytest.raises(OfflineError):
        pull(parse_manifest(_composition(members)), endpoint=hub.endpoint, offline=True)
    _clean(cache)


@pytest.mark.parametrize(("hub_ref", "words"), [
    ("hf:org/peft-lora", "pin it: hf:org/peft-lora@<40-hex commit>"),
    ("hf:org/peft-lora@main", "'main', a branch, tag or short commit"),
    (f"hf:org/peft-lora@{C[:12]}", "short commit"),
    (f"hf:org/library@{C}:adapters/../../etc", "must be a relative path inside the repository"),
    (f"hf:org/library@{C}:adapters//x", "no empty parts"),
    (f"hf:-bad/repo@{C}", "cannot parse Hub reference"),
    (f"hf:datasets/org/x@{C}", "only model repositories"),
])
def test_hostile_references_are_schema_problems(hub_ref, words):
    doc = _composition([{"name": "org-a", "hub": hub_ref}])
    problems = manifest_problems(doc)
    assert any(p.pointer == "/dependencies/0/hub" and words in p.message for p in problems), problems
    with pytest.raises(SchemaError):
        parse_manifest(doc)


def test_format_rules_of_the_hub_form():
    dep = {"name": "org-a", "hub": f"hf:org/a@{C}"}
    assert manifest_problems(_composition([dep])) == []
    old = {**_composition([dep]), "schema_version": "1.0"}
    assert any(p.pointer == "/schema_version" and "declare '1.1'" in p.message for p in manifest_problems(old))
    with_spec = _composition([{**dep, "spec": "==1.0"}])
    assert any("takes no version spec" in p.message for p in manifest_problems(with_spec))
    sha_alone = _composition([{"name": "org-a", "manifest_sha256": "0" * 64}])
    assert any("'hub' is required" in p.message for p in manifest_problems(sha_alone))
    twice = _composition([dep, {**dep, "name": "org-b"}])
    assert any("listed twice" in p.message for p in manifest_problems(twice))
    # a newer minor (1.2) is still read by this version
    assert parse_manifest({**_composition([dep]), "schema_version": "1.2"}).dependencies[0].hub == dep["hub"]


def test_a_cycle_and_a_chain_too_deep_are_refused():
    a, b = parse_hub_reference(f"hf:org/x@{C}:a"), parse_hub_reference(f"hf:org/x@{C}:b")
    chain = HubChain(("comp 1.0.0",)).enter(a).enter(b)
    with pytest.raises(DependencyCycleError) as caught:
        chain.enter(a)
    assert caught.value.cycle == [str(a), str(b), str(a)]
    deep = HubChain(tuple(f"x{i}" for i in range(MAX_HUB_DEPTH)))
    with pytest.raises(DependencyLimitError):
        deep.enter(a)


def _registry_with(tmp_path: Path, doc: dict) -> Path:
    from adapterhub.cli import main

    folder = tmp_path / "comp"
    folder.mkdir()
    (folder / "adapterhub.json").write_text(json.dumps(doc))
    registry = tmp_path / "registry"
    assert main(["publish", str(folder), "--to", str(registry)]) == 0
    return registry


def test_a_lock_that_leaves_a_hub_dependency_out_or_changes_it_is_refused(members, hub, cache, tmp_path, monkeypatch):
    registry = _registry_with(tmp_path, _composition(members))
    index = open_index(str(registry))
    from adapterhub.registry import resolve_closure
    from adapterhub.store.locked import hub_dependency_locks

    closure = resolve_closure(index, ["hub-comp"])
    assert [r.name for r in closure] == ["hub-comp"]  # the resolver leaves Hub dependencies to the store
    deps = hub_dependency_locks(closure, endpoint=hub.endpoint)
    assert [d.hub for d in deps] == [m["hub"] for m in members]
    assert [d.manifest_sha256 for d in deps] == [m["manifest_sha256"] for m in members]
    lock = build_lock(index, ["hub-comp"], hub_dependencies=deps)
    roundtrip = parse_lock(lock.dumps().encode(), "lock")
    assert roundtrip == lock
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "c2"))
    missing = Lockfile(lock.adapters[1:], lock.index, lock.requirements)
    with pytest.raises(NotFoundError, match="not in the lock"):
        pull_locked(missing, index=index, require_hashes=True, endpoint=hub.endpoint)
    wrong = dataclasses.replace(lock.adapters[0], manifest_sha256="0" * 64)
    swapped = Lockfile((wrong, *lock.adapters[1:]), lock.index, lock.requirements)
    with pytest.raises(IntegrityError, match="is not the locked one"):
        pull_locked(swapped, index=index, require_hashes=True, endpoint=hub.endpoint)
    assert views(tmp_path / "c2") == []


def test_index_check_reports_an_unpinned_hub_dependency_in_an_entry(members, hub, cache, tmp_path):
    from adapterhub.registry.check import check_index

    registry = _registry_with(tmp_path, _composition(members))
    assert check_index(registry).ok
    entry = next(p for p in registry.rglob("hub-comp") if p.is_file())
    entry.write_text(entry.read_text().replace(members[0]["hub"], "hf:org/peft-lora@main"))
    report = check_index(registry)
    assert any("/dependencies/0/hub" in p and "pinned to a commit" in p for p in report.problems), report.problems


def test_a_composition_held_by_a_hub_repo_pulls_its_hub_members(members, hub, cache):
    from support.store_support import put_repo

    commit = put_repo(hub.server, "org/stack", {"adapterhub.json": json.dumps(_composition(members)).encode()})
    got = pull(f"hf:org/stack@{commit}", endpoint=hub.endpoint)
    assert got.name == "hub-comp" and got.reference == f"hf:org/stack@{commit}"
    assert [d.reference for d in got.dependencies] == [m["hub"] for m in members]
    hub.server.stop()
    again = pull(f"hf:org/stack@{commit}", endpoint=hub.endpoint, offline=True)
    assert [d.path for d in again.dependencies] == [d.path for d in got.dependencies]
