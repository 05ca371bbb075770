"""Prediction heads survive every conversion, or the conversion is refused with the reason:
PEFT ``modules_to_save`` (lm_head, classifier, score), ``adapters``-library heads (static and flex), and the
round trips adapterhub -> PEFT -> adapterhub and ``adapters`` -> adapterhub through ``adapterhub init``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from runtime_helpers import inputs_for, tiny_config

from adapterhub.errors import SchemaError, WeightMismatchError
from adapterhub.manifest import load_manifest
from adapterhub.publish.scaffold import InitOptions, init_adapter
from adapterhub.runtime import wrap
from adapterhub.runtime.config import typed_config
from adapterhub.runtime.formats.peft import export_peft

TASKS = {"causal": "AutoModelForCausalLM", "seq-cls": "AutoModelForSequenceClassification",
         "token-cls": "AutoModelForTokenClassification"}


def _task_model(arch: str, task: str, seed: int = 0, **overrides):
    import transformers

    torch.manual_seed(seed)
    return getattr(transformers, TASKS[task]).from_config(tiny_config(arch, **overrides)).eval()


def _logits(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape
    assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())


def _perturb(model, words: tuple[str, ...], seed: int = 3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if any(w in n for w in words):
                p.add_(torch.randn(p.shape, generator=g) * 0.3)


# --- PEFT modules_to_save ---------------------------------------------------------------------------

PEFT_CASES = {  # (arch, task, LoRA targets, modules_to_save)
    "llama-lm_head": ("llama", "causal", ["q_proj", "v_proj"], ["lm_head"]),
    "bert-classifier": ("bert", "seq-cls", ["query", "value"], None),  # SEQ_CLS adds classifier itself
    "llama-score": ("llama", "seq-cls", ["q_proj", "v_proj"], None),  # ... and score
}


@pytest.mark.parametrize("case", list(PEFT_CASES))
def test_peft_modules_to_save_survive_import_save_reload_and_export(case, tmp_path):
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    arch, task, targets, modules = PEFT_CASES[case]
    inputs = inputs_for(arch)
    task_type = {"causal": "CAUSAL_LM", "seq-cls": "SEQ_CLS"}[task]
    ref = peft.get_peft_model(_task_model(arch, task, num_labels=3),
                              peft.LoraConfig(r=2, lora_alpha=4, target_modules=targets, modules_to_save=modules,
                                              task_type=task_type))
    _perturb(ref, ("lora_", "modules_to_save"))
    ref.eval()
    want = _logits(ref, inputs)
    assert (want - _logits(_task_model(arch, task, num_labels=3), inputs)).abs().max() > 1e-2
    ref.save_pretrained(tmp_path / "peft")

    model = _task_model(arch, task, num_labels=3)
    h = wrap(model)
    name = h.load(tmp_path / "peft", name="p")
    _close(_logits(model, inputs), want)

    h.save(name, tmp_path / "ours")
    m = load_manifest(tmp_path / "ours")
    assert m.head is not None and {f.role for f in m.files} == {"weights", "head"}
    again = _task_model(arch, task, num_labels=3)
    wrap(again).load(tmp_path / "ours")
    _close(_logits(again, inputs), want)  # before: the trained lm_head was dropped (logits off by ~8)

    export_peft(h, name, tmp_path / "export")
    config = json.loads((tmp_path / "export" / "adapter_config.json").read_text())
    assert config["task_type"] == task_type and config["modules_to_save"]
    theirs = peft.PeftModel.from_pretrained(_task_model(arch, task, num_labels=3), tmp_path / "export").eval()
    _close(_logits(theirs, inputs), want)


@pytest.mark.parametrize(("arch", "targets", "modules", "named"), [
    ("gpt2", ["c_attn"], ["lm_head"], "lm_head.weight"),  # tied to the input embeddings
    ("llama", ["q_proj"], ["input_layernorm"], "input_layernorm.weight"),  # inside the frozen backbone
])
def test_peft_modules_to_save_that_would_change_the_frozen_base_are_refused(arch, targets, modules, named, tmp_path):
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    ref = peft.get_peft_model(_task_model(arch, "causal"), peft.LoraConfig(
        r=2, target_modules=targets, modules_to_save=modules, fan_in_fan_out=arch == "gpt2"))
    _perturb(ref, ("modules_to_save",))
    ref.save_pretrained(tmp_path / "peft")
    h = wrap(_task_model(arch, "causal"))
    with pytest.raises(SchemaError, match=rf"/modules_to_save: .*{named}.*frozen base"):
        h.load(tmp_path / "peft")
    assert h.adapters == ()


# --- adapters-library heads -------------------------------------------------------------------------

LIBRARY_HEADS = {  # arch, task model, how the library model is built, head kwargs
    "bert-static": ("bert", "seq-cls", "init", {}),
    "roberta-flex": ("roberta", "seq-cls", "flex", {}),
    "bert-flex-pooled": ("bert", "seq-cls", "flex", {"layers": 1, "use_pooler": True}),
    "distilbert-flex": ("distilbert", "seq-cls", "flex", {"activation_function": "relu"}),
    "bert-flex-tagging": ("bert", "token-cls", "flex", {}),
}


def _bare(arch: str):
    """The backbone every model of these tests shares (seed 0)."""
    from transformers import AutoModel

    torch.manual_seed(0)
    return AutoModel.from_config(tiny_config(arch)).eval()


def _on_bare(model):
    """``model`` with the shared backbone weights (its head stays as initialised)."""
    model.base_model.load_state_dict(_bare(model.config.model_type).state_dict(), strict=False)
    return model


def _library_dir(adapters, case: str, tmp_path: Path) -> tuple[Path, torch.Tensor]:
    """An adapters 1.3.0 save (adapter + head) from a tiny model, and the library's own logits."""
    arch, task, how, kwargs = LIBRARY_HEADS[case]
    inputs = inputs_for(arch)
    if how == "init":
        ref = _on_bare(_task_model(arch, task, num_labels=3))
        adapters.init(ref)
    else:
        ref = _on_bare(adapters.AutoAdapterModel.from_config(tiny_config(arch, num_labels=3)))
    ref.add_adapter("a", config="seq_bn")
    if how == "flex" and task == "token-cls":
        ref.add_tagging_head("a", num_labels=3, **kwargs)
    elif how == "flex":
        ref.add_classification_head("a", num_labels=3, **kwargs)
    _perturb(ref, (".a.", "classifier"))
    ref.set_active_adapters("a")
    ref.eval()
    want = _logits(ref, inputs)
    ref.save_adapter(str(tmp_path / case), "a", use_safetensors=how == "flex")
    return tmp_path / case, want


@pytest.mark.parametrize("case", list(LIBRARY_HEADS))
def test_adapters_library_head_is_imported_and_gives_the_library_logits(case, tmp_path):
    adapters = pytest.importorskip("adapters", reason="the adapters library is not installed in this environment")
    arch, task, _, _ = LIBRARY_HEADS[case]
    directory, want = _library_dir(adapters, case, tmp_path)
    inputs = inputs_for(arch)
    model = _on_bare(_task_model(arch, task, num_labels=3))
    h = wrap(model)
    h.load(directory)
    _close(_logits(model, inputs), want)  # before: the head was dropped without a word
    h.save("a", tmp_path / "ours")
    assert load_manifest(tmp_path / "ours").head.num_labels == 3
    again = _on_bare(_task_model(arch, task, num_labels=3))
    wrap(again).load(tmp_path / "ours")
    _close(_logits(again, inputs), want)


def test_adapters_library_heads_without_an_equivalent_are_refused_with_the_reason(tmp_path):
    adapters = pytest.importorskip("adapters", reason="the adapters library is not installed in this environment")
    ref = adapters.AutoAdapterModel.from_config(tiny_config("bert"))
    ref.add_adapter("a", config="seq_bn")
    ref.add_classification_head("a", num_labels=2)  # the library's default: 2 layers on the first token
    ref.save_adapter(str(tmp_path / "flex"), "a")
    h = wrap(_task_model("bert", "seq-cls"))
    with pytest.raises(SchemaError, match=r"/config: .*'layers': 2.*ForSequenceClassification head of bert"):
        h.load(tmp_path / "flex")
    directory, _ = _library_dir(adapters, "bert-static", tmp_path)
    bare = wrap(_bare("bert"))
    with pytest.raises(WeightMismatchError, match="BertForSequenceClassification"):
        bare.load(directory)
    assert h.adapters == () and bare.adapters == ()


# --- round trips through `adapterhub init` ----------------------------------------------------------

def test_adapterhub_to_peft_to_adapterhub_is_lossless(tmp_path):
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    from transformers import AutoModelForSequenceClassification

    _bare("bert").save_pretrained(tmp_path / "base")  # as published: architectures names no task class
    inputs = inputs_for("bert")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=3).eval()
    h = wrap(model)
    h.add("sst", "lora", r=2, alpha=4, target_modules=["q", "v", "ffn_in"], leave_out=[1])
    _perturb(model, ("classifier", "lora_"))  # as if trained
    want = _logits(model, inputs)
    h.save("sst", tmp_path / "ours")
    export_peft(h, "sst", tmp_path / "peft")
    theirs = peft.PeftModel.from_pretrained(
        AutoModelForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=3), tmp_path / "peft")
    _close(_logits(theirs.eval(), inputs), want)

    result = init_adapter(tmp_path / "peft", base=tmp_path / "base", options=InitOptions(name="sst"))
    back = load_manifest(result.directory)  # before: "classifier.bias is neither a LoRA/IA3 tensor nor a head"
    ours = load_manifest(tmp_path / "ours")
    assert back.head == ours.head and back.base_model.fingerprint == ours.base_model.fingerprint
    assert typed_config(back.adapter).effective() == typed_config(ours.adapter).effective()
    fresh = AutoModelForSequenceClassification.from_pretrained(tmp_path / "base", num_labels=3).eval()
    wrap(fresh).load(result.directory)
    _close(_logits(fresh, inputs), want)


def test_adapters_library_directory_to_adapterhub_through_init_keeps_the_head(tmp_path):
    adapters = pytest.importorskip("adapters", reason="the adapters library is not installed in this environment")
    directory, want = _library_dir(adapters, "roberta-flex", tmp_path)
    _bare("roberta").save_pretrained(tmp_path / "base")
    result = init_adapter(directory, base=tmp_path / "base", options=InitOptions(name="rob"))
    m = load_manifest(result.directory)
    assert m.head.type == "classification" and m.head.num_labels == 3
    model = _on_bare(_task_model("roberta", "seq-cls", num_labels=3))
    wrap(model).load(result.directory)
    _close(_logits(model, inputs_for("roberta")), want)
