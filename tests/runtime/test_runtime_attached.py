"""The public, read-only view of what is attached (``ah.adapter``, ``ah.attached``), and that nothing
outside the handle reaches for its private members."""

from __future__ import annotations

import ast
import dataclasses

import pytest
from support.paths import REPO
from support.runtime_helpers import tiny_model

from adapterhub.errors import AdapterStateError
from adapterhub.runtime import AdapterModel
from adapterhub.runtime.attached import AttachedAdapter, Published
from adapterhub.runtime.methods.bottleneck import BottleneckConfig
from adapterhub.runtime.methods.fusion import FusionConfig
from adapterhub.runtime.methods.lora import LoraConfig

ROOT = REPO


def test_view_after_add_load_merge_and_remove(tmp_path):
    ah = AdapterModel(tiny_model("bert"))
    ah.add("lo", "lora", r=2, alpha=4, activate=False)
    view = ah.adapter("lo")
    assert view == AttachedAdapter("lo", "lora", LoraConfig(r=2, alpha=4), None, False, False, ())
    ah.save("lo", tmp_path / "lo", name="demo-lo", version="1.2.0")
    ah.load(tmp_path / "lo", name="again", activate=False)
    assert ah.adapter("again").published == Published("demo-lo", "1.2.0")
    assert ah.adapter("again").config == view.config and ah.adapter("again").method == "lora"
    assert list(ah.attached) == ["lo", "again"]

    ah.merge("lo")
    assert ah.adapter("lo").merged and ah.attached["lo"].merged
    assert not view.merged  # a snapshot: it does not follow later changes
    ah.unmerge("lo")
    assert not ah.adapter("lo").merged

    ah.remove("again")
    assert list(ah.attached) == ["lo"]
    with pytest.raises(AdapterStateError, match="no adapter named 'again'"):
        ah.adapter("again")


def test_view_of_a_fusion_layer_names_its_members():
    ah = AdapterModel(tiny_model("bert"))
    for name in ("a", "b"):
        ah.add(name, "bottleneck", variant="pfeiffer", activate=False)
    ah.add_fusion("f", ["a", "b"], activate=False)
    f = ah.adapter("f")
    assert f.method == "fusion" and f.depends_on == ("a", "b")
    assert isinstance(f.config, FusionConfig) and f.config.members == ("a", "b")
    assert isinstance(ah.adapter("a").config, BottleneckConfig) and ah.adapter("a").depends_on == ()
    with pytest.raises(AdapterStateError, match="remove them first"):
        ah.remove("a")
    ah.remove("f")
    ah.remove("a")
    assert list(ah.attached) == ["b"]


def test_view_reports_a_head_it_brought(tmp_path):
    from transformers import AutoModelForSequenceClassification

    ah = AdapterModel(tiny_model("bert", cls=AutoModelForSequenceClassification, num_labels=2))
    ah.add("cls", "bottleneck", variant="pfeiffer")
    ah.save("cls", tmp_path / "cls", name="demo-cls")
    other = AdapterModel(tiny_model("bert", cls=AutoModelForSequenceClassification, num_labels=2))
    other.add("plain", "lora", r=2, alpha=2, activate=False)
    other.load(tmp_path / "cls", force=True)
    assert other.adapter("demo-cls").has_head and not other.adapter("plain").has_head


def test_view_cannot_be_changed():
    ah = AdapterModel(tiny_model("bert"))
    ah.add("lo", "lora", r=2, alpha=4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ah.adapter("lo").merged = True  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        ah.adapter("lo").config.r = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        ah.attached["x"] = ah.adapter("lo")  # type: ignore[index]
    assert list(ah.attached) == ["lo"] and not ah.merged


# --- nobody reaches into the handle ------------------------------------------------------------------
def _handle_privates() -> set[str]:
    ah = AdapterModel(tiny_model("bert"))
    names = set(vars(ah)) | {n for c in type(ah).__mro__ for n in vars(c)}
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_no_module_outside_the_handle_touches_its_private_members():
    privates = _handle_privates()
    assert {"_entries", "_composition", "_head_owner"} <= privates  # the scan looks for the real names
    handle = ROOT / "adapterhub" / "runtime" / "handle.py"
    found = []
    for folder in ("adapterhub", "tests", "benchmarks", "examples"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == handle:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Attribute) or node.attr not in privates:
                    continue
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    continue  # a class of that module using its own member of the same name
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
    assert not found, "AdapterModel privates used outside runtime/handle.py (use ah.adapter/ah.attached/ah.entry):\n" \
        + "\n".join(found)
