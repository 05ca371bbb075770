"""PEFT targets that also match a backbone Linear we have no slot for (BERT's, RoBERTa's and ViT's ``pooler.dense``
under ``["dense"]`` or ``["query", "value", "dense"]``), against PEFT itself.

PEFT wraps every module its targets match. An adapter saved from a model without a pooler (``add_pooling_layer=False``,
as sentence encoders and RoBERTa's task models are built) holds no pooler tensors; loaded onto a model with one,
PEFT leaves the pooler's LoRA/DoRA/IA3 at its initialisation, the identity, so the model computes what the
adapter's projections make it compute: derived torch-free with the tensor names, attached by us, it must give
PEFT's outputs (pooler output, and the logits of ``BertForSequenceClassification``, which classifies the pooled
token) in float64 to rounding and in float32 within the magnitude-scaled tolerance. An adapter with trained pooler
tensors, or whose init is not the identity, is refused naming the pooler.
"""

from __future__ import annotations

import pytest
import torch
from support.derive_support import base_config_of, derive_dir, make_view
from support.family_cases import case_config, case_inputs
from support.tolerances import assert_close, model_terms

from adapterhub.errors import SchemaError
from adapterhub.runtime import wrap

peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
transformers = pytest.importorskip("transformers")

BACKBONES = {"bert": "BertModel", "roberta": "RobertaModel", "vit": "ViTModel"}
TARGETS = {"dense": ["dense"], "qvd": ["query", "value", "dense"]}
MLP_LAYOUT = {"dense": ["o_proj", "fc1", "fc2", "dense"], "qvd": ["q_proj", "v_proj", "dense"]}
"""The same targets on transformers 5's ViT, whose layers name their projections ``q_proj``... ``mlp.fc1`` (only the
pooler is still ``pooler.dense``)."""


def _targets(model, name: str) -> list[str]:
    mlp_layout = any(n.endswith("mlp.fc1") for n, _ in model.named_modules())
    return (MLP_LAYOUT if mlp_layout else TARGETS)[name]
METHODS = ("lora", "dora", "ia3")


def _backbone(arch: str, pooler: bool, dtype=torch.float32):
    torch.manual_seed(0)
    return getattr(transformers, BACKBONES[arch])(case_config(arch), add_pooling_layer=pooler).eval().to(dtype)


def _classifier(dtype=torch.float32):
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(case_config("bert", num_labels=3)).eval().to(dtype)


def _peft_config(method: str, targets: list[str], **extra):
    if method == "ia3":
        return peft.IA3Config(target_modules=targets, feedforward_modules=[t for t in targets if t in ("dense", "fc2")], **extra)
    return peft.LoraConfig(r=4, lora_alpha=8, target_modules=targets, use_dora=method == "dora", **extra)


def _save(source, method: str, targets: list[str], path, **extra) -> None:
    """A PEFT adapter with random non-identity weights, saved from the model ``source``."""
    model = peft.get_peft_model(source, _peft_config(method, targets, **extra))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n or "ia3_" in n:
                p.copy_((1 + 0.3 * torch.randn(p.shape, generator=g)) if "magnitude" in n or "ia3_" in n
                        else 0.3 * torch.randn(p.shape, generator=g))
    model.save_pretrained(path)


def _outputs(model, inputs) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(**inputs)
    return {k: out[k] for k in ("last_hidden_state", "pooler_output", "logits") if out.get(k) is not None}


def _token_classifier():
    """BERT with the ``bert.`` prefix of its task models but no pooler (token classification does not pool)."""
    torch.manual_seed(0)
    return transformers.BertForTokenClassification(case_config("bert")).eval()


def _cases(arch: str) -> list[tuple[str, object, object]]:
    """``(kind, model the adapter is saved from, model it is loaded onto)``: the loaded-onto model has a pooler in use
    and module names that match the saved ones (PEFT loads nothing across a task prefix)."""
    cases = [("backbone", lambda: _backbone(arch, False), lambda dtype: _backbone(arch, True, dtype))]
    return cases + ([("seq-cls", _token_classifier, _classifier)] if arch == "bert" else [])


@pytest.mark.parametrize("targets", list(TARGETS))
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("arch", list(BACKBONES))
def test_a_target_matching_the_pooler_without_pooler_tensors_loads_with_peft_outputs(arch, method, targets, tmp_path):
    inputs = case_inputs(arch)
    mask = inputs["attention_mask"].bool() if "attention_mask" in inputs else None
    for kind, source, build in _cases(arch):
        model = source()
        _save(model, method, _targets(model, targets), tmp_path / kind)
        manifest = derive_dir(tmp_path / kind, base_config_of(build(torch.float32)))
        view = make_view(tmp_path / kind, tmp_path / f"{kind}-view", manifest)
        for dtype in (torch.float64, torch.float32):
            ref = peft.PeftModel.from_pretrained(build(dtype), tmp_path / kind).eval()
            want, base = _outputs(ref, inputs), _outputs(build(dtype), inputs)
            ours_model = build(dtype)
            wrap(ours_model).load(view)
            ours = _outputs(ours_model, inputs)
            assert set(ours) == set(want) and ("pooler_output" in want or "logits" in want)
            for key in want:  # the adapter changes every output, and ours are PEFT's
                assert (want[key] - base[key]).abs().max() > 1e-3 * base[key].abs().max()
                assert_close(ours[key], want[key], terms=model_terms(ours_model),
                             mask=mask if key == "last_hidden_state" else None, what=f"{kind} {dtype} {key}: ")


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("arch", list(BACKBONES))
def test_a_target_matching_the_pooler_with_trained_pooler_tensors_is_refused(arch, method, tmp_path):
    """Saved from a model with its pooler, PEFT trained the pooler's adapter too: the file holds its tensors, which
    adapterhub cannot attach (no slot outside the layers), so derivation and a direct load both refuse, naming it."""
    model = _backbone(arch, True)
    _save(model, method, _targets(model, "qvd"), tmp_path / "repo")
    with pytest.raises(SchemaError, match="holds trained tensors for pooler.dense"):
        derive_dir(tmp_path / "repo", base_config_of(_backbone(arch, True)))
    with pytest.raises(SchemaError, match="'pooler.dense' is not a projection"):
        wrap(_backbone(arch, True)).load(tmp_path / "repo")


@pytest.mark.parametrize(("method", "extra"), [("lora", {"init_lora_weights": False}),
                                               ("ia3", {"init_ia3_weights": False})])
def test_a_pooler_target_whose_init_is_not_the_identity_is_refused_as_peft_randomises_the_pooler(method, extra,
                                                                                                 tmp_path):
    _save(_token_classifier(), method, TARGETS["dense"], tmp_path / "repo", **extra)
    inputs = case_inputs("bert")
    ref = peft.PeftModel.from_pretrained(_classifier(torch.float64), tmp_path / "repo").eval()
    random_init = _outputs(ref, inputs)["logits"]
    with torch.no_grad():  # PEFT left the pooler's adapter at its init; set to the identity, the logits change
        for n, p in ref.base_model.model.bert.pooler.dense.named_parameters():
            if "lora_B" in n or "ia3_l" in n:
                p.copy_(torch.zeros_like(p) if "lora_B" in n else torch.ones_like(p))
    assert (_outputs(ref, inputs)["logits"] - random_init).abs().max() > 1e-6
    for attempt in (lambda: derive_dir(tmp_path / "repo", base_config_of(_classifier())),
                    lambda: wrap(_classifier()).load(tmp_path / "repo")):
        with pytest.raises(SchemaError, match="not the identity") as err:
            attempt()
        assert "pooler.dense" in str(err.value)
    # onto the model it was saved from (no pooler) PEFT adapts only modules the file holds: ours loads it as PEFT does
    ours, want = _token_classifier().double(), peft.PeftModel.from_pretrained(_token_classifier().double(),
                                                                               tmp_path / "repo").eval()
    wrap(ours).load(tmp_path / "repo")
    assert_close(_outputs(ours, inputs)["logits"], _outputs(want, inputs)["logits"], terms=model_terms(ours))
