"""Helpers for the base-model fetch tests: a base repo on the test server, and a machine with no local bases.

The server (``hub_server``/``hub`` fixtures) holds the base; the real ``huggingface_hub`` client downloads
it into a Hugging Face cache of the test's own, found through ``HF_ENDPOINT`` as a user's would be.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import constants

from adapterhub.server.names import parse_repo_ref
from adapterhub.store.base_locator import env_var_for
from support.server_fixtures import HubClient
from support.store_support import put_repo

WORDS = ["good", "bad", "great", "awful", "movie", "film", "a", "the", "is", "boring", "fun"]
LABELS = ["neg", "pos"]


def save_tiny_bert(directory: Path, vocab: Path, seed: int, **shape: int) -> Path:
    """A random BERT of a few KB (hidden 32, 2 layers) and its WordPiece tokenizer over :data:`WORDS`."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, BertTokenizerFast

    torch.manual_seed(seed)
    config = AutoConfig.for_model("bert", **{"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                                             "intermediate_size": 37, **shape}, vocab_size=len(WORDS) + 5,
                                  num_labels=2, max_position_embeddings=64)
    model = AutoModelForSequenceClassification.from_config(config)
    model.save_pretrained(directory)
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(directory)
    return directory


def write_vocab(path: Path) -> Path:
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    return path


def no_local_bases(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *repo_ids: str) -> Path:
    """An empty Hugging Face cache of this test (returned), no bases.json, no ``ADAPTERHUB_BASE_*`` for ``repo_ids``."""
    hf_cache = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hf_cache))
    monkeypatch.setenv("ADAPTERHUB_BASES", str(tmp_path / "no-bases.json"))
    for repo_id in repo_ids:
        monkeypatch.delenv(env_var_for(repo_id), raising=False)
    return hf_cache


def serve_base(hub: HubClient, monkeypatch: pytest.MonkeyPatch, repo_id: str, files: dict[str, bytes], *,
               private: bool = False) -> str:
    """``files`` as repo ``repo_id`` on the test server (the user's ``HF_ENDPOINT``); the commit id."""
    if private:
        ns, name = repo_id.split("/")
        hub.server.storage.create_repo(parse_repo_ref("model", ns, name), private=True)
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    return put_repo(hub.server, repo_id, files)


def model_dir_files(directory: Path) -> dict[str, bytes]:
    """Every file of a saved model directory, by name (what gets uploaded as the base repo)."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def train_tiny_adapter(base_dir: Path, out: Path, repo_id: str, revision: str | None = None) -> Path:
    """A Houlsby adapter with a 2-label head saved on ``base_dir`` (random, non-trivial weights), its manifest
    naming base ``repo_id`` at ``revision`` and the fingerprint of ``base_dir``'s weights."""
    import torch

    from adapterhub.runtime import wrap
    from adapterhub.serve_run import load_classifier

    model, _ = load_classifier(base_dir, 2)
    ah = wrap(model)
    ah.add("tiny-sent", "bottleneck", variant="houlsby", seed=3)
    with torch.no_grad():  # a non-trivial adapter and head, so outputs depend on them
        for p in model.adapterhub_adapters.parameters():
            p.normal_(0, 0.2)
        model.classifier.weight.normal_(0, 1.0)
    ah.save("tiny-sent", out, version="1.0.0", license="apache-2.0",
            task={"type": "text-classification", "name": "sentiment", "labels": LABELS})
    return pin_base(out, repo_id, revision)


def pin_base(adapter: Path, repo_id: str, revision: str | None) -> Path:
    """Rewrite ``adapter``'s manifest to name base ``repo_id`` at ``revision`` (None: no pinned revision)."""
    from adapterhub.manifest.io import load_manifest, manifest_to_dict, parse_manifest, write_manifest

    doc = manifest_to_dict(load_manifest(adapter))
    doc["base_model"]["id"] = repo_id
    doc["base_model"].pop("revision", None)
    if revision is not None:
        doc["base_model"]["revision"] = revision
    doc["sources"] = [{"type": "bundled"}]
    write_manifest(parse_manifest(doc, "adapterhub.json"), adapter / "adapterhub.json")
    return adapter


def index_with(root: Path, adapter: Path) -> Path:
    """A directory registry at ``root`` holding ``adapter``, its bytes in the index's own mirror (no network)."""
    import shutil

    from adapterhub.manifest.io import load_manifest
    from adapterhub.registry.writer import add_release, init_index

    index = init_index(root, "tiny")
    (index / "mirror").mkdir()
    manifest = load_manifest(adapter)
    for f in manifest.files:
        shutil.copyfile(adapter / f.path, index / "mirror" / f.sha256)
    add_release(index, manifest)
    return index
