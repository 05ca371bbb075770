"""``pull("hf:ORG/REPO")`` of a PEFT repo whose config says ``target_modules="all-linear"``, with the real
huggingface_hub client against our server: the manifest is derived from the repo's config and the base's
``config.json`` (fetched from its repo on the same endpoint), and the pulled view loads with PEFT's outputs."""

from __future__ import annotations

import json

import pytest
import torch
from support.runtime_helpers import inputs_for, tiny_config, tiny_model
from support.store_support import put_repo
from support.tolerances import assert_close, model_terms

from adapterhub.errors import SchemaError
from adapterhub.runtime import wrap
from adapterhub.store import pull

BASE = "org/tiny-llama"


def test_an_all_linear_peft_repo_pulls_and_loads_with_peft_outputs(hub, cache, tmp_path):
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    ref = peft.get_peft_model(tiny_model("llama"), peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for n, p in ref.named_parameters():
            if "lora_" in n:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    ref.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "adapter_config.json").read_text())
    config.update(target_modules="all-linear", base_model_name_or_path=BASE)  # as a config written by hand
    (tmp_path / "saved" / "adapter_config.json").write_text(json.dumps(config))
    put_repo(hub.server, BASE, {"config.json": tiny_model("llama").config.to_json_string().encode()})
    put_repo(hub.server, "org/llama-all-linear", {p.name: p.read_bytes() for p in (tmp_path / "saved").iterdir()})

    pulled = pull("hf:org/llama-all-linear", endpoint=hub.endpoint)
    assert set(pulled.manifest.adapter.config["target_modules"]) == {"q", "k", "v", "o", "ffn_in", "ffn_gate",
                                                                     "ffn_out"}
    model = tiny_model("llama")
    wrap(model).load(pulled.path)
    inputs = inputs_for("llama")
    want = peft.PeftModel.from_pretrained(tiny_model("llama"), tmp_path / "saved").eval()
    with torch.no_grad():
        assert_close(model(**inputs).last_hidden_state, want(**inputs).last_hidden_state, terms=model_terms(model),
                     mask=inputs["attention_mask"].bool())


def _put_bert_adapter(hub, tmp_path, name: str, source) -> None:
    """A PEFT LoRA on ``["query", "value", "dense"]`` saved from ``source`` into the repo ``org/<name>``."""
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    ref = peft.get_peft_model(source, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value", "dense"]))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for n, p in ref.named_parameters():
            if "lora_" in n:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    ref.save_pretrained(tmp_path / name)
    config = json.loads((tmp_path / name / "adapter_config.json").read_text())
    (tmp_path / name / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": BERT}))
    put_repo(hub.server, BERT, {"config.json": tiny_model("bert").config.to_json_string().encode()})
    put_repo(hub.server, f"org/{name}", {p.name: p.read_bytes() for p in (tmp_path / name).iterdir()})


BERT = "org/tiny-bert"


def test_a_peft_repo_whose_targets_also_match_the_pooler_pulls_when_its_weights_hold_none(hub, cache, tmp_path):
    """``dense`` also names BERT's pooler; saved from a model without one (sentence encoders), the weights hold no
    pooler tensors: the pull reads the weights' tensor names (fetched once, checked against the Hub's sha256) to
    tell, and the view loads onto a model with a pooler with PEFT's outputs (PEFT leaves the pooler at its identity
    init). Before, the pull refused the config for naming the pooler at all."""
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    from transformers import BertModel

    _put_bert_adapter(hub, tmp_path, "bert-no-pooler", BertModel(tiny_config("bert"), add_pooling_layer=False))
    pulled = pull("hf:org/bert-no-pooler", endpoint=hub.endpoint)
    assert set(pulled.manifest.adapter.config["target_modules"]) == {"q", "v", "o", "ffn_in", "ffn_out"}
    model = tiny_model("bert")
    wrap(model).load(pulled.path)
    want = peft.PeftModel.from_pretrained(tiny_model("bert"), tmp_path / "bert-no-pooler").eval()
    inputs = inputs_for("bert")
    with torch.no_grad():
        got, ref = model(**inputs), want(**inputs)
    assert_close(got.last_hidden_state, ref.last_hidden_state, terms=model_terms(model),
                 mask=inputs["attention_mask"].bool())
    assert_close(got.pooler_output, ref.pooler_output, terms=model_terms(model))


def test_a_peft_repo_with_trained_pooler_tensors_is_refused_by_the_pull_naming_the_pooler(hub, cache, tmp_path):
    _put_bert_adapter(hub, tmp_path, "bert-pooler", tiny_model("bert"))
    with pytest.raises(SchemaError, match="holds trained tensors for pooler.dense"):
        pull("hf:org/bert-pooler", endpoint=hub.endpoint)
