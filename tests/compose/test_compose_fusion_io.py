"""Fusion layers as adapters of their own: saved with dependencies on their members, loaded back, pulled from a registry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from support.runtime_helpers import hidden, inputs_for, tiny_model
from support.tolerances import assert_close, model_terms

from adapterhub.compose import Fuse, load_fusion
from adapterhub.errors import AdapterStateError, SchemaError
from adapterhub.manifest.io import load_manifest
from adapterhub.registry.writer import add_release, init_index
from adapterhub.runtime import AdapterModel
from adapterhub.store import ContentDirSource


def _trained(seed: int = 0) -> tuple[AdapterModel, dict]:
    model = tiny_model("bert")
    h = AdapterModel(model)
    g = torch.Generator().manual_seed(seed)
    for name in ("sent", "topic"):
        h.add(name, "bottleneck", variant="pfeiffer", activate=False)
    h.add_fusion("mix", ["sent", "topic"], activate=False)
    with torch.no_grad():
        for name in ("sent", "topic", "mix"):
            for _, p in h.container[name].named_parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.2)
    return h, inputs_for("bert")


def _publish(h: AdapterModel, out: Path) -> dict[str, Path]:
    dirs = {}
    for local, published in (("sent", "demo-sent"), ("topic", "demo-topic")):
        dirs[local] = out / local
        h.save(local, dirs[local], name=published, version="1.2.0")
    return dirs


def _publish_with_fusion(h: AdapterModel, out: Path) -> dict[str, Path]:
    """Members published as demo-sent/demo-topic 1.2.0, and ``out/mix`` a fusion manifest pinning them."""
    dirs = _publish(h, out)
    pinned = AdapterModel(tiny_model("bert"))
    for local, d in dirs.items():
        pinned.load(d, name=local, activate=False)
    pinned.load_package(h.package("mix"), name="mix", activate=False)
    pinned.save("mix", out / "mix", name="demo-mix")
    return dirs


def test_saved_fusion_names_its_members_as_dependencies(tmp_path):
    h, inputs = _trained()
    h.activate(Fuse("sent", "topic", fusion="mix"))
    want = hidden(h.model, inputs)
    h.save("mix", tmp_path / "mix-local", name="demo-mix")
    doc = json.loads((tmp_path / "mix-local" / "adapterhub.json").read_text())
    assert doc["adapter"]["method"] == "fusion"
    assert doc["adapter"]["config"]["members"] == ["sent", "topic"]
    assert [d["name"] for d in doc["dependencies"]] == ["sent", "topic"]
    assert all("spec" not in d for d in doc["dependencies"])  # members of unknown version: unpinned

    # members loaded from manifests: the fusion pins their exact versions
    fresh_src = _publish(h, tmp_path)
    h2 = AdapterModel(tiny_model("bert"))
    for local, d in fresh_src.items():
        h2.load(d, name=local, activate=False)
    h2.load_package(h.package("mix"), name="mix", activate=False)
    h2.save("mix", tmp_path / "mix", name="demo-mix", version="1.0.0")
    doc = json.loads((tmp_path / "mix" / "adapterhub.json").read_text())
    assert doc["adapter"]["config"]["members"] == ["demo-sent", "demo-topic"]
    assert doc["dependencies"] == [{"name": "demo-sent", "spec": "==1.2.0", "role": "member"},
                                   {"name": "demo-topic", "spec": "==1.2.0", "role": "member"}]

    # loading needs the members; then it computes what the original did
    h3 = AdapterModel(tiny_model("bert"))
    before = {k: v.clone() for k, v in h3.model.state_dict().items()}
    with pytest.raises(SchemaError, match="not an attached adapter"):
        h3.load(tmp_path / "mix")
    assert h3.adapters == () and all(torch.equal(v, h3.model.state_dict()[k]) for k, v in before.items())  # untouched
    for d in fresh_src.values():
        h3.load(d, activate=False)  # attached under their published names
    name = h3.load(tmp_path / "mix")
    assert h3.active == (name,)
    assert_close(hidden(h3.model, inputs), want, terms=model_terms(h3.model))  # another model instance


def test_member_version_pin_is_checked(tmp_path):
    h, _ = _trained()
    src = _publish_with_fusion(h, tmp_path)
    h3 = AdapterModel(tiny_model("bert"))
    h3.load(src["sent"], activate=False)
    h.save("topic", tmp_path / "topic2", name="demo-topic", version="2.0.0")
    h3.load(tmp_path / "topic2", activate=False)
    with pytest.raises(AdapterStateError, match="must be ==1.2.0"):
        h3.load(tmp_path / "mix")


def test_a_fusion_manifest_binds_the_member_published_under_its_name(tmp_path):
    """A local adapter named like a member's published name must not shadow the member loaded from that
    manifest: the manifest means the published one (and pins its version)."""
    h, inputs = _trained()
    src = _publish_with_fusion(h, tmp_path)
    h.activate(Fuse("sent", "topic", fusion="mix"))
    want = hidden(h.model, inputs)

    ah = AdapterModel(tiny_model("bert"))
    ah.add("demo-sent", "bottleneck", variant="pfeiffer", seed=7, activate=False)  # same sites, other weights
    ah.load(src["sent"], name="sent-v1", activate=False)  # published as demo-sent
    ah.load(src["topic"], activate=False)
    ah.load(tmp_path / "mix", name="mix")
    assert ah.adapter("mix").depends_on == ("sent-v1", "demo-topic")
    assert_close(hidden(ah.model, inputs), want, terms=model_terms(ah.model))


def test_load_fusion_pulls_members_from_a_registry(tmp_path):
    h, inputs = _trained(seed=3)
    h.activate(Fuse("sent", "topic", fusion="mix"))
    want = hidden(h.model, inputs)
    src = _publish(h, tmp_path / "pub")
    h2 = AdapterModel(tiny_model("bert"))
    for local, d in src.items():
        h2.load(d, name=local, activate=False)
    h2.load_package(h.package("mix"), name="mix", activate=False)
    src["mix"] = tmp_path / "pub" / "mix"
    h2.save("mix", src["mix"], name="demo-mix", version="1.0.0")

    index = init_index(tmp_path / "index", "test")
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    for d in src.values():
        manifest = load_manifest(d)
        add_release(index, manifest)
        for f in manifest.files:
            shutil.copyfile(d / f.path, blobs / f.sha256)

    fresh = AdapterModel(tiny_model("bert"))
    name = load_fusion(fresh, "demo-mix==1.0.0", index=index, sources=[ContentDirSource(blobs)],
                       cache_dir=tmp_path / "cache", offline=False)
    assert set(fresh.adapters) == {"demo-sent", "demo-topic", name}
    assert_close(hidden(fresh.model, inputs), want, terms=model_terms(fresh.model))  # another model instance
