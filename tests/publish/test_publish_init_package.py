"""``adapterhub init`` and ``adapterhub package`` on real adapters saved from a tiny BERT."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from support.paths import REFERENCE
from support.publish_support import (
    INIT_FLAGS,
    assert_same_logits,
    load_logits,
    make_model,
    ok,
    run,
    save_adapter,
)
from support.tolerances import assert_close, model_terms

from adapterhub.errors import (
    IncompatibleBaseError,
    IntegrityError,
    NotFoundError,
    PublishError,
    UnsafeFileError,
)
from adapterhub.manifest import load_manifest
from adapterhub.manifest.validate import validate_path
from adapterhub.runtime import wrap


def _manifest(d: Path) -> dict:
    return json.loads((d / "adapterhub.json").read_text())


def test_init_fills_derived_facts_and_the_flags(tmp_path: Path) -> None:
    saved = save_adapter(tmp_path)
    result = ok("init", saved.adapter_dir, "--base", saved.base_dir, *INIT_FLAGS)
    assert "tiny-sst 1.0.0" in result.output
    m = load_manifest(saved.adapter_dir)
    assert (m.name, m.version, m.license, m.authors) == ("tiny-sst", "1.0.0", "apache-2.0", ("Ada",))
    assert (m.task.type, m.task.name, m.task.dataset, m.task.language) == ("text-classification", "sst2", "glue/sst2", "en")
    assert m.base_model.id == "org/tiny-bert"
    assert m.base_model.fingerprint == wrap(make_model()).fingerprint
    assert (m.base_model.model_type, m.base_model.hidden_size, m.base_model.num_hidden_layers) == ("bert", 32, 2)
    assert m.adapter.method == "bottleneck" and m.head is not None and m.head.num_labels == 2
    assert {(f.path, f.role) for f in m.files} == {("adapter.safetensors", "weights"), ("head.safetensors", "head")}
    assert [(x.name, x.value) for x in m.metrics] == [("accuracy", 0.875), ("f1", 0.86)]
    assert validate_path(saved.adapter_dir).ok


def test_init_asks_only_for_what_cannot_be_derived(tmp_path: Path) -> None:
    saved = save_adapter(tmp_path)
    answers = ["my-sst", "org/tiny-bert", "2.0.0", "mit", "An adapter", "Ada, Bob", "", "sst2", "glue/sst2", ""]
    result = ok("init", saved.adapter_dir, input="\n".join(answers) + "\n")
    for question in ("Adapter name", "Base model id", "Version", "License", "Description", "Authors", "Task type"):
        assert question in result.output
    assert "method" not in result.output.lower()  # derived, never asked
    m = load_manifest(saved.adapter_dir)
    assert (m.name, m.version, m.license, m.description, m.authors) == ("my-sst", "2.0.0", "mit", "An adapter", ("Ada", "Bob"))
    assert m.task.type == "text-classification" and m.task.dataset == "glue/sst2" and m.task.language is None
    # The fingerprint ah.save recorded stays (no --base needed for an adapterhub directory).
    assert m.base_model.fingerprint == wrap(make_model()).fingerprint


def test_init_yes_takes_defaults_and_bad_answers_are_reported_with_pointers(tmp_path: Path) -> None:
    saved = save_adapter(tmp_path)
    before = (saved.adapter_dir / "adapterhub.json").read_bytes()
    bad = run("init", saved.adapter_dir, "--yes", "--version", "not a version", "--name", "Bad Name!")
    assert bad.exit_code != 0 and "/version" in str(bad.exception) and "/name" in str(bad.exception)
    assert (saved.adapter_dir / "adapterhub.json").read_bytes() == before
    ok("init", saved.adapter_dir, "--yes")
    m = load_manifest(saved.adapter_dir)
    assert m.name == "sst" and m.version == "0.1.0" and m.license == "NOASSERTION"


def test_init_refuses_a_base_with_other_weights(tmp_path: Path) -> None:
    saved = save_adapter(tmp_path)
    other = tmp_path / "other-base"
    make_model(seed=1).save_pretrained(other)
    before = (saved.adapter_dir / "adapterhub.json").read_bytes()
    result = run("init", saved.adapter_dir, "--base", other, "--yes")
    assert isinstance(result.exception, IncompatibleBaseError) and "fingerprint" in str(result.exception)
    assert (saved.adapter_dir / "adapterhub.json").read_bytes() == before


def _peft_dir(tmp_path: Path) -> tuple[Path, Path, torch.Tensor]:
    from adapterhub.runtime.formats.peft import export_peft

    saved = save_adapter(tmp_path, "lora", r=4, alpha=8)
    model = make_model()
    ah = wrap(model)
    ah.load(saved.adapter_dir)
    peft_dir = tmp_path / "peft-lora"
    export_peft(ah, "sst", peft_dir)
    return saved.base_dir, peft_dir, saved.expected


def test_init_converts_a_peft_directory_with_the_base(tmp_path: Path) -> None:
    base_dir, peft_dir, expected = _peft_dir(tmp_path)
    result = ok("init", peft_dir, "--base", base_dir, *INIT_FLAGS)
    out = tmp_path / "peft-lora-adapterhub"
    assert "converted from peft" in result.output
    m = load_manifest(out)
    assert m.adapter.method == "lora" and m.base_model.fingerprint == wrap(make_model()).fingerprint
    assert m.name == "tiny-sst" and m.metrics and m.head is not None
    assert sorted(p.name for p in out.iterdir()) == ["adapter.safetensors", "adapterhub.json", "head.safetensors"]
    assert_same_logits(load_logits(base_dir, out), expected)


def test_init_with_only_the_base_config_leaves_the_fingerprint_out_and_says_so(tmp_path: Path) -> None:
    base_dir, peft_dir, expected = _peft_dir(tmp_path)
    out = tmp_path / "converted"
    result = ok("init", peft_dir, "--base", base_dir / "config.json", "--out", out, *INIT_FLAGS)
    assert "fingerprint left out" in result.output
    m = load_manifest(out)
    assert m.base_model.fingerprint is None and m.base_model.model_type == "bert"
    assert_same_logits(load_logits(base_dir, out), expected)


def test_init_of_a_foreign_directory_without_a_base_explains_what_is_needed(tmp_path: Path) -> None:
    _, peft_dir, _ = _peft_dir(tmp_path)
    result = run("init", peft_dir, "--yes")
    assert isinstance(result.exception, NotFoundError) and "--base" in str(result.exception)
    assert not (tmp_path / "peft-lora-adapterhub").exists()


def _with_pickle_weights(d: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    tensors = load_file(d / "adapter.safetensors")
    (d / "adapter.safetensors").unlink()
    torch.save(tensors, d / "pytorch_adapter.bin")
    return tensors


def test_package_converts_pickle_weights_and_writes_the_card(tmp_path: Path) -> None:
    saved = save_adapter(tmp_path)
    tensors = _with_pickle_weights(saved.adapter_dir)
    ok("init", saved.adapter_dir, "--base", saved.base_dir, *INIT_FLAGS)
    assert any(f["path"] == "pytorch_adapter.bin" for f in _manifest(saved.adapter_dir)["files"])
    result = ok("package", saved.adapter_dir)
    assert "converted pytorch_adapter.bin -> adapter.safetensors" in result.output
    d = saved.adapter_dir
    assert not (d / "pytorch_adapter.bin").exists()
    files = {f["path"]: f["role"] for f in _manifest(d)["files"]}
    assert files == {"adapter.safetensors": "weights", "head.safetensors": "head", "README.md": "card"}
    from safetensors.torch import load_file

    again = load_file(d / "adapter.safetensors")
    assert again.keys() == tensors.keys() and all(torch.equal(again[k], tensors[k]) for k in tensors)  # bytes
    assert validate_path(d).ok
    assert "library_name: adapterhub" in (d / "README.md").read_text()
    assert_same_logits(load_logits(saved.base_dir, d), saved.expected)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned-by-pickle",))


def test_package_refuses_a_malicious_pickle_and_leaves_the_directory_as_it_was(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    saved = save_adapter(tmp_path)
    d = saved.adapter_dir
    _with_pickle_weights(d)
    (d / "pytorch_adapter.bin").write_bytes(pickle.dumps({"w": _Evil()}))
    ok("init", d, "--yes")
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    result = run("package", d)
    assert isinstance(result.exception, UnsafeFileError)
    assert not (tmp_path / "pwned-by-pickle").exists()
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before


def test_package_refuses_a_pickle_that_changed_since_init(tmp_path: Path) -> None:
    saved = save_adapter(tmp_path)
    tensors = _with_pickle_weights(saved.adapter_dir)
    ok("init", saved.adapter_dir, "--yes")
    torch.save({k: v + 1 for k, v in tensors.items()}, saved.adapter_dir / "pytorch_adapter.bin")
    result = run("package", saved.adapter_dir)
    assert isinstance(result.exception, IntegrityError) and "refusing to unpickle" in str(result.exception)
    assert not (saved.adapter_dir / "adapter.safetensors").exists()


def test_package_rehashes_and_refuses_unlisted_files(tmp_path: Path) -> None:
    saved = save_adapter(tmp_path)
    ok("init", saved.adapter_dir, "--yes")
    (saved.adapter_dir / "notes.txt").write_text("scratch")
    result = run("package", saved.adapter_dir)
    assert isinstance(result.exception, PublishError) and "notes.txt" in str(result.exception)
    (saved.adapter_dir / "notes.txt").unlink()
    # Retrained after init: package records the new bytes.
    from safetensors.torch import load_file, save_file

    tensors = load_file(saved.adapter_dir / "adapter.safetensors")
    save_file({k: v * 2 for k, v in tensors.items()}, saved.adapter_dir / "adapter.safetensors")
    assert not validate_path(saved.adapter_dir).ok
    ok("package", saved.adapter_dir)
    assert validate_path(saved.adapter_dir).ok


@pytest.mark.parametrize("flag", ["--json"])
def test_init_and_package_json_output(tmp_path: Path, flag: str) -> None:
    saved = save_adapter(tmp_path)
    data = json.loads(ok("init", saved.adapter_dir, *INIT_FLAGS, flag).output)
    assert data["manifest"]["name"] == "tiny-sst" and data["converted_from"] is None
    data = json.loads(ok("package", saved.adapter_dir, flag).output)
    assert {f["path"] for f in data["manifest"]["files"]} >= {"README.md", "adapter.safetensors"}


def test_an_adapters_library_pickle_save_goes_all_the_way_to_a_registry(tmp_path: Path, monkeypatch) -> None:
    """The `adapters` library's own .bin save (committed fixture) -> init -> package -> publish --to -> pull."""
    import shutil

    from safetensors.torch import load_file
    from transformers import AutoModel

    case = REFERENCE / "adapters" / "bert" / "double_seq_bn"
    meta = json.loads((case / "case.json").read_text())
    src = tmp_path / "houlsby-bin"
    shutil.copytree(case / meta["files"]["bin"]["ref"], src)
    assert (src / "pytorch_adapter.bin").is_file()
    base = REFERENCE / meta["base"]
    result = ok("init", src, "--base", base, *INIT_FLAGS)
    assert "converted from adapters-library" in result.output
    out = tmp_path / "houlsby-bin-adapterhub"
    m = load_manifest(out)
    assert m.adapter.method == "bottleneck" and m.adapter.config.variant == "houlsby"
    assert all(f.path.endswith(".safetensors") for f in m.files)
    ok("package", out)
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "cache"))
    ok("publish", out, "--to", tmp_path / "registry")
    pulled = Path(ok("pull", "tiny-sst", "--index", tmp_path / "registry", "-q").output.strip())
    model = AutoModel.from_pretrained(base, attn_implementation="eager").eval()
    wrap(model).load(pulled)
    io = load_file(str(case / "io.safetensors"))
    with torch.no_grad():
        got = model(**{k: io[k] for k in meta["inputs"]}).last_hidden_state
    assert_close(got, io["expected"], terms=model_terms(model), mask=io["attention_mask"])


def test_init_asks_again_only_for_a_bad_answer(tmp_path: Path) -> None:
    """A bad answer is reported and asked again on its own; every other answer is kept."""
    saved = save_adapter(tmp_path)
    answers = ["Bad Name!", "my-sst", "org/tiny-bert", "not a version", "2.0.0", "mit", "An adapter", "Ada, Bob",
               "", "sst2", "glue/sst2", ""]
    result = ok("init", saved.adapter_dir, input="\n".join(answers) + "\n")
    assert result.output.count("Adapter name") == 2 and result.output.count("Version (PEP 440)") == 2
    assert result.output.count("License") == 1 and result.output.count("Description") == 1
    assert "Error: 'Bad Name!' does not match" in result.output and "not a PEP 440 version" in result.output
    m = load_manifest(saved.adapter_dir)
    assert (m.name, m.version, m.license, m.description, m.authors) == ("my-sst", "2.0.0", "mit", "An adapter",
                                                                         ("Ada", "Bob"))
    assert m.task.name == "sst2" and m.task.dataset == "glue/sst2"
