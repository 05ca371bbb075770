"""Merging is exact and reversible; training changes exactly the adapter (and head) weights."""

from __future__ import annotations

import pytest
import torch
from support.runtime_helpers import assert_same_state, hidden, inputs_for, state_snapshot, tiny_model
from support.tolerances import assert_close, model_terms

from adapterhub.runtime import wrap

WEIGHT_SPACE = {
    "lora": ("lora", {"r": 4, "alpha": 8, "init_weights": "bert", "target_modules": ["q", "v", "ffn_in", "ffn_out"]}),
    "rslora": ("lora", {"r": 4, "alpha": 8, "use_rslora": True, "init_weights": "bert"}),
    "dora": ("dora", {"r": 4, "alpha": 8, "init_weights": "bert", "target_modules": ["q", "k", "v", "ffn_out"]}),
    "ia3": ("ia3", {"target_modules": ["k", "v", "ffn_out"], "feedforward_modules": ["ffn_out"]}),
}


@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama", "t5"])
@pytest.mark.parametrize("key", list(WEIGHT_SPACE))
def test_merge_unmerge(arch, key):
    model = tiny_model(arch)
    inputs = inputs_for(arch)
    base = state_snapshot(model)
    h = wrap(model)
    method, config = WEIGHT_SPACE[key]
    h.add(key, method, **config)
    with torch.no_grad():
        for p in h.container[key].parameters():
            p.add_(torch.randn_like(p) * 0.2)
    unmerged = hidden(model, inputs)
    h.merge(key)
    merged = hidden(model, inputs)
    merged_state = state_snapshot(model)
    assert_close(merged, unmerged, terms=model_terms(model))
    h.unmerge(key)
    now = model.state_dict()
    for k, v in base.items():  # back to fp32 rounding of the larger magnitude the weight passed through
        if v.is_floating_point() and v.numel():
            scale = max(v.abs().max().item(), merged_state[k].abs().max().item())
            assert_close(now[k], v, terms=4, scale=scale, what=f"{k}: ")
    assert_close(hidden(model, inputs), unmerged, terms=model_terms(model))


def test_merged_lora_runs_without_hooks():
    model = tiny_model("bert")
    h = wrap(model)
    h.add("l", "lora", r=2, alpha=2, init_weights="bert")
    h.merge("l")
    assert all(not m._forward_hooks for m in model.modules())
    h.remove("l")  # unmerges first
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_train_adapter_sets_exactly_adapter_and_head_trainable():
    from transformers import AutoModelForSequenceClassification

    model = tiny_model("bert", cls=AutoModelForSequenceClassification, num_labels=3)
    h = wrap(model)
    h.add("other", "lora", r=2, alpha=2)
    h.add("mine", "bottleneck", variant="houlsby")
    names = h.train_adapter("mine")
    assert names == [n for n, p in model.named_parameters() if p.requires_grad]
    assert set(names) == {f"adapterhub_adapters.mine.{k}" for k in h.container["mine"].state_dict()} | {
        "classifier.weight", "classifier.bias"}
    assert h.active == ("mine",)


@pytest.mark.parametrize("method,config", [("bottleneck", {"variant": "houlsby"}),
                                           ("lora", {"r": 2, "alpha": 4, "target_modules": ["q", "v"]})])
def test_trainer_changes_only_adapter_and_head(tmp_path, method, config):
    pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate (pip install accelerate)")
    from torch.utils.data import Dataset
    from transformers import AutoModelForSequenceClassification, Trainer, TrainingArguments

    model = tiny_model("bert", cls=AutoModelForSequenceClassification, num_labels=2)
    h = wrap(model)
    h.add("t", method, **config)
    trainable = set(h.train_adapter("t"))
    before = state_snapshot(model)

    class Data(Dataset):
        def __len__(self):
            return 16

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return {"input_ids": torch.randint(3, 99, (8,), generator=g), "labels": torch.tensor(i % 2)}

    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=4, max_steps=3,
                             learning_rate=1e-2, report_to=[], save_strategy="no", logging_strategy="no",
                             use_cpu=True, disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=Data()).train()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed, "training changed nothing"
    assert changed <= trainable, sorted(changed - trainable)
    assert any(k.startswith("adapterhub_adapters.t.") for k in changed)
    frozen = {k: v for k, v in before.items() if k not in trainable}
    for k, v in frozen.items():
        assert torch.equal(after[k], v), k  # frozen: the same bytes


def test_head_saved_and_loaded_with_adapter(tmp_path):
    from transformers import AutoModelForSequenceClassification

    from adapterhub.manifest import load_manifest

    model = tiny_model("bert", cls=AutoModelForSequenceClassification, num_labels=3)
    h = wrap(model)
    h.add("cls", "bottleneck", variant="pfeiffer", init_weights="bert")
    with torch.no_grad():
        model.classifier.weight.normal_()
    inputs = inputs_for("bert")
    with torch.no_grad():
        want = model(**inputs).logits
    h.save("cls", tmp_path / "cls")
    m = load_manifest(tmp_path / "cls")
    assert m.head.type == "classification" and m.head.num_labels == 3
    assert {f.path for f in m.files} == {"adapter.safetensors", "head.safetensors"}

    fresh = tiny_model("bert", cls=AutoModelForSequenceClassification, num_labels=3)
    before = state_snapshot(fresh)
    h2 = wrap(fresh)
    h2.load(tmp_path / "cls")
    with torch.no_grad():  # another model instance: equal up to rounding
        assert_close(fresh(**inputs).logits, want, terms=model_terms(fresh))
    h2.remove("cls")
    assert_same_state(fresh, before)


@pytest.mark.parametrize(("cls_name", "head_type"), [("AutoModelForMultipleChoice", "multiple-choice"),
                                                     ("AutoModelForQuestionAnswering", "question-answering"),
                                                     ("AutoModelForTokenClassification", "token-classification")])
def test_every_task_head_is_saved_with_its_type(tmp_path, cls_name, head_type):
    """A head of each task model class travels with the adapter (multiple choice was dropped: no head type)."""
    import transformers

    from adapterhub.manifest import load_manifest

    model = tiny_model("bert", cls=getattr(transformers, cls_name))
    h = wrap(model)
    h.add("t", "bottleneck", variant="pfeiffer", init_weights="bert")
    h.save("t", tmp_path / "t")
    m = load_manifest(tmp_path / "t")
    assert m.head is not None and m.head.type == head_type
    assert "head.safetensors" in {f.path for f in m.files}
