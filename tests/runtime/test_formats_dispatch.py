"""One dispatcher decides a directory's format by its marker file (``adapterhub.runtime.formats``)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from support.runtime_helpers import tiny_model

from adapterhub.errors import NotFoundError
from adapterhub.runtime import wrap
from adapterhub.runtime.formats import composition_manifest, detect_format, export_peft, read_adapter_dir


def _write(path, name, doc):
    path.mkdir(parents=True, exist_ok=True)
    (path / name).write_text(json.dumps(doc))
    return path


def test_each_marker_file_names_its_format(tmp_path):
    assert detect_format(_write(tmp_path / "peft", "adapter_config.json", {"peft_type": "LORA"})) == "peft"
    assert detect_format(_write(tmp_path / "lib", "adapter_config.json", {"config": {}})) == "adapters"
    fusion = _write(tmp_path / "fusion", "adapter_fusion_config.json", {"adapter_names": ["a", "b"]})
    (fusion / "adapter_config.json").write_text("{}")  # the fusion marker wins over a stray adapter config
    assert detect_format(fusion) == "adapters-fusion"


def test_ours_and_a_published_composition_are_told_apart(tmp_path):
    ah = wrap(tiny_model("bert"))
    ah.add("a", "lora", r=2, alpha=4)
    ours = tmp_path / "ours"
    ah.save("a", ours)
    assert detect_format(ours) == "adapterhub" and composition_manifest(ours) is None
    assert detect_format(ours / "adapterhub.json") == "adapterhub"
    from adapterhub.compose import save_composition

    comp = tmp_path / "comp"
    save_composition(ah, "a", comp, name="only-a")
    assert detect_format(comp) == "composition"
    assert composition_manifest(comp).name == "only-a"
    with pytest.raises(NotFoundError, match="composition has no weights"):
        read_adapter_dir(comp)


def test_a_directory_without_a_marker_is_not_an_adapter(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match="not an adapter directory"):
        detect_format(tmp_path / "empty")
    with pytest.raises(NotFoundError, match="not an adapter directory"):
        detect_format(tmp_path / "missing")


def test_every_format_loads_through_the_same_dispatcher(tmp_path):
    """A PEFT export read back by the dispatcher and by ``AdapterModel.load`` gives the same tensors."""
    model = tiny_model("bert")
    ah = wrap(model)
    ah.add("a", "lora", r=2, alpha=4, seed=3)
    export_peft(ah, "a", tmp_path / "peft")
    assert detect_format(tmp_path / "peft") == "peft"
    pkg = read_adapter_dir(tmp_path / "peft", ah.binding)
    original = ah.package("a").tensors
    assert pkg.method == "lora" and set(pkg.tensors) == set(original)
    for k, v in original.items():
        assert torch.equal(pkg.tensors[k], v)  # a format round trip copies bytes; no arithmetic happens


def test_the_old_interop_path_still_works_and_warns():
    import adapterhub.interop as interop

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert interop.export_peft is export_peft
    assert any(issubclass(w.category, DeprecationWarning) and "runtime.formats" in str(w.message) for w in caught)
    with pytest.raises(AttributeError):
        interop.no_such_name  # noqa: B018


def test_detection_reads_only_the_marker_and_the_reader_validates(tmp_path):
    """Telling formats apart must not parse and validate a manifest that its reader parses again."""
    from adapterhub.errors import SchemaError

    bad = _write(tmp_path / "bad", "adapterhub.json", {"adapter": {"method": "lora"}})  # far from schema-valid
    assert detect_format(bad) == "adapterhub"
    with pytest.raises(SchemaError):
        read_adapter_dir(bad)
