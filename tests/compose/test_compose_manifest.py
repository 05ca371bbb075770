"""Compositions published as manifests (method ``composition``): schema and loader checks, save ->
validate -> package -> publish --to a directory registry -> load_composition from an empty cache."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from support.runtime_helpers import hidden, inputs_for, tiny_model
from support.tolerances import assert_close, model_terms

from adapterhub.blocks import used_names
from adapterhub.cli import main
from adapterhub.compose import Fuse, Mix, Route, Stack, from_json, load_composition, save_composition, to_json
from adapterhub.errors import AdapterStateError, CompositionError, IncompatibleBaseError, SchemaError
from adapterhub.manifest import CompositionConfig, load_manifest, manifest_problems, parse_manifest
from adapterhub.runtime import AdapterModel
from adapterhub.schema import MANIFEST_SCHEMA, load_schema

MEMBERS = ("sent", "topic", "style")


def _doc(composition, deps=("demo-a", "demo-b", "demo-f")) -> dict:
    return {
        "schema_version": "1.0", "name": "demo-comp", "version": "1.0.0", "description": "a composition",
        "license": "NOASSERTION", "authors": ["me"], "task": {"type": "other", "name": "x"},
        "base_model": {"id": "unknown", "model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2},
        "adapter": {"method": "composition", "config": {"composition": composition}},
        "files": [], "dependencies": [{"name": d, "spec": "==1.0.0", "role": "member"} for d in deps],
    }


GOOD = {"type": "Stack", "children": ["demo-a", {"type": "Fuse", "children": ["demo-a", "demo-b"], "fusion": "demo-f"}]}


def _problems(doc) -> list[tuple[str, str]]:
    return [(p.pointer, p.message) for p in manifest_problems(doc)]


def test_schema_and_types_agree_for_the_composition_config():
    schema = load_schema(MANIFEST_SCHEMA)["$defs"]["config_composition"]
    assert set(schema["properties"]) == {f.name for f in dataclasses.fields(CompositionConfig)} == {"composition"}
    assert schema["required"] == ["composition"]


def test_a_good_composition_manifest_parses_and_round_trips():
    m = parse_manifest(_doc(GOOD))
    assert m.files == ()
    assert m.adapter.config.block() == Stack("demo-a", Fuse("demo-a", "demo-b", fusion="demo-f"))
    from adapterhub.manifest import manifest_to_dict

    assert manifest_to_dict(m) == _doc(GOOD)
    route = {"type": "Route", "children": ["demo-a", None, {"type": "Mix", "children": ["demo-a", "demo-b"],
                                                                 "weights": [[0.25, 0.75]]}]}
    assert _problems(_doc(route, deps=("demo-a", "demo-b"))) == []


@pytest.mark.parametrize(("composition", "pointer", "words"), [
    ({"type": "Blend", "children": ["demo-a"]}, "/adapter/config/composition", "not a valid composition"),
    ({"type": "Stack", "children": []}, "/adapter/config/composition", "at least one member"),
    ({"type": "Stack", "children": ["demo-a"], "fusion": "demo-f"}, "/adapter/config/composition", "unknown keys"),
    ({"type": "Fuse", "children": [{"type": "Mix", "children": ["demo-a"]}], "fusion": "demo-f"},
     "/adapter/config/composition", "cannot be nested inside Fuse"),
    ({"type": "Stack", "children": ["Not A Name"]}, "/adapter/config/composition", ""),
    ({"type": "Mix", "children": ["demo-a", "demo-b"], "weights": [1.0]}, "/adapter/config/composition", "1 weights for 2"),
])
def test_malformed_blocks_are_refused_with_a_pointer(composition, pointer, words):
    problems = _problems(_doc(composition))
    assert problems, composition
    assert any(p.startswith(pointer) and words in m for p, m in problems), problems


def test_every_used_adapter_must_be_a_dependency():
    problems = _problems(_doc(GOOD, deps=("demo-a",)))
    messages = [m for p, m in problems if p == "/adapter/config/composition"]
    assert len(messages) == 2
    assert "'demo-b' is used by the composition but not listed in /dependencies" in messages[0]
    assert "'demo-f'" in messages[1]  # the fusion layer counts too
    with pytest.raises(SchemaError, match="demo-b"):
        parse_manifest(_doc(GOOD, deps=("demo-a",)))


def test_a_composition_has_no_weights_or_head_but_may_carry_a_card():
    doc = _doc(GOOD)
    doc["files"] = [{"path": "adapter.safetensors", "size": 1, "sha256": "0" * 64, "role": "weights"}]
    doc["head"] = {"type": "classification", "num_labels": 2}
    pointers = {p for p, _ in _problems(doc)}
    assert {"/files/0/role", "/head"} <= pointers
    doc = _doc(GOOD)
    doc["files"] = [{"path": "README.md", "size": 1, "sha256": "0" * 64, "role": "card"}]
    assert _problems(doc) == []


def test_files_may_be_empty_only_for_compositions_and_archives():
    doc = _doc(GOOD)
    doc["adapter"] = {"method": "fusion", "config": {"members": ["demo-a", "demo-b"]}}
    assert any(p == "/files" for p, _ in _problems(doc))


def test_block_json_round_trips_through_the_manifest_form():
    block = Stack(Mix("demo-a", "demo-b", weights=[[1, 3], [1, 1]]), Route(["demo-a", None]))
    doc = _doc(to_json(block), deps=("demo-a", "demo-b"))
    assert parse_manifest(copy.deepcopy(doc)).adapter.config.block() == from_json(to_json(block))
    assert used_names(Stack("a", Fuse("b", "a", fusion="f"), "b")) == ["a", "b", "f"]


# --- end to end on a tiny BERT ----------------------------------------------------------------------


def _trained() -> AdapterModel:
    h = AdapterModel(tiny_model("bert"))
    g = torch.Generator().manual_seed(5)
    for name in MEMBERS:
        h.add(name, "bottleneck", variant="pfeiffer", activate=False)
    h.add_fusion("mix", ["sent", "topic"], activate=False)
    with torch.no_grad():
        for name in (*MEMBERS, "mix"):
            for _, p in h.container[name].named_parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.2)
    return h


def _release(tmp: Path) -> tuple[dict[str, Path], AdapterModel]:
    """Members saved as demo-*@1.0.0, the fusion layer saved over them (pinned), and a model holding all four."""
    h = _trained()
    dirs = {name: tmp / name for name in (*MEMBERS, "mix")}
    for name in MEMBERS:
        h.save(name, dirs[name], name=f"demo-{name}", version="1.0.0")
    h2 = AdapterModel(tiny_model("bert"))
    for name in MEMBERS:
        h2.load(dirs[name], name=name, activate=False)
    h2.load_package(h.package("mix"), name="mix", activate=False)
    h2.save("mix", dirs["mix"], name="demo-mix", version="1.0.0")
    h3 = AdapterModel(tiny_model("bert"))
    for name in MEMBERS:
        h3.load(dirs[name], name=name, activate=False)
    h3.load(dirs["mix"], name="mix", activate=False)
    return dirs, h3


BLOCK = Stack("style", Fuse("sent", "topic", fusion="mix"))


def test_save_validate_publish_and_load_from_an_empty_cache(tmp_path, capsys):
    dirs, h = _release(tmp_path / "src")
    inputs = inputs_for("bert")
    h.activate(BLOCK)
    want = hidden(h.model, inputs)

    path = save_composition(h, BLOCK, tmp_path / "src" / "comp", name="demo-stackfuse", version="1.0.0")
    doc = json.loads(path.read_text())
    assert sorted(p.name for p in path.parent.iterdir()) == ["adapterhub.json"]
    assert doc["adapter"] == {"method": "composition", "config": {"composition": {
        "type": "Stack", "children": ["demo-style", {"type": "Fuse", "children": ["demo-sent", "demo-topic"],
                                                     "fusion": "demo-mix"}]}}}
    assert doc["dependencies"] == [{"name": f"demo-{n}", "spec": "==1.0.0", "role": "member"}
                                   for n in ("style", "sent", "topic", "mix")]
    assert doc["files"] == []

    registry = tmp_path / "registry"
    for d in (*dirs.values(), path.parent):
        assert main(["validate", str(d)]) == 0
        assert main(["package", str(d)]) == 0
        assert main(["publish", str(d), "--to", str(registry)]) == 0
    capsys.readouterr()
    assert [f.role for f in load_manifest(path.parent).files] == ["card"]
    assert "load_composition(ah, 'demo-stackfuse==1.0.0')" in (path.parent / "README.md").read_text()

    fresh = AdapterModel(tiny_model("bert"))
    assert hidden(fresh.model, inputs).sub(want).abs().max() > 1e-3  # the composition changes the output
    name = load_composition(fresh, "demo-stackfuse==1.0.0", index=registry, cache_dir=tmp_path / "cache",
                            offline=False)
    assert name == "demo-stackfuse"
    assert set(fresh.adapters) == {"demo-style", "demo-sent", "demo-topic", "demo-mix"}
    assert fresh.composition == Stack("demo-style", Fuse("demo-sent", "demo-topic", fusion="demo-mix"))
    assert_close(hidden(fresh.model, inputs), want, terms=model_terms(fresh.model))  # another model instance

    # a second model: members already attached under local names are reused, the pinned versions checked
    again = AdapterModel(tiny_model("bert"))
    for n in MEMBERS:
        again.load(dirs[n], name=n, activate=False)
    load_composition(again, "demo-stackfuse", index=registry, cache_dir=tmp_path / "cache", offline=True)
    assert set(again.adapters) == {*MEMBERS, "demo-mix"}
    assert_close(hidden(again.model, inputs), want, terms=model_terms(again.model))  # another model instance


def test_ah_load_activates_on_attached_members_and_names_missing_ones(tmp_path):
    dirs, h = _release(tmp_path)
    inputs = inputs_for("bert")
    h.activate(BLOCK)
    want = hidden(h.model, inputs)
    comp = save_composition(h, BLOCK, tmp_path / "comp", name="demo-stackfuse", version="1.0.0").parent

    fresh = AdapterModel(tiny_model("bert"))
    fresh.load(dirs["sent"], activate=False)
    before = hidden(fresh.model, inputs)
    with pytest.raises(AdapterStateError, match="not attached: demo-style==1.0.0, demo-topic==1.0.0, demo-mix==1.0.0"):
        fresh.load(comp)
    assert fresh.active == () and torch.equal(hidden(fresh.model, inputs), before)  # untouched: same computation
    for n in ("style", "topic", "mix"):
        fresh.load(dirs[n], activate=False)
    assert fresh.load(comp / "adapterhub.json") == "demo-stackfuse"  # a directory or the manifest file
    assert_close(hidden(fresh.model, inputs), want, terms=model_terms(fresh.model))  # another model instance


def test_pinned_member_versions_are_checked(tmp_path):
    dirs, h = _release(tmp_path)
    comp = save_composition(h, Stack("style"), tmp_path / "comp", name="demo-one", version="1.0.0").parent
    h.save("style", tmp_path / "style2", name="demo-style", version="2.0.0")
    other = AdapterModel(tiny_model("bert"))
    other.load(tmp_path / "style2", activate=False)
    with pytest.raises(AdapterStateError, match="must be ==1.0.0"):
        other.load(comp)
    # a looser specifier chosen at save time accepts it
    loose = save_composition(h, Stack("style"), tmp_path / "loose", name="demo-one", version="1.1.0",
                             members={"style": ">=1"}).parent
    assert other.load(loose) == "demo-one" and other.active == (Stack("demo-style"),)


def test_save_refuses_unattached_names_and_stray_members_and_load_checks_the_base(tmp_path):
    _dirs, h = _release(tmp_path)
    with pytest.raises(AdapterStateError, match="no adapter named 'nope'"):
        save_composition(h, Stack("style", "nope"), tmp_path / "x", name="demo-x")
    with pytest.raises(CompositionError, match="not used by the composition"):
        save_composition(h, Stack("style"), tmp_path / "x", name="demo-x", members={"sent": "==1.0.0"})
    with pytest.raises(CompositionError, match="cannot be nested"):
        save_composition(h, Fuse(Mix("sent", "topic"), fusion="mix"), tmp_path / "x", name="demo-x")
    assert not (tmp_path / "x").exists()
    comp = save_composition(h, "style", tmp_path / "comp", name="demo-x").parent
    wider = AdapterModel(tiny_model("bert", num_hidden_layers=3))
    with pytest.raises(IncompatibleBaseError):
        wider.load(comp)


def test_load_composition_refuses_an_adapter_that_is_not_a_composition(tmp_path, capsys):
    dirs, _h = _release(tmp_path / "src")
    registry = tmp_path / "registry"
    assert main(["package", str(dirs["style"])]) == 0
    assert main(["publish", str(dirs["style"]), "--to", str(registry)]) == 0
    capsys.readouterr()
    fresh = AdapterModel(tiny_model("bert"))
    with pytest.raises(CompositionError, match="bottleneck adapter, not a composition"):
        load_composition(fresh, "demo-style", index=registry, cache_dir=tmp_path / "cache", offline=False)
    assert fresh.adapters == ()
