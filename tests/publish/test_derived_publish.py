"""A pulled Hub adapter (derived manifest over the repo's own files) goes through ``init`` and ``publish`` unchanged.

``adapterhub init`` on the directory completes nothing (everything was derived) and rewrites the same manifest;
publishing it to a local index keeps every field (the index only adds its own mirror as a source); pulling it
back from that index gives a view the runtime attaches with the same outputs.
"""

from __future__ import annotations

import pytest
import torch
from support.derive_support import base_config_of, derive_dir, make_view
from support.runtime_helpers import hidden, inputs_for, tiny_model

from adapterhub.manifest import load_manifest, manifest_to_dict
from adapterhub.publish import publish_local
from adapterhub.publish.scaffold import init_adapter
from adapterhub.runtime import wrap
from adapterhub.store import pull


@pytest.fixture
def pulled_view(tmp_path):
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    ref = peft.get_peft_model(tiny_model("llama"), peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for n, p in ref.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.3)
    ref.eval().save_pretrained(tmp_path / "repo")
    manifest = derive_dir(tmp_path / "repo", base_config_of(tiny_model("llama")), repo_id="someone/llama-lora",
                          card_data={"license": "mit"})
    return make_view(tmp_path / "repo", tmp_path / "view", manifest)


def test_init_then_publish_keeps_the_derived_manifest_and_it_pulls_back(pulled_view, tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "cache"))
    before = manifest_to_dict(load_manifest(pulled_view))
    result = init_adapter(pulled_view)
    assert manifest_to_dict(result.manifest) == before
    published = manifest_to_dict(publish_local(pulled_view, tmp_path / "index").manifest)
    assert {k: v for k, v in published.items() if k != "sources"} == {k: v for k, v in before.items() if k != "sources"}
    assert all(src in published["sources"] for src in before["sources"])  # the Hub source is kept
    again = pull(f"{before['name']}=={before['version']}", index=tmp_path / "index", cache_dir=tmp_path / "cache")
    inputs = inputs_for("llama")
    direct, via_index = tiny_model("llama"), tiny_model("llama")
    wrap(direct).load(pulled_view)
    wrap(via_index).load(again.path)
    assert torch.equal(hidden(direct, inputs), hidden(via_index, inputs))  # the same bytes, the same code path


def test_init_converts_a_gpt2_peft_lora_whose_slots_share_one_lora_a(tmp_path):
    """Was a RuntimeError from safetensors ("Some tensors share memory"): PEFT's one ``lora_A`` of GPT-2's fused
    ``c_attn`` became the q, k and v slots' tensors without a copy, and the converted directory could not be written."""
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    from support.runtime_helpers import tiny_config

    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True)
    peft.get_peft_model(tiny_model("gpt2"), cfg).save_pretrained(tmp_path / "peft")
    tiny_config("gpt2").save_pretrained(tmp_path / "base")
    result = init_adapter(tmp_path / "peft", out=tmp_path / "ours", base=tmp_path / "base")
    assert result.manifest.adapter.config["target_modules"] == ("qkv",)  # PEFT adapts c_attn whole
    model = tiny_model("gpt2")
    wrap(model).load(tmp_path / "ours")
