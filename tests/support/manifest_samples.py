"""Valid sample documents that tests mutate into bad ones."""

from __future__ import annotations

import copy
from typing import Any

SHA = "0" * 63 + "1"
COMMIT = "a" * 40

VALID_MANIFEST: dict[str, Any] = {
    "schema_version": "1.0",
    "name": "sst2-houlsby",
    "version": "1.0.0",
    "description": "Houlsby adapter for SST-2 on all-MiniLM-L6-v2",
    "license": "apache-2.0",
    "authors": ["adapterhub"],
    "task": {"type": "text-classification", "name": "sst2", "dataset": "glue/sst2", "labels": ["negative", "positive"]},
    "base_model": {"id": "sentence-transformers/all-MiniLM-L6-v2", "revision": COMMIT, "model_type": "bert",
                   "hidden_size": 384, "num_hidden_layers": 6, "fingerprint": "sha256:" + SHA},
    "adapter": {"method": "bottleneck", "config": {"variant": "houlsby", "reduction_factor": 16, "non_linearity": "swish"}},
    "head": {"type": "classification", "num_labels": 2, "labels": ["negative", "positive"]},
    "files": [{"path": "adapter.safetensors", "size": 1234, "sha256": SHA, "role": "weights"}],
    "metrics": [{"dataset": "glue/sst2", "split": "validation", "name": "accuracy", "value": 0.87}],
    "dependencies": [],
    "sources": [{"type": "hf", "repo_id": "org/minilm-sst2-houlsby", "revision": COMMIT}, {"type": "bundled"}],
}


def manifest(**overrides: Any) -> dict[str, Any]:
    """A deep copy of the valid manifest with top-level overrides."""
    data = copy.deepcopy(VALID_MANIFEST)
    data.update(overrides)
    return data


def manifest_with(name: str, version: str, deps: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    data = manifest(name=name, version=version)
    data["dependencies"] = deps or []
    data.update(extra)
    return data
