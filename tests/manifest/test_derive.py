"""Deriving a manifest from a Hub repo's own config files and file listing (no torch, no model, no network)."""

from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
from types import MappingProxyType, SimpleNamespace

import pytest
from support.doc_examples import run_doc_examples
from support.manifest_samples import VALID_MANIFEST
from support.paths import REPO

from adapterhub import families
from adapterhub.errors import IntegrityError, NotFoundError, SchemaError
from adapterhub.families import Family, Shape, Slot, Trait
from adapterhub.manifest import FileEntry, manifest_to_dict, parse_manifest
from adapterhub.manifest.derive import (
    HubOrigin,
    base_reference,
    derive_manifest,
    derived_name,
    derived_version,
)

COMMIT = "1234567890abcdef1234567890abcdef12345678"
BASE_REV = "fedcba0987654321fedcba0987654321fedcba09"
SHA = "ab" * 32
BERT = {"model_type": "bert", "hidden_size": 64, "num_hidden_layers": 4, "intermediate_size": 128}
GPT2 = {"model_type": "gpt2", "n_embd": 64, "n_layer": 2}
T5 = {"model_type": "t5", "d_model": 64, "num_layers": 2, "num_decoder_layers": 3, "is_encoder_decoder": True,
      "feed_forward_proj": "gated-gelu"}
PEFT_FILES = [FileEntry("adapter_config.json", 700, SHA), FileEntry("adapter_model.safetensors", 9000, SHA),
              FileEntry("README.md", 50, SHA)]


def lora(**overrides):
    return {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["query", "value"],
            "base_model_name_or_path": "google-bert/bert-base-uncased", "task_type": None, **overrides}


def derive(cfg, base=None, files=PEFT_FILES, origin=None, **extra):
    return derive_manifest({"adapter_config.json": cfg, **extra}, files,
                           origin or HubOrigin("SomeOrg/My_LoRA", COMMIT), BERT if base is None else base)


def problem(exc_info) -> str:
    return exc_info.value.problems[0].pointer


def test_a_peft_lora_repo_becomes_a_manifest_with_everything_the_repo_says():
    card = {"license": "apache-2.0", "pipeline_tag": "text-classification", "datasets": ["glue"], "language": "en"}
    m = derive(lora(lora_dropout=0.1, use_rslora=True, revision=BASE_REV, task_type="SEQ_CLS",
                    modules_to_save=["classifier"]),
               origin=HubOrigin("SomeOrg/My_LoRA", COMMIT, subfolder="runs/best", card_data=card))
    assert (m.name, m.version) == ("someorg-my-lora-runs-best", "0+g1234567890ab")
    assert m.adapter.method == "lora"
    assert m.adapter.config.stated() == {"r": 8, "alpha": 16.0, "dropout": 0.1, "target_modules": ("q", "v"),
                                         "use_rslora": True}
    assert (m.base_model.id, m.base_model.revision, m.base_model.hidden_size, m.base_model.num_hidden_layers) == \
        ("google-bert/bert-base-uncased", BASE_REV, 64, 4)
    assert m.head.type == "classification" and m.task.type == "text-classification"
    assert (m.task.dataset, m.task.language, m.license, m.authors) == ("glue", "en", "apache-2.0", ("SomeOrg",))
    assert {f.path: f.role for f in m.files} == {"README.md": "card", "adapter_config.json": "config",
                                                 "adapter_model.safetensors": "weights"}
    src = m.sources[0]
    assert (src.type, src.repo_id, src.revision, src.subfolder) == ("hf", "SomeOrg/My_LoRA", COMMIT, "runs/best")
    assert m.extensions["x-adapterhub-derived"] == {"from": "hf", "layout": "peft"}
    assert parse_manifest(manifest_to_dict(m)) == m  # a plain, valid manifest


def test_name_and_version_are_stable_and_two_commits_are_two_versions():
    a, b = HubOrigin("org/repo", COMMIT), HubOrigin("org/repo", "f" * 40)
    assert derived_name(a) == derived_name(b) == "org-repo"
    assert derived_version(a) != derived_version(b)
    long_a = HubOrigin("org/" + "x" * 90, COMMIT)
    long_b = HubOrigin("org/" + "x" * 91, COMMIT)
    assert len(derived_name(long_a)) <= 64 and derived_name(long_a) != derived_name(long_b)
    parse_manifest({**copy.deepcopy(VALID_MANIFEST), "name": derived_name(long_a), "version": derived_version(a)})


@pytest.mark.parametrize(("targets", "extra", "want", "leave_out"), [
    (["dense"], {"exclude_modules": ["pooler.dense"]}, ("o", "ffn_in", "ffn_out"), None),
    (r".*\.(query|value)", {}, ("q", "v"), None),
    (r".*encoder\.layer\.[23]\.attention\.self\.(query|key)", {}, ("q", "k"), (0, 1)),
    (["query"], {"layers_to_transform": 1}, ("q",), (0, 2, 3)),
    (["query", "value"], {"layers_to_transform": [0, 3], "layers_pattern": "layer"}, ("q", "v"), (1, 2)),
    (["bert.encoder.layer.0.attention.self.query", "bert.encoder.layer.1.attention.self.query"], {}, ("q",), (2, 3)),
])
def test_peft_targets_are_placed_as_peft_matches_module_names(targets, extra, want, leave_out):
    m = derive(lora(target_modules=targets, **extra))
    assert m.adapter.config["target_modules"] == want
    assert m.adapter.config.stated().get("leave_out") == leave_out


def test_fused_and_encoder_decoder_projections():
    gpt2 = derive(lora(target_modules=["c_attn", "c_fc"]), base=GPT2)
    assert gpt2.adapter.config["target_modules"] == ("qkv", "ffn_in")  # PEFT adapts the fused c_attn whole
    t5 = derive({"peft_type": "IA3", "target_modules": ["k", "v", "wo", "wi_0"], "feedforward_modules": ["wo"]},
                base=T5)
    assert t5.adapter.method == "ia3" and t5.base_model.num_decoder_layers == 3
    assert t5.adapter.config.stated() == {"target_modules": ("k", "v", "ffn_gate", "ffn_out"),
                                          "feedforward_modules": ("ffn_out",)}


CLIP = {"model_type": "clip", "projection_dim": 16, "text_config": {"hidden_size": 32, "num_hidden_layers": 2},
        "vision_config": {"hidden_size": 48, "num_hidden_layers": 3}}


def test_two_tower_clip_numbers_text_then_vision_layers():
    """CLIPModel's config.json states each tower's size in text_config/vision_config: the base has both towers'
    layers (text 0-1, vision 2-4) and the text width; PEFT's layers_to_transform counts per tower."""
    m = derive(lora(target_modules=["q_proj", "v_proj"], layers_to_transform=[1]), base=CLIP)
    assert (m.base_model.num_hidden_layers, m.base_model.hidden_size) == (5, 32)
    assert m.adapter.config["target_modules"] == ("q", "v")
    assert m.adapter.config.stated()["leave_out"] == (0, 2, 4)
    vision = derive(lora(target_modules=r"vision_model\.encoder\.layers\.\d+\.self_attn\.q_proj"), base=CLIP)
    assert vision.adapter.config.stated()["leave_out"] == (0, 1)
    with pytest.raises(SchemaError):  # no tower sizes: nothing to number the layers by
        derive(lora(target_modules=["q_proj"]), base={"model_type": "clip", "projection_dim": 16})


@pytest.mark.parametrize(("base", "pattern", "want"), [
    ({"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 2}, r"model\.layers\.\d+\.self_attn\.(q|v)_proj",
     ("q", "v")),
    ({"model_type": "xlm-roberta", "hidden_size": 8, "num_hidden_layers": 2}, r"roberta\..*\.(key|value)", ("k", "v")),
    (GPT2, r"transformer\.h\.\d+\.mlp\.c_fc", ("ffn_in",)),
])
def test_a_regular_expression_matches_the_task_models_full_module_names(base, pattern, want):
    assert derive(lora(target_modules=pattern), base=base).adapter.config["target_modules"] == want


LLAMA = {"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 3}


@pytest.mark.parametrize(("cfg", "want", "leave_out"), [
    (lora(target_modules="all-linear"), ("q", "k", "v", "o", "ffn_in", "ffn_gate", "ffn_out"), ()),
    (lora(target_modules="All-Linear", task_type="CAUSAL_LM", exclude_modules=["o_proj", "mlp.up_proj"]),
     ("q", "k", "v", "ffn_gate", "ffn_out"), ()),
    (lora(target_modules=["q_proj", "v_proj"], exclude_modules=r".*layers\.[02]\..*"), ("q", "v"), (0, 2)),
    (lora(target_modules=["q_proj", "v_proj"], exclude_modules=["v_proj"]), ("q",), ()),
])
def test_all_linear_and_exclude_modules_place_as_peft_resolves_them(cfg, want, leave_out):
    """PEFT resolves ``all-linear`` (every Linear but the LM head) and ``exclude_modules`` (list: equal or suffix;
    string: full regular-expression match) against the model; on a family whose backbone has no other Linear the
    placement is told by config.json alone."""
    config = derive(cfg, base=LLAMA).adapter.config
    assert config["target_modules"] == want and tuple(config.stated().get("leave_out", ())) == leave_out


def test_dora_and_loha():
    assert derive(lora(use_dora=True)).adapter.method == "dora"
    loha = derive({"peft_type": "LOHA", "r": 4, "alpha": 2, "rank_dropout": 0.1, "target_modules": ["query"]})
    assert loha.adapter.method == "loha"
    assert loha.adapter.config.stated() == {"r": 4, "alpha": 2.0, "rank_dropout": 0.1, "target_modules": ("q",)}


@pytest.mark.parametrize(("cfg", "pointer", "words"), [
    (lora(peft_type="LOKR"), "/peft_type", "'LOKR' is not supported"),
    (["not", "an", "object"], "/", "not an object"),
    (lora(rank_pattern={"query": 0}), "/rank_pattern", "is not an integer in 1"),
    (lora(alpha_pattern={"query": "x"}), "/alpha_pattern", "not a finite number"),
    (lora(rank_pattern={"(unclosed": 2}), "/rank_pattern", "not a regular expression"),
    (lora(rank_pattern={r"bert\.encoder\.layer\.0\.attention\.self\.query": 2}), "/rank_pattern", "model class"),
    ({"peft_type": "LOHA", "r": 4, "target_modules": ["query"], "rank_pattern": {"query": 2}}, "/rank_pattern",
     "for LORA"),
    (lora(layer_replication=[[0, 2]]), "/layer_replication", "duplicates base layers"),
    (lora(bias="all"), "/bias", "bias='all'"),
    (lora(target_modules=["word_embeddings", "query"]), "/target_modules", "'word_embeddings'"),
    (lora(target_modules="all-linear"), "/target_modules", "also matches pooler.dense"),
    (lora(target_modules="all-linear", task_type="TOKEN_CLS"), "/target_modules", "task head"),
    (lora(target_modules=None), "/target_modules", "None"),
    (lora(target_modules="(unclosed"), "/target_modules", "not a regular expression"),
    (lora(target_modules=["encoder.layer.0.attention.self.query", "encoder.layer.1.attention.self.value"]),
     "/target_modules", "different projections in different layers"),
    (lora(exclude_modules=["query", "value"]), "/target_modules", "matches none"),
    (lora(exclude_modules="(unclosed"), "/exclude_modules", "not a regular expression"),
    (lora(modules_to_save=["classifier"]), "/modules_to_save", "task_type None"),
    ({"peft_type": "IA3", "target_modules": ["query"], "feedforward_modules": ".*"}, "/feedforward_modules", "regular"),
])
def test_what_cannot_be_described_is_refused_naming_the_key(cfg, pointer, words):
    with pytest.raises(SchemaError) as err:
        derive(cfg)
    assert problem(err) == pointer and words in str(err.value)


def test_an_unsupported_family_and_a_partial_fused_or_cross_target_are_refused():
    with pytest.raises(SchemaError, match="'bloom' has no entry"):
        derive(lora(), base={"model_type": "bloom", "hidden_size": 8, "n_layer": 2})
    with pytest.raises(SchemaError, match="only some of the 'q' projections"):
        derive(lora(target_modules=["SelfAttention.q"]), base=T5)  # the decoder's cross-attention q is left out


def _toy_slots(shape):
    attn = "attn.q_proj" if shape.has("v5_names") else "attn.query"
    return {"q": (Slot("q", attn),), "ffn_in": (Slot("ffn_in", "mlp.up"),)}


TOY = Family("toy", ("toy",), ("blocks", "model.blocks"), lambda shape: {}, _toy_slots,
             traits=(Trait("v5_names", "attn.q_proj"),), task_prefixes=("toy.",),
             library_lora_locations=MappingProxyType({"intermediate": "ffn_in", "output": "ffn_in"}))


def test_a_family_added_to_the_table_is_derived_from_that_entry_alone(monkeypatch):
    """Derivation reads the one family table: an entry added there (with a layout the installed transformers
    version decides, and alternative stack paths) is derivable with no other change; either layout's names place."""
    base = {"model_type": "toy", "hidden_size": 8, "num_hidden_layers": 3}
    with pytest.raises(SchemaError, match="'toy' has no entry"):
        derive(lora(target_modules=["up"]), base=base)
    monkeypatch.setattr(families, "FAMILIES", (*families.FAMILIES, TOY))
    assert derive(lora(target_modules=["query", "up"]), base=base).adapter.config["target_modules"] == ("q", "ffn_in")
    assert derive(lora(target_modules=["q_proj"]), base=base).adapter.config["target_modules"] == ("q",)
    regex = derive(lora(target_modules=r"toy\.model\.blocks\.[12]\.attn\.q_proj"), base=base)
    assert regex.adapter.config.stated()["leave_out"] == (0,)
    with pytest.raises(SchemaError, match="'wo' is not a projection"):
        derive(lora(target_modules=["q_proj", "wo"]), base=base)
    library = derive({"config": {"architecture": "lora", "r": 4, "alpha": 4, "attn_matrices": [], "output_lora": True},
                      "model_type": "toy", "version": "adapters.1.3.0", "name": "a"},
                     base=base, files=[FileEntry("adapter_config.json", 10, SHA), FileEntry("adapter.safetensors", 10, SHA)])
    assert library.adapter.config["target_modules"] == ("ffn_in",)


def test_a_trait_is_read_off_a_layer_by_attribute_path_and_off_a_config_by_its_rule():
    gated = Trait("gated", "layer.-1.ff.wi_1", lambda config: config.get("gated", False))
    layer = SimpleNamespace(layer=[SimpleNamespace(), SimpleNamespace(ff=SimpleNamespace(wi_1=object()))])
    assert gated.holds_on(layer) and not gated.holds_on(SimpleNamespace(layer=[]))
    assert not Trait("pre_ln", "do_layer_norm_before").holds_on(SimpleNamespace(do_layer_norm_before=False))
    thirds = Trait("qkv_thirds", "attn.groups", equals=1)
    assert thirds.holds_on(SimpleNamespace(attn=SimpleNamespace(groups=1)))
    assert not thirds.holds_on(SimpleNamespace(attn=SimpleNamespace(groups=2)))
    fam = dataclasses.replace(TOY, traits=(gated, TOY.traits[0]))
    assert fam.trait_sets({"gated": True}) == (frozenset({"gated"}), frozenset({"gated", "v5_names"}))
    assert fam.shape_of(layer, decoder=True) == Shape(True, frozenset({"gated"}))


def test_an_encoder_decoder_config_without_num_hidden_layers_counts_its_encoder_layers():
    """transformers 5 saves BART/mBART configs with encoder_layers/decoder_layers only (num_hidden_layers is an
    alias there): refused before ("needs ... a layer count")."""
    bart = {"model_type": "bart", "d_model": 32, "encoder_layers": 3, "decoder_layers": 2, "is_encoder_decoder": True}
    m = derive(lora(target_modules=["q_proj", "v_proj"], layers_to_transform=[0]), base=bart)
    assert (m.base_model.num_hidden_layers, m.base_model.num_decoder_layers) == (3, 2)
    assert m.adapter.config.stated()["leave_out"] == (1, 2, 4)


def test_the_library_layout_is_derived_and_its_unsupported_kinds_refused():
    files = [FileEntry("adapter_config.json", 10, SHA), FileEntry("adapter.safetensors", 10, SHA)]
    meta = {"config": {"architecture": "lora", "r": 4, "alpha": 4, "attn_matrices": ["q", "v"], "output_lora": True},
            "model_type": "bert", "version": "adapters.1.3.0", "name": "a", "model_name": "org/base"}
    m = derive(meta, files=files)
    assert m.adapter.method == "lora" and m.adapter.config["target_modules"] == ("q", "v", "ffn_out")
    assert m.base_model.id == "org/base" and m.extensions["x-adapterhub-derived"]["layout"] == "adapters-library"
    with pytest.raises(SchemaError) as err:
        derive({**meta, "config": {"architecture": "union"}}, files=files)
    assert problem(err) == "/config/architecture"
    with pytest.raises(SchemaError) as err:
        derive({**meta, "model_type": "gpt2"}, files=files)
    assert problem(err) == "/model_type"
    with pytest.raises(SchemaError, match="inv_adapter"):
        derive({**meta, "config": {"mh_adapter": True, "output_adapter": True, "reduction_factor": 16,
                                   "non_linearity": "relu", "inv_adapter": "nice"}}, files=files)


def test_missing_pieces_are_typed_and_say_what_to_do():
    with pytest.raises(NotFoundError, match="google-bert/bert-base-uncased") as err:
        derive_manifest({"adapter_config.json": lora()}, PEFT_FILES, HubOrigin("o/r", COMMIT), None)
    assert "base_config" in err.value.hint
    with pytest.raises(NotFoundError, match="no weights file"):
        derive(lora(), files=[FileEntry("adapter_config.json", 10, SHA)])
    with pytest.raises(NotFoundError, match="neither adapterhub.json nor adapter_config.json"):
        derive_manifest({}, PEFT_FILES, HubOrigin("o/r", COMMIT), BERT)
    with pytest.raises(SchemaError, match="hidden size"):
        derive(lora(), base={"model_type": "bert"})
    with pytest.raises(SchemaError, match="40-hex"):
        derive(lora(), origin=HubOrigin("o/r", "main"))
    with pytest.raises(NotFoundError, match="no fusion weights"):
        derive_manifest({"adapter_fusion_config.json": {"adapter_names": ["a", "b"]}}, PEFT_FILES,
                        HubOrigin("o/r", COMMIT), BERT)


def test_base_reference_reads_the_config_then_the_card():
    origin = HubOrigin("o/r", COMMIT, card_data={"base_model": "org/from-card"})
    assert base_reference({"adapter_config.json": lora(revision=BASE_REV)}, origin) == \
        ("google-bert/bert-base-uncased", BASE_REV)
    assert base_reference({"adapter_config.json": lora(base_model_name_or_path="/home/me/bert", revision="main")},
                          origin) == ("org/from-card", None)


def _release(files):
    doc = copy.deepcopy(VALID_MANIFEST)
    doc["files"] = [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files]
    return doc


def test_a_repo_with_its_own_manifest_is_described_by_it_once_the_files_agree():
    payload = [FileEntry("adapter.safetensors", 1234, SHA), FileEntry("head.safetensors", 10, SHA)]
    doc = _release(payload)
    repo = [*payload, FileEntry("adapterhub.json", 999, SHA), FileEntry("README.md", 5, SHA),
            FileEntry(".gitattributes", 5, SHA)]
    assert derive_manifest({"adapterhub.json": doc}, repo, HubOrigin("o/r", COMMIT)) == parse_manifest(doc)
    with_card = _release([*payload, FileEntry("README.md", 5, SHA)])  # a manifest that lists its card checks it
    assert derive_manifest({"adapterhub.json": with_card}, repo, HubOrigin("o/r", COMMIT)).file("README.md")
    bad = [(FileEntry("adapter.safetensors", 1234, "cd" * 32), "sha256"),
           (FileEntry("adapter.safetensors", 1235, SHA), "1235 bytes")]
    for changed, words in bad:
        with pytest.raises(IntegrityError, match=words):
            derive_manifest({"adapterhub.json": doc}, [changed, payload[1]], HubOrigin("o/r", COMMIT))
    with pytest.raises(IntegrityError, match="does not hold"):
        derive_manifest({"adapterhub.json": doc}, payload[:1], HubOrigin("o/r", COMMIT))
    with pytest.raises(IntegrityError, match="not in its adapterhub.json"):
        derive_manifest({"adapterhub.json": doc}, [*payload, FileEntry("extra.bin", 1, SHA)], HubOrigin("o/r", COMMIT))


def test_deriving_imports_no_torch():
    code = ("import sys, adapterhub.manifest.derive; "
            "assert not {'torch', 'transformers'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_a_fusion_folder_depends_on_its_sibling_member_folders_at_the_same_commit():
    meta = {"adapter_names": ["sst2", "mnli"], "config": {"key": True, "query": True, "value": False,
                                                          "dropout_prob": 0.1, "temperature": False},
            "model_type": "bert", "hidden_size": 64, "model_name": "org/base", "name": "sst2,mnli"}
    files = [FileEntry("adapter_fusion_config.json", 10, SHA), FileEntry("model_adapter_fusion.safetensors", 10, SHA)]
    m = derive_manifest({"adapter_fusion_config.json": meta}, files, HubOrigin("o/r", COMMIT, "runs/sst2,mnli"), BERT)
    assert m.adapter.method == "fusion"
    assert m.adapter.config.stated() == {"members": ("o-r-runs-sst2", "o-r-runs-mnli"), "key": True, "query": True,
                                         "value": False, "temperature": False, "dropout_prob": 0.1}
    assert [(d.name, d.spec, d.role) for d in m.dependencies] == [
        ("o-r-runs-sst2", "==0+g1234567890ab", "member"), ("o-r-runs-mnli", "==0+g1234567890ab", "member")]
    assert m.extensions["x-adapterhub-derived"]["members"] == {"o-r-runs-sst2": "runs/sst2", "o-r-runs-mnli": "runs/mnli"}
    assert m.base_model.id == "org/base" and m.sources[0].subfolder == "runs/sst2,mnli"
    member = derive_manifest({"adapter_config.json": {"config": {"mh_adapter": False, "output_adapter": True,
                                                                 "reduction_factor": 16, "non_linearity": "relu"}}},
                             [FileEntry("adapter_config.json", 1, SHA), FileEntry("adapter.safetensors", 1, SHA)],
                             HubOrigin("o/r", COMMIT, "runs/sst2"), BERT)
    assert (member.name, member.version) == ("o-r-runs-sst2", "0+g1234567890ab")  # what the fusion pins
    with pytest.raises(SchemaError) as err:
        derive_manifest({"adapter_fusion_config.json": {**meta, "adapter_names": []}}, files, HubOrigin("o/r", COMMIT),
                        BERT)
    assert problem(err) == "/adapter_names"


def test_the_derived_manifests_docs_run():
    namespace = run_doc_examples("manifest.md", section="Derived manifests (Hub repos without an `adapterhub.json`)")
    assert namespace["m"].adapter.method == "lora"


@pytest.mark.parametrize(("cfg", "base", "want", "leave_out"), [
    # PEFT reads the layer index after layers_pattern; a pattern naming no stack matches nothing (below)
    (lora(target_modules=["q", "v"], layers_to_transform=[0], layers_pattern="block"), T5, ("q", "v"), (1, 3, 4)),
    # counted per stack: encoder block 1 and decoder block 1 (global 3)
    (lora(target_modules=["q", "v"], layers_to_transform=[1]), T5, ("q", "v"), (0, 2, 4)),
    # an empty layers_to_transform filters nothing
    (lora(target_modules=["query"], layers_to_transform=[]), None, ("q",), None),
    # a list of patterns: the first that finds an index decides
    (lora(target_modules=["query"], layers_to_transform=[1], layers_pattern=["layers", "layer"]), None, ("q",),
     (0, 2, 3)),
    # a Linear without a layer index (BERT's pooler.dense) is never adapted under layers_to_transform
    (lora(target_modules=["dense"], layers_to_transform=[0, 1, 2, 3]), None, ("o", "ffn_in", "ffn_out"), None),
])
def test_layers_to_transform_keeps_the_layers_peft_reads_off_module_names(cfg, base, want, leave_out):
    m = derive(cfg, base=base)
    assert (m.adapter.config["target_modules"], m.adapter.config.stated().get("leave_out")) == (want, leave_out)


@pytest.mark.parametrize(("cfg", "base", "words"), [
    (lora(target_modules=["query"], layers_to_transform=[0], layers_pattern="layers"), None,
     "after 'layers' (layers_pattern)"),
    # T5's 'layer' is the sub-layer list inside a block: layer.0 is self-attention, layer.1 cross-attention
    (lora(target_modules=["q", "v"], layers_to_transform=[0], layers_pattern="layer"), T5,
     "only some of the 'q' projections"),
    (lora(target_modules=["query"], layers_pattern="layer"), None, "layers_pattern without layers_to_transform"),
    (lora(target_modules=["query"], layers_to_transform=[0], layers_pattern="(x"), None, "not a regular expression"),
])
def test_layers_pattern_that_places_differently_from_our_layers_is_refused(cfg, base, words):
    with pytest.raises(SchemaError) as err:
        derive(cfg, base=base)
    assert words in str(err.value)


def test_a_listed_full_name_is_adapted_whatever_layers_to_transform_says_and_the_tensors_tell_the_prefix():
    """PEFT adapts a module whose name is listed as it is in every layer; the name is exact only for the model class
    it was saved from (here a bare BertModel), which the tensor names tell."""
    cfg = lora(target_modules=["query", "encoder.layer.3.attention.self.query"], layers_to_transform=[0])
    names = [f"base_model.model.encoder.layer.{i}.attention.self.query.lora_{x}.weight" for i in (0, 3) for x in "AB"]
    m = derive_manifest({"adapter_config.json": cfg}, PEFT_FILES, HubOrigin("o/r", COMMIT), BERT, lambda: names)
    assert m.adapter.config.stated().get("leave_out") == (1, 2)
    task_model = [n.replace("model.encoder", "model.bert.encoder") for n in names if ".0." in n]
    m = derive_manifest({"adapter_config.json": cfg}, PEFT_FILES, HubOrigin("o/r", COMMIT), BERT, lambda: task_model)
    assert m.adapter.config.stated().get("leave_out") == (1, 2, 3)
    with pytest.raises(SchemaError, match="tensor names do not settle"):
        derive(cfg)


LAYER_TENSORS = [f"base_model.model.bert.encoder.layer.{i}.{p}.lora_{x}.weight" for i in range(4)
                 for p in ("attention.output.dense", "intermediate.dense", "output.dense") for x in "AB"]
POOLER_TENSORS = [f"base_model.model.bert.pooler.dense.lora_{x}.weight" for x in "AB"]


@pytest.mark.parametrize("cfg", [lora(target_modules=["dense"]), lora(target_modules=["query", "value", "dense"]),
                                 lora(target_modules=["dense"], use_dora=True, init_lora_weights="gaussian"),
                                 {"peft_type": "IA3", "target_modules": ["dense"], "feedforward_modules": ["dense"]}])
def test_a_target_that_also_matches_the_pooler_is_placed_when_the_file_holds_no_tensors_for_it(cfg):
    """PEFT wraps the pooler with its identity init (LoRA B = 0, IA3 ones): without tensors it computes what the base
    does, so the adapter is the projections' (before: refused for naming the pooler at all)."""
    names = LAYER_TENSORS if cfg["peft_type"] == "LORA" else [n.replace("lora_A", "ia3_l") for n in LAYER_TENSORS]
    m = derive_manifest({"adapter_config.json": cfg}, PEFT_FILES, HubOrigin("o/r", COMMIT), BERT, lambda: names)
    assert set(m.adapter.config["target_modules"]) == {"o", "ffn_in", "ffn_out"} | (
        {"q", "v"} if "query" in cfg["target_modules"] else set())


@pytest.mark.parametrize(("cfg", "names", "pointer", "words"), [
    (lora(target_modules=["dense"]), LAYER_TENSORS + POOLER_TENSORS, "/target_modules",
     "holds trained tensors for pooler.dense"),
    (lora(target_modules=["dense"], init_lora_weights=False), LAYER_TENSORS, "/init_lora_weights", "not the identity"),
    (lora(target_modules=["dense"], init_lora_weights="orthogonal"), LAYER_TENSORS, "/init_lora_weights",
     "not the identity"),
    ({"peft_type": "IA3", "target_modules": ["dense"], "init_ia3_weights": False}, LAYER_TENSORS, "/target_modules",
     "not the identity"),
    (lora(target_modules=["dense"]), None, "/target_modules", "was not given"),
])
def test_a_pooler_target_that_changes_the_pooler_is_refused_naming_why(cfg, names, pointer, words):
    with pytest.raises(SchemaError) as err:
        derive_manifest({"adapter_config.json": cfg}, PEFT_FILES, HubOrigin("o/r", COMMIT), BERT,
                        None if names is None else lambda: names)
    assert problem(err) == pointer and words in str(err.value) and "pooler.dense" in str(err.value)


def test_tensor_names_are_read_only_when_the_config_does_not_settle_the_placement():
    def never():
        raise AssertionError("tensor names read for a config that names only projections")
    m = derive_manifest({"adapter_config.json": lora()}, PEFT_FILES, HubOrigin("o/r", COMMIT), BERT, never)
    assert m.adapter.config["target_modules"] == ("q", "v")
