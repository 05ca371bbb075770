"""Every writer of an adapter directory stages its files beside the target and puts them in place at the end:
a failure (bad field, refused input, a crash mid-write) leaves the target absent or exactly as it was."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from support.runtime_helpers import tiny_config, tiny_model

from adapterhub.errors import SchemaError, UnsafeFileError
from adapterhub.manifest.validate import validate_path
from adapterhub.runtime import wrap


def _snapshot(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _nothing_beside(parent: Path) -> None:
    assert not [p.name for p in parent.iterdir() if ".stage-" in p.name]


class Crash(RuntimeError):
    """Stands for anything that stops a write half way (disk full, interrupt, a bug)."""


def _crash(*args, **kwargs):
    raise Crash("stopped mid-write")


def _lora(seed: int = 0):
    h = wrap(tiny_model("bert"))
    h.add("a", "lora", r=2, alpha=4, seed=seed, init_weights="bert")
    return h


def test_save_with_a_bad_field_writes_nothing(tmp_path):
    out = tmp_path / "new" / "a"
    with pytest.raises(SchemaError, match="/version"):
        _lora().save("a", out, version="not a version")
    assert not (tmp_path / "new").exists()


def test_a_crash_mid_save_leaves_no_directory_and_the_previous_save_intact(tmp_path, monkeypatch):
    import adapterhub.runtime.formats.adapterhub_dir as package

    fresh = tmp_path / "deep" / "er" / "a"
    existing = tmp_path / "b"
    _lora(seed=0).save("a", existing)
    before = _snapshot(existing)
    monkeypatch.setattr(package, "write_manifest", _crash)  # after the weights are written
    h = _lora(seed=1)
    with pytest.raises(Crash):
        h.save("a", fresh)
    assert not (tmp_path / "deep").exists()
    with pytest.raises(Crash):
        h.save("a", existing)
    assert _snapshot(existing) == before
    _nothing_beside(tmp_path)


def test_saving_over_an_adapter_with_a_head_removes_the_stale_head(tmp_path):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "a"
    torch.manual_seed(0)
    task = wrap(AutoModelForSequenceClassification.from_config(tiny_config("bert", num_labels=2)).eval())
    task.add("a", "lora", r=2, alpha=4)
    task.save("a", out)
    (out / "README.md").write_text("my notes")  # not ours: kept
    assert (out / "head.safetensors").is_file()
    _lora().save("a", out)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "adapter.safetensors", "adapterhub.json"]
    assert [p.split(":")[0] for p in validate_path(out).problems] == ["README.md"]  # only the file we left alone


def test_export_peft_crash_leaves_nothing(tmp_path, monkeypatch):
    import adapterhub.runtime.formats.peft as peft_io

    monkeypatch.setattr(peft_io, "write_safetensors", _crash)
    with pytest.raises(Crash):
        peft_io.export_peft(_lora(), "a", tmp_path / "peft")
    assert not (tmp_path / "peft").exists()
    _nothing_beside(tmp_path)


def test_save_composition_crash_leaves_nothing(tmp_path, monkeypatch):
    import adapterhub.compose.published as published
    from adapterhub.compose import Stack
    from adapterhub.manifest import io as manifest_io

    h = _lora()
    h.add("b", "lora", r=2, alpha=4, activate=False)
    monkeypatch.setattr(manifest_io, "atomic_write_text", _crash)
    with pytest.raises(Crash):
        published.save_composition(h, Stack("a", "b"), tmp_path / "comp", name="comp")
    assert not (tmp_path / "comp").exists()


def test_save_soup_with_a_bad_metric_writes_nothing(tmp_path):
    from adapterhub.compose.average import Average, save_soup

    h = _lora()
    h.add("b", "lora", r=2, alpha=4, seed=1, activate=False)
    soup = Average(h.package("a"), h.package("b"))
    with pytest.raises(SchemaError, match="/metrics"):
        save_soup(soup, tmp_path / "soup", metrics=[{"dataset": "x", "split": "dev", "name": "acc"}])
    assert not (tmp_path / "soup").exists()


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned-by-pickle",))


def test_package_refusing_the_second_pickle_leaves_the_directory_as_it_was(tmp_path, monkeypatch):
    from safetensors.torch import load_file
    from support.publish_support import ok, run, save_adapter

    monkeypatch.chdir(tmp_path)
    d = save_adapter(tmp_path).adapter_dir
    for stem, name in (("adapter", "pytorch_adapter.bin"), ("head", "pytorch_model_head.bin")):
        tensors = load_file(d / f"{stem}.safetensors")
        (d / f"{stem}.safetensors").unlink()
        torch.save(tensors, d / name)
    (d / "pytorch_model_head.bin").write_bytes(pickle.dumps({"w": _Evil()}))
    ok("init", d, "--yes")
    before = _snapshot(d)
    result = run("package", d)
    assert isinstance(result.exception, UnsafeFileError)
    assert _snapshot(d) == before  # adapter.safetensors (converted first) is not left behind
    assert not (tmp_path / "pwned-by-pickle").exists()
    _nothing_beside(tmp_path)
