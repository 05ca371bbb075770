"""The Python example in docs/publishing.md runs as written (real server, real client, real models)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from huggingface_hub import constants
from support.doc_examples import run_doc_examples
from support.publish_support import assert_same_logits


def test_publishing_doc_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "stored_tokens"))
    for name in ("HF_TOKEN", "HF_ENDPOINT", "ADAPTERHUB_OFFLINE", "HF_HUB_OFFLINE", "ADAPTERHUB_INDEX"):
        monkeypatch.delenv(name, raising=False)
    namespace = run_doc_examples("publishing.md")
    x = torch.tensor([[5, 17, 42, 8]])
    with torch.no_grad():  # two model instances (the fresh one loaded from disk): equal up to rounding
        assert_same_logits(namespace["fresh"](input_ids=x).logits, namespace["model"](input_ids=x).logits)
    assert namespace["published"].manifest.sources[0].revision == namespace["published"].commit
    assert namespace["offline"].downloaded > 0 and (tmp_path / "air-gapped-registry" / "mirror").is_dir()
    assert (tmp_path / "my-adapter" / "README.md").read_text().startswith("---\nlibrary_name: adapterhub\n")
    # "Signing adapters": the pulled directory carries the signature every OMS verifier accepted
    assert (namespace["trusted"].path / "model.sig").read_bytes() == (tmp_path / "my-adapter" / "model.sig").read_bytes()
    assert "adapterhub.json" in namespace["signed"].signed.signed_files
