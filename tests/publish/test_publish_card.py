"""The model card: YAML front matter the Hub understands, proved with huggingface_hub's own parsers."""

from __future__ import annotations

import yaml
from huggingface_hub.repocard import ModelCard, metadata_load
from huggingface_hub.repocard_data import model_index_to_eval_results
from support.manifest_samples import manifest

from adapterhub.manifest import parse_manifest
from adapterhub.publish import card_metadata, render_card
from adapterhub.publish.card import GENERATED_MARK, merge_card


def _sample(**overrides):
    doc = manifest(**overrides)
    doc["metrics"] = [
        {"dataset": "glue/sst2", "split": "validation", "name": "accuracy", "value": 0.87},
        {"dataset": "glue/sst2", "split": "validation", "name": "f1", "value": 0.85},
        {"dataset": "imdb", "split": "test", "name": "accuracy", "value": 0.81},
    ]
    doc["task"]["language"] = "en"
    return parse_manifest(doc)


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_front_matter_keys_and_model_index_shape() -> None:
    m = _sample()
    meta = _front_matter(render_card(m))
    assert meta["library_name"] == "adapterhub"
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["license"] == "apache-2.0"
    assert meta["datasets"] == ["glue/sst2"] and meta["language"] == ["en"]
    assert {"adapterhub", "bottleneck", "houlsby", "text-classification"} <= set(meta["tags"])
    assert meta["pipeline_tag"] == "text-classification"
    (entry,) = meta["model-index"]
    assert entry["name"] == "sst2-houlsby"
    by_dataset = {r["dataset"]["type"]: r for r in entry["results"]}
    assert set(by_dataset) == {"glue/sst2", "imdb"}
    sst = by_dataset["glue/sst2"]
    assert sst["task"] == {"type": "text-classification", "name": "sst2"}
    assert sst["dataset"]["split"] == "validation"
    assert [(x["type"], x["value"]) for x in sst["metrics"]] == [("accuracy", 0.87), ("f1", 0.85)]
    assert meta == card_metadata(m)


def test_huggingface_hub_parses_the_card(tmp_path) -> None:
    """ModelCard, metadata_load and model_index_to_eval_results (hub 0.36 and 2.x) accept our card."""
    m = _sample()
    text = render_card(m)
    card = ModelCard(text)
    assert card.data.library_name == "adapterhub"
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert card.data.license == "apache-2.0"
    assert card.data.model_name == "sst2-houlsby"
    results = {(r.dataset_type, r.dataset_split, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert results == {("glue/sst2", "validation", "accuracy"): 0.87, ("glue/sst2", "validation", "f1"): 0.85,
                       ("imdb", "test", "accuracy"): 0.81}
    assert all(r.task_type == "text-classification" for r in card.data.eval_results)
    path = tmp_path / "README.md"
    path.write_text(text, encoding="utf-8")
    loaded = metadata_load(path)
    name, evals = model_index_to_eval_results(loaded["model-index"])
    assert name == "sst2-houlsby" and len(evals) == 3
    # Round trip through the client's own serialiser keeps the evaluation results.
    again = ModelCard(card.content)
    assert len(again.data.eval_results) == 3


def test_body_shows_pull_and_load_and_every_file_hash() -> None:
    m = _sample()
    text = render_card(m, index_hint="https://example.org/index/")
    assert GENERATED_MARK in text
    assert 'adapterhub pull "sst2-houlsby==1.0.0" --index https://example.org/index/' in text
    assert "AutoModelForSequenceClassification.from_pretrained('sentence-transformers/all-MiniLM-L6-v2', " \
           f"revision={m.base_model.revision!r})" in text
    assert "ah.load(pulled.path)" in text
    for f in m.files:
        assert f.sha256 in text
    assert m.base_model.fingerprint in text


def test_no_metrics_no_model_index_and_unknown_base_left_out() -> None:
    doc = manifest(metrics=[])
    doc["base_model"]["id"] = "unknown"
    meta = _front_matter(render_card(parse_manifest(doc)))
    assert "model-index" not in meta and "base_model" not in meta
    assert ModelCard(render_card(parse_manifest(doc))).data.eval_results is None


def test_licenses_the_hub_does_not_list_become_other_with_a_name() -> None:
    assert card_metadata(parse_manifest(manifest(license="Apache-2.0")))["license"] == "apache-2.0"
    meta = card_metadata(parse_manifest(manifest(license="MIT OR Apache-2.0")))
    assert meta["license"] == "other" and meta["license_name"] == "mit-or-apache-2.0"
    assert card_metadata(parse_manifest(manifest(license="NOASSERTION")))["license"] == "unknown"


def test_a_hand_written_readme_keeps_its_body_and_gets_our_metadata() -> None:
    m = _sample()
    mine = "---\nlicense: mit\nthumbnail: x.png\n---\n# My notes\n\nHand-written.\n"
    merged = merge_card(mine, m)
    meta = _front_matter(merged)
    assert meta["thumbnail"] == "x.png" and meta["license"] == "apache-2.0" and meta["library_name"] == "adapterhub"
    assert merged.endswith("# My notes\n\nHand-written.\n")
    assert GENERATED_MARK not in merged
    # A card we generated is regenerated whole.
    assert merge_card(render_card(m), m) == render_card(m)
