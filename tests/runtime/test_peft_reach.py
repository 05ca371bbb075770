"""PEFT configs that resolve their targets against the model: ``target_modules="all-linear"`` and ``exclude_modules``.

PEFT turns ``all-linear`` into every Linear/Conv1D of the model but its output embedding (and, for ``SEQ_CLS``, the
classifier), then drops what ``exclude_modules`` names (a list: equal or ``.``-suffix; a string: full regular-expression
match). Each case saves a PEFT adapter with non-zero weights on a tiny random model, derives its manifest torch-free
(:func:`adapterhub.manifest.derive.derive_manifest`), loads the view with ours and compares with
``PeftModel.from_pretrained`` on a fresh copy of the model on a padded batch: in fp32 within the suite's tolerance and
in float64, where agreement to rounding proves the same placement and math. What PEFT would adapt beyond our
projections is refused, naming the key.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from support.derive_support import base_config_of, derive_dir, make_view
from support.family_cases import case_config
from support.runtime_helpers import inputs_for, tiny_model
from support.tolerances import assert_close, model_terms

from adapterhub.errors import SchemaError
from adapterhub.families import SUPPORTED_MODEL_TYPES
from adapterhub.runtime import bind, read_adapter_dir, wrap
from adapterhub.runtime.module_paths import slot_index

peft = pytest.importorskip("peft", reason="peft is not installed in this environment")

TASK_CLASSES = {None: "AutoModel", "CAUSAL_LM": "AutoModelForCausalLM", "SEQ_2_SEQ_LM": "AutoModelForSeq2SeqLM",
                "SEQ_CLS": "AutoModelForSequenceClassification"}
CASES = {  # id: (arch, task_type, config keys, literal: rewrite target_modules to the string PEFT resolves)
    "llama-all-linear": ("llama", None, {"target_modules": "all-linear"}, True),
    "llama-all-linear-saved": ("llama", None, {"target_modules": "all-linear"}, False),
    "llama-causal-all-linear": ("llama", "CAUSAL_LM", {"target_modules": "all-linear"}, True),
    "gpt2-causal-all-linear": ("gpt2", "CAUSAL_LM", {"target_modules": "all-linear", "fan_in_fan_out": True}, True),
    "t5-seq2seq-all-linear": ("t5", "SEQ_2_SEQ_LM", {"target_modules": "ALL-LINEAR"}, True),
    "llama-all-linear-layer": ("llama", None, {"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj",
                                                                 "gate_proj", "down_proj"],
                                               "layers_to_transform": [1], "layers_pattern": "layers"}, False),
    "llama-exclude-list": ("llama", None, {"target_modules": "all-linear", "exclude_modules": ["o_proj", "up_proj"]},
                           True),
    "llama-exclude-regex": ("llama", None, {"target_modules": ["q_proj", "v_proj", "down_proj"],
                                            "exclude_modules": r".*\.0\..*"}, False),
    "t5-exclude-regex": ("t5", None, {"target_modules": ["q", "v", "wi"], "exclude_modules": r".*decoder.*"}, False),
    "bert-exclude-list": ("bert", None, {"target_modules": ["query", "value", "dense"],
                                         "exclude_modules": ["output.dense", "pooler.dense"]}, False),
    "llama-rank-alpha-pattern": ("llama", None, {"target_modules": ["q_proj", "v_proj", "down_proj"],
                                                 "rank_pattern": {"q_proj": 2, r"layers\.1\.mlp\.down_proj": 6},
                                                 "alpha_pattern": {"v_proj": 3}}, False),
    "llama-rslora-pattern": ("llama", "CAUSAL_LM", {"target_modules": "all-linear", "use_rslora": True,
                                                    "rank_pattern": {"o_proj": 8}}, True),
    "llama-dora-pattern": ("llama", None, {"target_modules": ["q_proj", "v_proj"], "use_dora": True,
                                           "rank_pattern": {"v_proj": 2}, "alpha_pattern": {"q_proj": 5}}, False),
    "gpt2-fused-pattern": ("gpt2", None, {"target_modules": ["c_attn", "c_fc"], "fan_in_fan_out": True,
                                          "rank_pattern": {"c_attn": 6}}, False),
    "bert-one-pattern-rank": ("bert", None, {"target_modules": ["query", "value"], "rank_pattern": {".*": 3},
                                             "alpha_pattern": {"query|value": 6}}, False),
}


def _model(arch: str, task: str | None, seed: int = 0):
    import transformers

    return tiny_model(arch, seed=seed, cls=getattr(transformers, TASK_CLASSES[task]))


def _randomize(model) -> None:
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.copy_((1 + 0.3 * torch.randn(p.shape, generator=g)) if "magnitude" in n
                        else 0.3 * torch.randn(p.shape, generator=g))


def _save(arch: str, task: str | None, keys: dict, literal: bool, path, **extra) -> None:
    """A PEFT adapter with random non-zero weights saved at ``path``; ``literal``: its config states the
    target_modules string (``all-linear``) as written, as configs written by other tools do, instead of the module
    names PEFT resolved it to when it saved."""
    cfg = peft.LoraConfig(r=4, lora_alpha=8, task_type=task, **keys, **extra)
    ref = peft.get_peft_model(_model(arch, task), cfg)
    _randomize(ref)
    ref.save_pretrained(path)
    config = json.loads((path / "adapter_config.json").read_text())
    if literal:
        config["target_modules"] = keys["target_modules"]
    (path / "adapter_config.json").write_text(json.dumps(config))


def _outputs(model, inputs, task):
    with torch.no_grad():
        out = model(**inputs)
    return out.logits if task else out.last_hidden_state


@pytest.mark.parametrize("case", list(CASES))
def test_a_peft_adapter_whose_targets_peft_resolves_loads_with_peft_outputs(case, tmp_path):
    arch, task, keys, literal = CASES[case]
    _save(arch, task, keys, literal, tmp_path / "repo")
    manifest = derive_dir(tmp_path / "repo", base_config_of(_model(arch, task)))
    view = make_view(tmp_path / "repo", tmp_path / "view", manifest)
    inputs = inputs_for(arch)
    mask = None if "decoder_input_ids" in inputs else inputs["attention_mask"].bool()
    # the derived placement is what the runtime reads off the saved tensors' names
    read = read_adapter_dir(tmp_path / "repo", bind(_model(arch, task)))
    assert set(manifest.adapter.config["target_modules"]) == set(read.config["target_modules"])
    assert set(manifest.adapter.config.stated().get("leave_out", ())) == set(read.config.get("leave_out") or ())
    for dtype in (torch.float32, torch.float64):
        ref = peft.PeftModel.from_pretrained(_model(arch, task).to(dtype), tmp_path / "repo").eval()
        ours = _model(arch, task).to(dtype)
        wrap(ours).load(view)
        want = _outputs(ref, inputs, task)
        assert (want - _outputs(_model(arch, task).to(dtype), inputs, task)).abs().max() > 1e-3
        assert_close(_outputs(ours, inputs, task), want, terms=model_terms(ours), mask=mask)


def test_all_linear_places_every_projection_of_every_layer(tmp_path):
    _save("llama", None, {"target_modules": "all-linear"}, True, tmp_path / "repo")
    config = derive_dir(tmp_path / "repo", base_config_of(tiny_model("llama"))).adapter.config
    assert set(config["target_modules"]) == {"q", "k", "v", "o", "ffn_in", "ffn_gate", "ffn_out"}
    assert not config.stated().get("leave_out")


REFUSED = {  # id: (arch, task_type, config keys, literal, what the message says)
    "bert-pooler": ("bert", None, {"target_modules": "all-linear"}, True, "pooler.dense"),
    "bert-dense-pooler": ("bert", None, {"target_modules": ["query", "dense"]}, False, "pooler.dense"),
    "bert-regex-pooler": ("bert", None, {"target_modules": r".*\.(query|dense)"}, False, "pooler.dense"),
    "llama-seq-cls-head": ("llama", "SEQ_CLS", {"target_modules": "all-linear"}, True, "task_type 'SEQ_CLS'"),
    "llama-exclude-some-layers": ("llama", None, {"target_modules": ["q_proj", "v_proj"],
                                                  "exclude_modules": ["layers.1.self_attn.q_proj"]}, False,
                                  "different projections in different layers"),
    "llama-all-linear-layers": ("llama", None, {"target_modules": "all-linear", "layers_to_transform": [1]}, None,
                                "/layers_to_transform"),
    "llama-exclude-everything": ("llama", None, {"target_modules": ["q_proj"], "exclude_modules": ".*"}, None,
                                 "matches none"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_what_peft_would_adapt_beyond_our_projections_is_refused_by_name(case, tmp_path):
    arch, task, keys, literal, says = REFUSED[case]
    if literal is None:  # PEFT refuses to save it: write the config by hand
        _save(arch, task, {"target_modules": keys["target_modules"]}, False, tmp_path / "repo")
        config = json.loads((tmp_path / "repo" / "adapter_config.json").read_text())
        (tmp_path / "repo" / "adapter_config.json").write_text(json.dumps({**config, **keys}))
    else:
        _save(arch, task, keys, literal, tmp_path / "repo")
    with pytest.raises(SchemaError) as err:
        derive_dir(tmp_path / "repo", base_config_of(_model(arch, task)))
    assert says in str(err.value)


def test_the_runtime_refuses_a_saved_all_linear_module_it_cannot_place(tmp_path):
    """BERT's pooler is a Linear, so PEFT's all-linear adapts it: its tensors are in the file and cannot be placed."""
    _save("bert", None, {"target_modules": "all-linear"}, True, tmp_path / "repo")
    with pytest.raises(SchemaError, match="'pooler.dense' is not a projection") as err:
        wrap(tiny_model("bert")).load(tmp_path / "repo")
    assert "all-linear" in str(err.value)


FAMILY_CASES = [(t, {}) for t in SUPPORTED_MODEL_TYPES] + [("electra", {"embedding_size": 32}),
                                                             ("opt", {"word_embed_proj_dim": 16})]


@pytest.mark.parametrize(("model_type", "overrides"), FAMILY_CASES,
                         ids=[t + ("-" + "-".join(map(str, o.values())) if o else "") for t, o in FAMILY_CASES])
def test_the_table_knows_every_linear_of_a_backbone_that_is_no_projection(model_type, overrides):
    """``Family.other_linears`` is what derivation refuses PEFT targets (``all-linear`` too) over: it must name every
    Linear/Conv1D of the installed transformers' backbone that the runtime has no slot for, from config.json alone."""
    from transformers import AutoModel
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    model = AutoModel.from_config(case_config(model_type, **overrides))
    binding = bind(model)
    slots = set(slot_index(binding))
    linears = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear | Conv1D)}
    assert {re.sub(r"\.\d+\.", ".N.", n) for n in linears - slots} == \
        set(binding.family.other_linears(base_config_of(model)))


@pytest.mark.parametrize("arch", ["llama", "bert"])
def test_a_peft_prefix_tuning_directory_is_refused_naming_why(arch, tmp_path):
    """PEFT's prefix tuning hands its prefix to the model as past keys/values, so the model numbers the real tokens
    from the prefix length on; ours prepends keys/values with positions unchanged: the outputs differ, so both the
    runtime and derivation refuse it at /peft_type (before: a bare 'is not supported')."""
    task = "CAUSAL_LM" if arch == "llama" else "FEATURE_EXTRACTION"
    model = _model(arch, "CAUSAL_LM" if arch == "llama" else None)
    cfg = peft.PrefixTuningConfig(task_type=task, num_virtual_tokens=3, prefix_projection=arch == "bert")
    peft.get_peft_model(model, cfg).save_pretrained(tmp_path / "repo")
    for attempt in (lambda: wrap(_model(arch, None)).load(tmp_path / "repo"),
                    lambda: derive_dir(tmp_path / "repo", base_config_of(model))):
        with pytest.raises(SchemaError, match="/peft_type") as err:
            attempt()
        assert "'PREFIX_TUNING' is not supported" in str(err.value) and "position ids shift" in str(err.value)


def test_per_module_ranks_are_stated_as_one_rank_with_each_module_scale_in_its_b(tmp_path):
    """Several (r, alpha) pairs become r = the largest, alpha = r; one pair is stated as PEFT gave it."""
    arch, task, keys, literal = CASES["llama-rank-alpha-pattern"]
    _save(arch, task, keys, literal, tmp_path / "repo")
    config = derive_dir(tmp_path / "repo", base_config_of(tiny_model("llama"))).adapter.config
    assert (config["r"], config["alpha"]) == (6, 6.0)
    arch, task, keys, literal = CASES["bert-one-pattern-rank"]
    _save(arch, task, keys, literal, tmp_path / "one")
    config = derive_dir(tmp_path / "one", base_config_of(tiny_model("bert"))).adapter.config
    assert (config["r"], config["alpha"]) == (3, 6.0)


def test_a_fused_lora_exported_to_peft_loads_back(tmp_path):
    """export_peft writes a GPT-2 q+v LoRA as one c_attn LoRA of rank 2r (rank_pattern, alpha_pattern); reading that
    directory back was refused at /rank_pattern before, and now gives the adapter's outputs (float64: to rounding)."""
    from adapterhub.runtime.formats.peft import export_peft

    inputs = inputs_for("gpt2")
    model = tiny_model("gpt2").double()
    h = wrap(model)
    h.add("l", "lora", r=2, alpha=6, init_weights="bert", target_modules=["q", "v", "ffn_in"])
    with torch.no_grad():
        want = model(**inputs).last_hidden_state
    export_peft(h, "l", tmp_path / "export")
    assert json.loads((tmp_path / "export" / "adapter_config.json").read_text())["rank_pattern"]
    again = tiny_model("gpt2").double()
    wrap(again).load(tmp_path / "export")
    with torch.no_grad():
        assert_close(again(**inputs).last_hidden_state, want, terms=model_terms(again),
                     mask=inputs["attention_mask"].bool())


@pytest.mark.parametrize("init", ["olora", "pissa"])
def test_an_adapter_trained_on_a_residual_base_is_refused(init, tmp_path):
    """PiSSA/OLoRA (and CorDA, LoftQ, LoRA-GA) subtract their initial update from the base weights, and PEFT redoes
    that when it loads the adapter: on the published base our W + s B A is not what PEFT computes (read silently
    before)."""
    ref = peft.get_peft_model(tiny_model("llama"), peft.LoraConfig(r=2, target_modules=["q_proj"],
                                                                   init_lora_weights=init))
    ref.save_pretrained(tmp_path / "repo")
    import shutil

    shutil.copytree(tmp_path / "repo", tmp_path / "plain")  # the same tensors, read as a plain LoRA on the base
    config = json.loads((tmp_path / "plain" / "adapter_config.json").read_text())
    (tmp_path / "plain" / "adapter_config.json").write_text(json.dumps({**config, "init_lora_weights": True}))
    inputs = inputs_for("llama")
    with torch.no_grad():
        residual = peft.PeftModel.from_pretrained(tiny_model("llama"), tmp_path / "repo")(**inputs).last_hidden_state
        plain = peft.PeftModel.from_pretrained(tiny_model("llama"), tmp_path / "plain")(**inputs).last_hidden_state
    assert (residual - plain).abs().max() > 1e-3  # PEFT changes the base again when it loads the adapter
    for attempt in (lambda: wrap(tiny_model("llama")).load(tmp_path / "repo"),
                    lambda: derive_dir(tmp_path / "repo", base_config_of(tiny_model("llama")))):
        with pytest.raises(SchemaError, match="/init_lora_weights") as err:
            attempt()
        assert "residual base" in str(err.value)
