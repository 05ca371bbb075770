"""One layer numbering for encoder-decoder models: global indices (decoder after encoder) in the runtime,
the manifest check, the ``adapters``-library reader and the archived-index importer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support.manifest_samples import manifest
from support.runtime_helpers import hidden, inputs_for, tiny_config, tiny_model

from adapterhub.errors import IncompatibleBaseError, SchemaError
from adapterhub.manifest import load_manifest, manifest_problems
from adapterhub.registry import open_index, resolve
from adapterhub.registry.archived import import_adapterhub_index, legacy_name
from adapterhub.runtime import wrap


def _randomize(h, seed: int = 3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in h.container.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


@pytest.mark.parametrize(("method", "config"), [("lora", {"r": 2, "alpha": 4}),
                                                 ("bottleneck", {"variant": "pfeiffer"})])
def test_t5_decoder_leave_out_saves_and_reloads(tmp_path, method, config):
    model = tiny_model("t5")  # 2 encoder layers (0, 1) + 2 decoder layers (2, 3)
    inputs = inputs_for("t5")
    h = wrap(model)
    h.add("a", method, leave_out=[0, 3], **config)
    _randomize(h)
    want = hidden(model, inputs)
    h.save("a", tmp_path / "a")
    m = load_manifest(tmp_path / "a")
    assert (m.base_model.num_hidden_layers, m.base_model.num_decoder_layers) == (2, 2)
    assert m.adapter.config.leave_out == (0, 3)
    again = tiny_model("t5")
    name = wrap(again).load(tmp_path / "a")
    assert torch.allclose(hidden(again, inputs), want, atol=1e-6 * want.abs().max().item())
    keys = {k.split(".")[1] for k in wrap(again).package(name).tensors}
    assert keys == {"1", "2"}  # layers 0 and 3 left out: encoder layer 1 and decoder layer 0 (= global 2)


def test_a_layer_index_the_model_lacks_is_refused_when_added():
    h = wrap(tiny_model("t5"))
    with pytest.raises(SchemaError, match=r"layer 4 does not exist \(base has 2 encoder \+ 2 decoder layers, "
                                          r"numbered 0-3\)"):
        h.add("a", "lora", r=2, alpha=4, leave_out=[4])
    with pytest.raises(SchemaError, match=r"layer 2 does not exist \(base has 2 layers\)"):
        wrap(tiny_model("bert")).add("b", "bottleneck", variant="houlsby", reduction_factor={"2": 4, "default": 8})
    assert h.adapters == ()


def test_manifest_checks_indices_against_encoder_plus_decoder_layers():
    doc = manifest()
    doc["base_model"].update(model_type="bart", num_hidden_layers=12, num_decoder_layers=12)
    doc["adapter"] = {"method": "bottleneck", "config": {"variant": "houlsby", "leave_out": [0, 12, 23]}}
    assert manifest_problems(doc) == []
    doc["adapter"]["config"]["leave_out"] = [24]
    (problem,) = manifest_problems(doc)
    assert problem.pointer == "/adapter/config/leave_out/0" and "12 encoder + 12 decoder" in problem.message


def test_a_t5_adapter_for_another_decoder_depth_is_refused(tmp_path):
    h = wrap(tiny_model("t5"))
    h.add("a", "lora", r=2, alpha=4)
    h.save("a", tmp_path / "a")
    deeper = wrap(tiny_model("t5", num_decoder_layers=3))
    with pytest.raises(IncompatibleBaseError, match="num_decoder_layers=2.*num_decoder_layers=3"):
        deeper.load(tmp_path / "a", force=True)


def test_adapters_library_t5_decoder_leave_out_matches_the_library(tmp_path):
    adapters = pytest.importorskip("adapters", reason="the adapters library is not installed in this environment")
    inputs = inputs_for("t5")
    ref = adapters.AutoAdapterModel.from_config(tiny_config("t5"))
    base = tiny_model("t5")
    ref.base_model.load_state_dict(base.state_dict(), strict=False)
    ref.add_adapter("a", config=adapters.SeqBnConfig(reduction_factor=4, leave_out=[1, 2]))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for n, p in ref.named_parameters():
            if ".a." in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    ref.set_active_adapters("a")
    ref.eval()
    want = hidden(ref.base_model, inputs)
    ref.save_adapter(str(tmp_path / "lib"), "a", use_safetensors=True)
    h = wrap(base)
    h.load(tmp_path / "lib")
    got = hidden(base, inputs)
    assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())
    h.save("a", tmp_path / "ours")  # failed before: "layer 2 does not exist (base has 2 layers)"
    assert load_manifest(tmp_path / "ours").adapter.config.leave_out == (1, 2)


# The archived AdapterHub index entry for BART-large with a custom architecture that leaves out encoder
# layers 0-3 and 11 and decoder layers 0-2 (global 12-14). Copied from the Hub repository's history
# (adapters/lohfink-rossi/… and architectures/lohfink-rossi-leaveout.yaml; comments trimmed).
LOHFINK_ENTRY = """\
type: text_task
task: qa
subtask: squad2
model_type: bart
model_name: facebook/bart-large
author: Till Lohfink & Maria Rossi (Contributed equally.)
config:
  using: lohfink-rossi-leaveout
  non_linearity: relu
  reduction_factor: 16
default_version: '1'
files:
- version: '1'
  url: http://adapter.till-lohfink.de/facebook-bart-large_qa_squad2_lohfink-rossi-leaveout.zip
  sha1: 1a87a0457b21805e4a24b3349c16aa2f81a1b8ea
  sha256: 8d0df64cf9ddf8afdbd1849641876ee39d487d05e7465bfd017bc51751e34105
  score: 84.93
description: 'Adapter for bart-large using a custom architecture (Lohfink-Rossi-Leaveout) trained on the SQuAD 2.0 dataset for 15 epochs with a Cosine with Restarts learning rate scheduler ans learning rate 0.001.'
email: tlohfink3@gatech.edu;mrossi7@gatech.edu
model_class: BartForQuestionAnswering
prediction_head: true
"""
LOHFINK_ARCHITECTURE = """\
name: lohfink-rossi-leaveout
displayname: Lohfink-Rossi-Leaveout Architecture
description: Specialized adapter architecture for question-answering with bart-large.
config:
  {
    "ln_after": false,
    "ln_before": false,
    "mh_adapter": true,
    "output_adapter": true,
    "adapter_residual_before_ln": true,
    "non_linearity": "relu",
    "original_ln_after": true,
    "original_ln_before": true,
    "reduction_factor": 16,
    "residual_before_ln": true,
    "leave_out": [0,1,2,3,11,12,13,14],
  }
"""


def _archive(tmp_path: Path, entry: str, architecture: str | None) -> Path:
    src = tmp_path / "archive"
    (src / "adapters" / "lohfink-rossi").mkdir(parents=True)
    (src / "adapters" / "lohfink-rossi" / "facebook-bart-large_qa_squad2_lohfink-rossi-leaveout.yaml").write_text(entry)
    if architecture is not None:
        (src / "architectures").mkdir()
        (src / "architectures" / "lohfink-rossi-leaveout.yaml").write_text(architecture)
    return src


def test_archived_bart_large_entry_with_decoder_leave_out_converts(tmp_path):
    report = import_adapterhub_index(_archive(tmp_path, LOHFINK_ENTRY, LOHFINK_ARCHITECTURE), tmp_path / "index")
    assert report.failures == [] and report.versions == 1
    name = legacy_name("lohfink-rossi", "facebook-bart-large_qa_squad2_lohfink-rossi-leaveout")
    m = resolve(open_index(tmp_path / "index"), name).manifest
    b = m.base_model
    assert (b.id, b.num_hidden_layers, b.num_decoder_layers) == ("facebook/bart-large", 12, 12)
    c = m.adapter.config
    assert c.leave_out == (0, 1, 2, 3, 11, 12, 13, 14)
    assert (c.variant, c.locations, c.original_ln_before, c.non_linearity, c.reduction_factor) == (
        "houlsby", ("attention", "ffn"), True, "relu", 16)
    legacy = m.extensions["x-adapterhub-v1"]
    assert legacy["architecture_config"]["adapter_residual_before_ln"] is True
    assert any("adapter_residual_before_ln" in n for n in report.notes)


def test_an_entry_naming_an_unknown_architecture_fails_with_the_reason(tmp_path):
    report = import_adapterhub_index(_archive(tmp_path, LOHFINK_ENTRY, None), tmp_path / "index")
    assert report.versions == 0
    (failure,) = report.failures
    assert "lohfink-rossi-leaveout" in failure and "architectures/lohfink-rossi-leaveout.yaml" in failure
