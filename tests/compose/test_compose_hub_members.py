"""Compositions over Hub adapters (manifest format 1.1 ``dependencies[].hub``), end to end with the real
huggingface_hub client against our server: composed by hand from ``hf:`` pulls, saved (each member pinned to
its commit and manifest sha256), published to an index, pulled, locked, re-pulled from the lock with
``--require-hashes`` and offline, and loaded on a fresh model: the output equals the hand-composed one."""

from __future__ import annotations

import json

import pytest
import torch
from support.hub_repos import BASE_DIR, files_of, put_fixture_repos
from support.paths import REFERENCE
from support.store_support import put_repo
from support.tolerances import assert_close, model_terms

import adapterhub
from adapterhub.cli import main
from adapterhub.compose import Fuse, Stack, load_composition, save_composition
from adapterhub.errors import AdapterStateError, IntegrityError, InvalidNameError
from adapterhub.manifest import dependency_digest, load_manifest, manifest_to_dict
from adapterhub.publish import init_adapter
from adapterhub.runtime import wrap
from adapterhub.store import list_cached, pull, pull_locked


def _base():
    from transformers import AutoModel

    return AutoModel.from_pretrained(BASE_DIR).eval()


def _out(model) -> torch.Tensor:
    ids = torch.tensor([[5, 17, 23, 42, 8, 3]])
    with torch.no_grad():
        return model(input_ids=ids).last_hidden_state


def _stack(endpoint: str, commits) -> tuple[list[str], object]:
    refs = [f"hf:org/peft-lora@{commits.peft}", f"hf:org/library@{commits.library}:adapters/seq_bn"]
    return refs, lambda names: Stack(*names)


def _fuse(endpoint: str, server) -> tuple[list[str], object]:
    root = REFERENCE / "adapters" / "bert" / "fuse_seq_bn" / "safetensors"
    if not root.is_dir():
        pytest.skip(f"reference fixtures missing: {root}")
    commit = put_repo(server, "org/fused", {f"{d}/{n}": b for d in ("a", "b", "fusion")
                                            for n, b in files_of(root / d).items()})
    refs = [f"hf:org/fused@{commit}:{d}" for d in ("a", "b", "fusion")]
    return refs, lambda names: Fuse(names[0], names[1], fusion=names[2])


@pytest.mark.parametrize("kind", ["stack", "fuse"])
def test_composition_over_hub_adapters_publishes_pulls_locks_and_loads(kind, hub, cache, tmp_path, monkeypatch, capsys):
    commits = put_fixture_repos(hub.server)
    refs, make = _stack(hub.endpoint, commits) if kind == "stack" else _fuse(hub.endpoint, hub.server)
    # By hand: pull each member by reference, attach, compose.
    model = _base()
    handle = wrap(model)
    names = []
    for ref in refs:
        pulled = pull(ref, endpoint=hub.endpoint)
        if pulled.name not in handle.adapters:
            adapterhub.load(model, ref, endpoint=hub.endpoint, activate=False)
        names.append(pulled.name)
    block = make(names)
    handle.activate(block)
    want = _out(model).double()
    assert (want - _out(_base()).double()).abs().max() > 1e-4  # the composition changes the output

    # Saved: every member pinned to its commit and manifest sha256 (format 1.1), no spec.
    path = save_composition(handle, block, tmp_path / "comp", name=f"hf-{kind}", version="1.0.0")
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == "1.1"
    assert [d["hub"] for d in doc["dependencies"]] == refs
    assert all(len(d["manifest_sha256"]) == 64 and "spec" not in d for d in doc["dependencies"])
    registry = tmp_path / "registry"
    for args in (["validate", str(path.parent)], ["package", str(path.parent)],
                 ["publish", str(path.parent), "--to", str(registry)], ["index", "check", str(registry)]):
        assert main(args) == 0, args

    # A fresh cache: pull the composition by name, its Hub members come with it.
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "fresh"))
    got = pull(f"hf-{kind}", index=registry, endpoint=hub.endpoint)
    deps = {d.reference for d in got.dependencies if d.reference}
    assert set(refs) <= deps
    fresh = _base()
    assert load_composition(wrap(fresh), f"hf-{kind}", index=registry, endpoint=hub.endpoint) == f"hf-{kind}"
    assert_close(_out(fresh).double(), want, terms=model_terms(fresh))

    # Locked, then installed from the lock alone (hashes required) into another cache, then offline.
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    lock = tmp_path / "adapterhub.lock"
    assert main(["lock", f"hf-{kind}", "--index", str(registry), "-o", str(lock)]) == 0
    locked = json.loads(lock.read_text())["adapters"]
    assert {a["hub"] for a in locked if "hub" in a} >= set(refs)
    assert all(a["required_by"] == [f"hf-{kind}"] for a in locked if a.get("hub") in refs)
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "from-lock"))
    installed = pull_locked(lock, index=registry, require_hashes=True)
    assert {p.reference for p in installed if p.reference} >= set(refs)
    hub.server.stop()
    again = pull_locked(lock, index=registry, require_hashes=True, offline=True)
    assert [p.path for p in again] == [p.path for p in installed]
    offline_model = _base()
    load_composition(wrap(offline_model), f"hf-{kind}", index=registry, offline=True)
    assert_close(_out(offline_model).double(), want, terms=model_terms(offline_model))
    # cache ls / verify find a member by its reference; info shows the pinned dependency.
    capsys.readouterr()
    assert main(["cache", "ls", refs[0], "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["adapters"]
    assert [a["name"] for a in listed] == [names[0]]
    assert main(["verify", refs[0]]) == 0
    assert main(["info", f"hf-{kind}", "--index", str(registry)]) == 0
    assert refs[0] in capsys.readouterr().out
    assert {c.name for c in list_cached()} >= {*names, f"hf-{kind}"}


def test_a_member_named_by_branch_is_refused_with_the_pinned_form(hub, cache, tmp_path):
    commits = put_fixture_repos(hub.server)
    model = _base()
    handle = adapterhub.load(model, f"hf:org/peft-lora@{commits.peft}", endpoint=hub.endpoint)
    name = handle.adapters[0]
    with pytest.raises(InvalidNameError, match="pin it: hf:org/peft-lora@<40-hex commit>"):
        save_composition(handle, Stack(name), tmp_path / "c", name="c1", members={name: "hf:org/peft-lora@main"})
    assert not (tmp_path / "c").exists()
    # A reference given explicitly at the commit is written as given (the same repo: its sha256 is kept).
    path = save_composition(handle, Stack(name), tmp_path / "c", name="c1", members={name: f"hf:org/peft-lora@{commits.peft}"})
    dep = json.loads(path.read_text())["dependencies"][0]
    assert dep["hub"] == f"hf:org/peft-lora@{commits.peft}" and "manifest_sha256" in dep


def test_init_pins_hub_members_named_by_branch(hub, cache, tmp_path, monkeypatch):
    commits = put_fixture_repos(hub.server)
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    lora = pull(f"hf:org/peft-lora@{commits.peft}")
    folder = tmp_path / "comp"
    folder.mkdir()
    doc = {"schema_version": "1.0", "name": "by-branch", "version": "1.0.0", "description": "a stack",
           "license": "NOASSERTION", "authors": ["me"], "task": {"type": "other", "name": "x"},
           "base_model": manifest_to_dict(lora.manifest)["base_model"],
           "adapter": {"method": "composition", "config": {"composition": {"type": "Stack", "children": [lora.name]}}},
           "files": [], "dependencies": [{"name": lora.name, "hub": "hf:org/peft-lora", "role": "member"}]}
    (folder / "adapterhub.json").write_text(json.dumps(doc))
    assert main(["validate", str(folder)]) != 0  # unpinned: refused as it is
    assert main(["init", str(folder), "-y"]) == 0
    written = load_manifest(folder)
    assert written.schema_version == "1.1"
    assert written.dependencies[0].hub == f"hf:org/peft-lora@{commits.peft}"
    assert written.dependencies[0].manifest_sha256 == dependency_digest(lora.manifest)
    assert main(["validate", str(folder)]) == 0
    # a member whose repo yields another adapter than the name the block uses
    doc["dependencies"][0]["hub"] = f"hf:org/library@{commits.library}:adapters/seq_bn"
    (folder / "adapterhub.json").write_text(json.dumps(doc))
    with pytest.raises(IntegrityError, match="yields the adapter 'org-library-adapters-seq-bn"):
        init_adapter(folder)


def test_a_member_attached_at_another_commit_is_refused_and_load_pulls_the_pinned_one(hub, cache, tmp_path):
    commits = put_fixture_repos(hub.server)
    first = f"hf:org/peft-lora@{commits.peft}"
    model = _base()
    handle = adapterhub.load(model, first, endpoint=hub.endpoint)
    name = handle.adapters[0]
    comp = save_composition(handle, Stack(name), tmp_path / "comp", name="lora-only", version="1.0.0").parent
    want = _out(model).double()
    # A later commit of the same repo: same derived name, other bytes' origin.
    newer = put_repo(hub.server, "org/peft-lora", {"NOTES.md": b"a later commit\n"})
    other = _base()
    adapterhub.load(other, f"hf:org/peft-lora@{newer}", endpoint=hub.endpoint, activate=False)
    with pytest.raises(AdapterStateError, match=f"must be {first}"):
        wrap(other).load(comp)
    # adapterhub.load of the published composition pulls its pinned member and activates it.
    registry = tmp_path / "registry"
    assert main(["publish", str(comp), "--to", str(registry)]) == 0
    fresh = _base()
    loaded = adapterhub.load(fresh, "lora-only", index=registry, endpoint=hub.endpoint)
    assert loaded.composition == Stack(name)
    assert_close(_out(fresh).double(), want, terms=model_terms(fresh))


def test_a_hub_held_composition_over_hub_and_registry_members_loads_as_composed_by_hand(hub, cache, tmp_path):
    from support.hub_registry import composition_doc, publish_hub_adapter_as, put_composition

    commits = put_fixture_repos(hub.server)
    registry = tmp_path / "registry"
    publish_hub_adapter_as(tmp_path, registry, f"hf:org/library@{commits.library}:adapters/seq_bn", hub.endpoint,
                           "reg-seq-bn", ("1.0.0", "1.1.0"))
    lora_ref = f"hf:org/peft-lora@{commits.peft}"
    # By hand: the Hub member by reference, the registry member by name, stacked.
    model = _base()
    handle = adapterhub.load(model, lora_ref, endpoint=hub.endpoint, activate=False)
    adapterhub.load(model, "reg-seq-bn==1.0.0", index=registry, activate=False)
    lora = handle.adapters[0]
    handle.activate(Stack(lora, "reg-seq-bn"))
    want = _out(model).double()
    assert (want - _out(_base()).double()).abs().max() > 1e-4
    lora_manifest = pull(lora_ref, endpoint=hub.endpoint).manifest
    deps = [{"name": lora, "hub": lora_ref, "manifest_sha256": dependency_digest(lora_manifest), "role": "member"},
            {"name": "reg-seq-bn", "spec": "<1.1", "role": "member"}]
    doc = composition_doc("mixed-stack", deps, base=manifest_to_dict(lora_manifest)["base_model"])
    ref = f"hf:org/mixed@{put_composition(hub.server, 'org/mixed', doc)}"
    fresh = _base()
    assert load_composition(wrap(fresh), ref, index=registry, endpoint=hub.endpoint) == "mixed-stack"
    assert wrap(fresh).composition == Stack(lora, "reg-seq-bn")
    assert_close(_out(fresh).double(), want, terms=model_terms(fresh))
    hub.server.stop()  # everything is cached: adapterhub.load of the reference works offline
    offline = _base()
    adapterhub.load(offline, ref, index=registry, offline=True)
    assert_close(_out(offline).double(), want, terms=model_terms(offline))
