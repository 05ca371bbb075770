"""A pulled Hub repo's view: the repo's own files (PEFT or ``adapters``-library layout) and a derived manifest.

Each case builds the adapter with the reference library in this interpreter (random weights, so it does
something), derives the manifest from the saved directory's config files and file hashes alone
(:func:`adapterhub.manifest.derive.derive_manifest`), lays the directory out as the cache would, loads it
with ours and compares with the reference library: in fp32 within ``tests/support/tolerances.py`` and in
float64, where agreement to rounding proves the same math. The derived method and config must also be
what ``adapterhub init`` converts the same directory into (targets as sets: their order means nothing).
"""

from __future__ import annotations

import json

import pytest
import torch
from support.derive_support import COMMIT, base_config_of, config_files, derive_dir, listing, make_view
from support.family_cases import case_config
from support.paths import REFERENCE
from support.runtime_helpers import hidden, inputs_for, tiny_config, tiny_model
from support.tolerances import assert_close, model_terms

from adapterhub.compose import Fuse
from adapterhub.errors import IncompatibleBaseError, IntegrityError, SchemaError
from adapterhub.families import SUPPORTED_MODEL_TYPES
from adapterhub.manifest import load_manifest, manifest_to_dict, parse_manifest, write_manifest
from adapterhub.manifest.derive import HubOrigin, derive_manifest
from adapterhub.publish.scaffold import init_adapter
from adapterhub.runtime import bind, read_adapter_dir, wrap
from adapterhub.runtime.module_paths import module_slots, slot_index

TARGETS = {  # PEFT module names: attention, ffn in, ffn out
    "bert": (["query", "value"], ["intermediate.dense"], ["output.dense"]),
    "gpt2": (["c_attn"], ["c_fc"], ["mlp.c_proj"]),
    "llama": (["q_proj", "v_proj"], ["up_proj"], ["down_proj"]),
    "t5": (["q", "v"], ["wi"], ["wo"]),
}
PEFT_CASES = {  # id: (arch, kind, PEFT layers_to_transform)
    "bert-lora": ("bert", "lora", None), "gpt2-lora": ("gpt2", "lora", None), "llama-lora": ("llama", "lora", None),
    "t5-lora": ("t5", "lora", None), "bert-lora-layer1": ("bert", "lora", [1]),
    "bert-dora": ("bert", "dora", None), "llama-dora": ("llama", "dora", None),
    "bert-ia3": ("bert", "ia3", None), "gpt2-ia3": ("gpt2", "ia3", None), "t5-ia3": ("t5", "ia3", None),
    "bert-loha": ("bert", "loha", None), "llama-loha": ("llama", "loha", [0]),
}
SET_VALUED = ("target_modules", "feedforward_modules", "leave_out")


def _randomize(model, words) -> None:
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if any(w in n for w in words):
                noise = torch.randn(p.shape, generator=g)
                p.copy_(1 + 0.3 * noise if "ia3_l" in n else 0.3 * noise)


def _peft_dir(peft, arch, kind, layers, path):
    attn, ffn_in, ffn_out = TARGETS[arch]
    fan = {"fan_in_fan_out": True} if arch == "gpt2" else {}
    pattern = {"layers_to_transform": layers, "layers_pattern": {"bert": "layer", "llama": "layers"}[arch]} \
        if layers else {}
    if kind == "ia3":
        cfg = peft.IA3Config(target_modules=attn + ffn_out, feedforward_modules=ffn_out, **fan)
    elif kind == "loha":
        cfg = peft.LoHaConfig(r=2, alpha=6, target_modules=attn + ffn_in, **pattern)
    else:
        cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=attn + ffn_in, use_dora=kind == "dora", **fan,
                              **pattern)
    ref = peft.get_peft_model(tiny_model(arch), cfg)
    _randomize(ref, ("lora_", "ia3_l", "hada_"))
    ref.eval().save_pretrained(path)
    return ref


def _check(got, want, inputs, model, **kwargs) -> None:
    mask = None if "decoder_input_ids" in inputs else inputs["attention_mask"].bool()
    assert_close(got, want, terms=model_terms(model), mask=mask, **kwargs)


def _normal(method: str, config: dict) -> tuple:
    return method, {k: sorted(v) if k in SET_VALUED else v for k, v in config.items()}


def _same_as_init(directory, manifest, arch, tmp_path) -> None:
    """``adapterhub init`` converts the same directory (against the base's structure) into the same adapter."""
    tiny_config(arch).save_pretrained(tmp_path / "base-config")
    converted = init_adapter(directory, out=tmp_path / "converted", base=tmp_path / "base-config").manifest
    stated = manifest_to_dict(manifest)["adapter"]
    assert _normal(stated["method"], stated["config"]) == \
        _normal(converted.adapter.method, manifest_to_dict(converted)["adapter"]["config"])
    assert (manifest.head is None) == (converted.head is None)


def _attach_and_compare(arch, manifest, ref, tmp_path, *, float64: bool = True) -> None:
    """Lay ``manifest`` out as a view over ``tmp_path/repo``, attach it, compare with ``ref`` (fp32, then float64)
    and with what ``adapterhub init`` converts the same directory into."""
    view = make_view(tmp_path / "repo", tmp_path / "view", manifest)
    inputs = inputs_for(arch)
    model = tiny_model(arch)
    assert wrap(model).load(view) == manifest.name
    want = hidden(ref, inputs)
    assert (want - hidden(tiny_model(arch), inputs)).abs().max() > 1e-3  # the adapter does something
    _check(hidden(model, inputs), want, inputs, model)
    if float64:
        model64 = tiny_model(arch).double()
        wrap(model64).load(view)
        _check(hidden(model64, inputs), hidden(ref.double(), inputs), inputs, model)
    _same_as_init(tmp_path / "repo", manifest, arch, tmp_path)


@pytest.mark.parametrize("case", list(PEFT_CASES))
def test_a_derived_peft_view_computes_what_peft_computes(case, tmp_path):
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    arch, kind, layers = PEFT_CASES[case]
    ref = _peft_dir(peft, arch, kind, layers, tmp_path / "repo")
    manifest = derive_dir(tmp_path / "repo", base_config_of(tiny_model(arch)))
    assert manifest.adapter.method == kind and manifest.sources[0].type == "hf"
    if layers:
        assert list(manifest.adapter.config["leave_out"]) == [i for i in range(2) if i not in layers]
    _attach_and_compare(arch, manifest, ref, tmp_path)


def test_a_peft_head_is_derived_from_the_task_type_and_attaches(tmp_path):
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_config(tiny_config("bert", num_labels=3)).eval()
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"], task_type="SEQ_CLS")
    ref = peft.get_peft_model(base, cfg)
    _randomize(ref, ("lora_", "classifier"))
    ref.eval().save_pretrained(tmp_path / "repo")
    manifest = derive_dir(tmp_path / "repo", base_config_of(base))
    assert manifest.head.type == "classification" and manifest.task.type == "text-classification"
    view = make_view(tmp_path / "repo", tmp_path / "view", manifest)
    torch.manual_seed(0)
    ours = AutoModelForSequenceClassification.from_config(tiny_config("bert", num_labels=3)).eval()
    wrap(ours).load(view)
    inputs = inputs_for("bert")
    with torch.no_grad():
        assert_close(ours(**inputs).logits, ref(**inputs).logits, terms=model_terms(ours))


def test_a_manifest_that_misstates_its_payload_is_refused(tmp_path):
    """The runtime reads the foreign payload and holds it to the manifest: a changed rank, a changed file."""
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    _peft_dir(peft, "bert", "lora", None, tmp_path / "repo")
    manifest = derive_dir(tmp_path / "repo", base_config_of(tiny_model("bert")))
    doc = manifest_to_dict(manifest)
    doc["adapter"]["config"]["r"] = 8
    view = make_view(tmp_path / "repo", tmp_path / "view", parse_manifest(doc))
    with pytest.raises(IntegrityError, match="hold a lora adapter"):
        wrap(tiny_model("bert")).load(view)
    good = make_view(tmp_path / "repo", tmp_path / "good", manifest)
    config = json.loads((good / "adapter_config.json").read_text())
    (good / "adapter_config.json").write_text(json.dumps({**config, "lora_alpha": 16}))
    with pytest.raises(IntegrityError, match="adapter_config.json"):
        wrap(tiny_model("bert")).load(good)


def test_a_derived_view_on_another_base_fails_as_a_base_mismatch(tmp_path):
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    _peft_dir(peft, "bert", "lora", None, tmp_path / "repo")
    view = make_view(tmp_path / "repo", tmp_path / "view",
                     derive_dir(tmp_path / "repo", base_config_of(tiny_model("bert"))))
    with pytest.raises(IncompatibleBaseError, match="hidden_size=32"):
        wrap(tiny_model("bert", hidden_size=48, intermediate_size=40)).load(view)
    model = tiny_model("bert")
    doc = manifest_to_dict(load_manifest(view))
    doc["base_model"]["fingerprint"] = "sha256:" + "0" * 64  # a fingerprint, once stated, is checked
    stated = make_view(tmp_path / "repo", tmp_path / "stated", parse_manifest(doc))
    with pytest.raises(IncompatibleBaseError, match="fingerprint"):
        wrap(model).load(stated)
    doc["base_model"]["fingerprint"] = wrap(model).fingerprint
    assert wrap(model).load(make_view(tmp_path / "repo", tmp_path / "right", parse_manifest(doc)))


@pytest.mark.parametrize(("key", "value"), [("layer_replication", [[0, 2]]), ("trainable_token_indices", [3]),
                                            ("lora_bias", True)])
def test_peft_options_that_change_what_the_adapter_computes_are_refused_by_name(key, value, tmp_path):
    """Read silently before (the tensors alone were used): a layer_replication or trained token rows changed the
    model PEFT runs, so the same directory computed something else here."""
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    _peft_dir(peft, "bert", "lora", None, tmp_path / "repo")
    config = json.loads((tmp_path / "repo" / "adapter_config.json").read_text())
    (tmp_path / "repo" / "adapter_config.json").write_text(json.dumps({**config, key: value}))
    with pytest.raises(SchemaError, match=f"/{key}"):
        wrap(tiny_model("bert")).load(tmp_path / "repo")
    with pytest.raises(SchemaError, match=f"/{key}"):
        derive_dir(tmp_path / "repo", base_config_of(tiny_model("bert")))


LIBRARY_CASES = {"seq_bn": ("bert", "seq_bn"), "par_bn": ("gpt2", "par_bn"), "compacter": ("bert", "compacter"),
                 "lora": ("llama", "lora"), "ia3": ("bert", "ia3"), "prefix": ("bert", "prefix")}


@pytest.mark.parametrize("case", list(LIBRARY_CASES))
def test_a_derived_adapters_library_view_computes_what_the_library_computes(case, tmp_path):
    adapters = pytest.importorskip("adapters", reason="the adapters library is not installed in this environment")
    from transformers import AutoModel

    arch, config = LIBRARY_CASES[case]
    if config == "prefix":  # the library's prefix pool is right only on its eager path (test_parity_live.py)
        torch.manual_seed(0)
        ref = AutoModel.from_config(tiny_config(arch), attn_implementation="eager").eval()
        adapters.init(ref)
        body = ref
    else:
        ref = adapters.AutoAdapterModel.from_config(tiny_model(arch).config)
        ref.base_model.load_state_dict(tiny_model(arch).state_dict(), strict=False)
        body = ref.base_model
    cfg = {"compacter": adapters.CompacterConfig(reduction_factor=4),
           "prefix": adapters.PrefixTuningConfig(prefix_length=4, bottleneck_size=8)}.get(config, config)
    ref.add_adapter("a", config=cfg)
    _randomize(ref, (".a.", "shared_parameters"))
    ref.eval().set_active_adapters("a")
    ref.save_adapter(str(tmp_path / "repo"), "a", use_safetensors=config != "prefix")
    # the flat prefix form is stored in fp32 (one rounding of each value): no float64 proof for it
    _attach_and_compare(arch, derive_dir(tmp_path / "repo", base_config_of(tiny_model(arch))), body, tmp_path,
                        float64=config != "prefix")


def test_a_derived_view_written_again_reads_the_same(tmp_path):
    """write_manifest round trip: the derived manifest is a plain manifest (validated, canonical)."""
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    _peft_dir(peft, "llama", "lora", None, tmp_path / "repo")
    manifest = derive_dir(tmp_path / "repo", base_config_of(tiny_model("llama")))
    path = write_manifest(manifest, tmp_path / "adapterhub.json")
    assert parse_manifest(json.loads(path.read_text())) == manifest


FAMILY_CASES = [(t, {}) for t in SUPPORTED_MODEL_TYPES] + [("t5", {"feed_forward_proj": "gated-gelu"}),
                                                             ("phi3", {"num_key_value_heads": 2})]


@pytest.mark.parametrize(("model_type", "overrides"), FAMILY_CASES,
                         ids=[t + ("-" + "-".join(map(str, o.values())) if o else "") for t, o in FAMILY_CASES])
@pytest.mark.parametrize("layers", ["all", "second"])
def test_every_family_is_derived_as_the_runtime_reads_the_saved_tensors(model_type, overrides, layers, tmp_path):
    """Derivation places PEFT targets from the base's ``config.json`` and the family table alone (no torch); the
    runtime reads the saved tensors' names against the same table bound to the real module. For every model type
    in the table, a PEFT LoRA on every projection (of every layer, or of each stack's second layer only: global
    layer numbering) is derived to the targets and ``leave_out`` the runtime's PEFT reader finds."""
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    from transformers import AutoModel

    torch.manual_seed(0)
    model = AutoModel.from_config(case_config(model_type, **overrides)).eval()
    binding = bind(model)
    fam = binding.family
    assert not model.base_model_prefix or f"{model.base_model_prefix}." in fam.task_prefixes
    stack_of = {layer.index: layer.index - (binding.num_hidden_layers if layer.decoder else 0)
                for layer in binding.layers}
    paths = sorted(p for p, ref in slot_index(binding).items() if layers == "all" or stack_of[ref.layer.index] == 1)
    cfg = peft.LoraConfig(r=2, lora_alpha=4, target_modules=paths, fan_in_fan_out=fam.conv1d)
    peft.get_peft_model(model, cfg).save_pretrained(tmp_path / "repo")
    manifest = derive_dir(tmp_path / "repo", base_config_of(model))
    read = read_adapter_dir(tmp_path / "repo", binding)
    derived = manifest.adapter.config
    assert set(derived["target_modules"]) == set(read.config["target_modules"])
    assert set(derived.stated().get("leave_out", ())) == set(read.config.get("leave_out") or ())
    if layers == "all":
        # PEFT adapts a fused projection whole: its whole-module slot (qkv), never its slices
        assert set(derived["target_modules"]) == {s.key.removeprefix("cross_") for ref in slot_index(binding).values()
                                                  for s in module_slots(ref.slots)}
    else:
        assert set(derived["leave_out"]) == {i for i, local in stack_of.items() if local != 1}


def test_a_derived_fusion_repo_loads_over_its_derived_member_folders(tmp_path):
    """An ``adapters`` repo saved with its members beside the fusion folder (the committed reference fixture:
    ``a/``, ``b/``, ``fusion/``): every folder is derived on its own, the fusion's members are the derived
    names of its sibling folders at the same commit, and the three views compute what the library did."""
    import transformers
    from safetensors.torch import load_file

    case = REFERENCE / "adapters" / "bert" / "fuse_seq_bn"
    meta = json.loads((case / "case.json").read_text())
    base_dir = REFERENCE / meta["base"]
    base_config = json.loads((base_dir / "config.json").read_text())
    model = getattr(transformers, meta["base_class"]).from_pretrained(str(base_dir), attn_implementation="eager").eval()
    handle = wrap(model)
    loaded = {}
    for folder in ("a", "b", "fusion"):
        manifest = derive_manifest(config_files(case / "safetensors" / folder), listing(case / "safetensors" / folder),
                                   HubOrigin("someone/fused", COMMIT, folder), base_config)
        loaded[folder] = handle.load(make_view(case / "safetensors" / folder, tmp_path / folder, manifest),
                                     activate=False)
    fusion = handle.attached[loaded["fusion"]]
    assert fusion.config.members == (loaded["a"], loaded["b"]) == ("someone-fused-a", "someone-fused-b")
    handle.activate(Fuse(loaded["a"], loaded["b"], fusion=loaded["fusion"]))
    io = load_file(str(case / "io.safetensors"))
    with torch.no_grad():
        got = model(input_ids=io["input_ids"], attention_mask=io["attention_mask"]).last_hidden_state
    assert_close(got, io["expected"], terms=model_terms(model), mask=io["attention_mask"].bool())
