"""docs/runtime.md's families x methods table is generated from the architecture table; user families register."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import pytest
import torch
from support.derive_support import base_config_of, derive_dir
from support.family_cases import case_inputs
from support.paths import DOCS
from support.tolerances import assert_close

from adapterhub.errors import ConflictError, InvalidArgumentError, NotFoundError, UnsupportedArchitectureError
from adapterhub.runtime import Family, Site, Slot, arch, register_family, unregister_family, wrap
from adapterhub.runtime.family_table import BEGIN, render_doc, render_table


def test_docs_runtime_family_table_is_up_to_date():
    current = (DOCS / "runtime.md").read_text(encoding="utf-8")
    assert BEGIN in current
    assert current == render_doc(current), (
        "docs/runtime.md is stale: run `python -m adapterhub.runtime.family_table` and commit docs/runtime.md")


def test_the_table_follows_the_entries():
    """A new family, a refusal and a note each change the generated table."""
    extra = dataclasses.replace(arch.FAMILIES[0], name="toy", model_types=("toy",),
                                refuses=MappingProxyType({"compacter": "no PHM here"}),
                                notes=MappingProxyType({"prefix_tuning": "eager only"}))
    table = render_table((*arch.FAMILIES, extra))
    assert table != render_table()
    assert "| toy | toy | yes | refused | yes | yes* | yes |" in table
    assert "* toy, compacter: refused, no PHM here" in table and "* toy, prefix_tuning: eager only" in table


def _starcoder2():
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    return AutoModel.from_config(AutoConfig.for_model(
        "starcoder2", hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=37, vocab_size=99)).eval()


def _sc_sites(shape):
    return {"attention": Site("self_attn", "input_layernorm"), "ffn": Site("mlp", "post_attention_layernorm")}


def _sc_slots(shape):
    attn = {k: (Slot(k, f"self_attn.{k}_proj"),) for k in ("q", "k", "v", "o")}
    return {**attn, "ffn_in": (Slot("ffn_in", "mlp.c_fc"),), "ffn_out": (Slot("ffn_out", "mlp.c_proj"),)}


@pytest.fixture
def starcoder2_family():
    fam = register_family(Family("starcoder2-user", ("starcoder2",), ("layers",), _sc_sites, _sc_slots, causal=True))
    yield fam
    unregister_family("starcoder2-user")


def test_unlisted_family_is_refused_until_registered():
    with pytest.raises(UnsupportedArchitectureError, match="'starcoder2' has no entry") as info:
        wrap(_starcoder2())
    assert "register_family" in info.value.hint


def test_a_registered_family_gives_peft_outputs(starcoder2_family, tmp_path):
    """A family registered from user code binds like a built-in one: PEFT's LoRA on it loads to PEFT's outputs."""
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    inputs = case_inputs("llama")
    ref = peft.get_peft_model(_starcoder2(), peft.LoraConfig(r=4, lora_alpha=8,
                                                             target_modules=["q_proj", "v_proj", "c_fc"]))
    with torch.no_grad():
        for n, p in ref.named_parameters():
            if "lora_" in n:
                p.copy_(0.3 * torch.randn_like(p))
    ref.eval()
    ref.save_pretrained(tmp_path / "peft")
    model = _starcoder2().double()
    h = wrap(model)
    assert h.binding.family is starcoder2_family
    name = h.load(tmp_path / "peft", force=True)
    with torch.no_grad():
        want = ref.double()(**inputs).last_hidden_state
        got = model(**inputs).last_hidden_state
    assert_close(got, want, terms=32 * 2 * (32 + 37), mask=inputs["attention_mask"].bool())
    h.add("bn", "bottleneck", variant="houlsby")  # and the sites
    assert h.adapters == (name, "bn")
    derived = derive_dir(tmp_path / "peft", base_config_of(_starcoder2()))  # and derivation reads the same entry
    assert set(derived.adapter.config["target_modules"]) == {"q", "v", "ffn_in"}


def test_registration_refuses_a_taken_model_type_and_bad_entries(starcoder2_family):
    with pytest.raises(ConflictError, match=r"\['bert'\] already belong to family 'bert'"):
        register_family(dataclasses.replace(starcoder2_family, name="mine", model_types=("bert",)))
    with pytest.raises(ConflictError, match="starcoder2-user"):
        register_family(dataclasses.replace(starcoder2_family, name="again"))
    assert register_family(starcoder2_family) is starcoder2_family  # the same entry again: no-op
    with pytest.raises(InvalidArgumentError, match="decoder_stacks"):
        register_family(dataclasses.replace(starcoder2_family, name="x", model_types=("x",),
                                            decoder_stacks=("decoder.layers",)))
    with pytest.raises(InvalidArgumentError, match="towers"):
        register_family(dataclasses.replace(starcoder2_family, name="x", model_types=("x",),
                                            towers={"vision.layers": "vision_config"}))
    with pytest.raises(InvalidArgumentError):
        register_family("starcoder2")  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        unregister_family("bert")  # built-in families stay
    assert "bert" in arch.supported_model_types() and "starcoder2" in arch.supported_model_types()
