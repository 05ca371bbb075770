"""The architecture table is the one home of family facts (``adapterhub/families.py``).

Code elsewhere reads a fact from the bound ``Family`` entry; it never branches on a family's name or a
model type, so adding a family is adding one entry. A family's name may still appear in messages.
"""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest
from support.paths import REFERENCE

import adapterhub
from adapterhub import families
from adapterhub.runtime import arch

PACKAGE = Path(adapterhub.__file__).parent
TABLE = PACKAGE / "families.py"
FAMILY_NAMES = {"fam", "family"}


def _in_message(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.JoinedStr):
            return True
    return False


def _is_model_type(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "model_type") or (
        isinstance(node, ast.Attribute) and node.attr == "model_type")


def family_tests(source: str) -> list[tuple[int, str]]:
    """(line, why) of every use of a family's name outside a message and every comparison of a model type."""
    tree = ast.parse(source)
    parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "name":
            owner = node.value
            is_family = (isinstance(owner, ast.Attribute) and owner.attr == "family") or (
                isinstance(owner, ast.Name) and owner.id in FAMILY_NAMES)
            if is_family and not _in_message(node, parents):
                out.append((node.lineno, "uses a family's name"))
        elif isinstance(node, ast.Compare) and any(_is_model_type(n) for n in (node.left, *node.comparators)):
            out.append((node.lineno, "compares a model type"))
    return sorted(out)


def test_the_detector_finds_name_tests_and_allows_messages():
    code = ('causal = binding.family.name == "llama"\n'
            'sites = SITES.get(binding.family.name, DEFAULT)\n'
            'fam = self.binding.family.name\n'
            'if model_type in ("t5",): pass\n'
            'raise Error(f"not in {binding.family.name} models")\n')
    assert [line for line, _ in family_tests(code)] == [1, 2, 3, 4]


def test_no_module_outside_the_table_tests_a_family():
    found = [f"{path.relative_to(PACKAGE.parent)}:{line}: {why}"
             for path in sorted(PACKAGE.rglob("*.py")) if path != TABLE
             for line, why in family_tests(path.read_text(encoding="utf-8"))]
    assert not found, "family facts belong in families.py's Family entries:\n" + "\n".join(found)


def test_library_lora_locations_come_from_the_family_entry(tmp_path, monkeypatch):
    """Llama: the ``adapters`` library wraps ``down_proj`` as its "intermediate" LoRA. With only that location
    saved and every table entry renamed, the adapter still lands on ``ffn_out`` (the table's fact, not a name's)."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel

    from adapterhub.runtime.formats.adapters_lib import read_adapters_dir

    case = REFERENCE / "adapters" / "llama" / "lora_r4_a16_qkv_ffn"
    if not case.is_dir():
        pytest.skip("no reference fixtures under tests/fixtures/reference")
    src = case / "safetensors" / "ref"
    meta = json.loads((src / "adapter_config.json").read_text())
    meta["config"]["output_lora"] = False
    tensors = {k: v for k, v in load_file(str(src / "adapter.safetensors")).items() if ".up_proj." not in k}
    (tmp_path / "adapter_config.json").write_text(json.dumps(meta))
    save_file(tensors, str(tmp_path / "adapter.safetensors"))
    monkeypatch.setattr(families, "FAMILIES", tuple(dataclasses.replace(f, name=f"{f.name}-renamed")
                                                     for f in families.FAMILIES))
    model = AutoModel.from_pretrained(str(REFERENCE / "bases" / "llama"))
    pkg = read_adapters_dir(tmp_path, meta, arch.bind(model))
    assert pkg.config["target_modules"] == ["q", "k", "v", "ffn_out"]
    assert {k.split(".")[2] for k in pkg.tensors} == {"q", "k", "v", "ffn_out"}


def test_prefix_stack_rule_comes_from_the_family_entry(monkeypatch):
    """T5's per-stack relative position bias is ``shared_position_bias``: a renamed entry keeps the rule that
    prefix tuning covers all or none of a stack."""
    from support.runtime_helpers import tiny_model

    from adapterhub.errors import SchemaError
    from adapterhub.runtime import wrap

    monkeypatch.setattr(families, "FAMILIES", tuple(dataclasses.replace(f, name=f"{f.name}-renamed")
                                                     for f in families.FAMILIES))
    h = wrap(tiny_model("t5"))
    with pytest.raises(SchemaError, match="t5-renamed shares one relative position bias per stack"):
        h.add("p", "prefix_tuning", prefix_length=2, bottleneck_size=8, leave_out=[0])
    assert h.adapters == ()
