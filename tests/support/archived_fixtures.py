"""Fabricated archived-AdapterHub trees (``adapters/<org>/*.yaml`` + ``architectures/``) for importer tests.

The fields follow the real archived index (``../shared/data/adapterhub-v2``); the values are made up.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

LEAVE_OUT_ARCHITECTURE: dict[str, Any] = {
    # a Pfeiffer placement that leaves layer 0 out: not a preset, so only the architecture file says what it is
    "ln_after": False, "ln_before": False, "mh_adapter": False, "output_adapter": True,
    "adapter_residual_before_ln": False, "non_linearity": "relu", "original_ln_after": True,
    "original_ln_before": True, "reduction_factor": 16, "residual_before_ln": True, "leave_out": [0],
}
INVERTIBLE_ARCHITECTURE: dict[str, Any] = {**LEAVE_OUT_ARCHITECTURE, "leave_out": [], "inv_adapter": "nice",
                                           "inv_adapter_reduction_factor": 2}


def pin(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def version(label: str, url: str, sha256: str | None = None, sha1: str | None = "a" * 40, **extra: Any) -> dict:
    """One ``files[]`` item; ``sha256=None`` leaves the pin out (as hand-written entries sometimes did)."""
    item: dict[str, Any] = {"version": label, "url": url}
    if sha1:
        item["sha1"] = sha1
    if sha256:
        item["sha256"] = sha256
    return {**item, **extra}


def entry(files: list[dict], *, using: str = "pfeiffer", task: str = "ner", subtask: str = "conll2003",
          model: str = "bert-base-uncased", default: str | None = None, dependencies: list[dict] | None = None,
          **config: Any) -> dict[str, Any]:
    """An archived entry (``type: text_task``) with the given versions."""
    doc: dict[str, Any] = {
        "type": "text_task", "task": task, "subtask": subtask, "model_type": model.split("-")[0],
        "model_name": model, "author": "Fabricated Author", "config": {"using": using, **config},
        "default_version": default or files[0]["version"], "files": files,
        "description": f"A fabricated {task}/{subtask} adapter for importer tests.",
    }
    if dependencies:
        doc["dependencies"] = dependencies
    return doc


def write_archive(root: Path, entries: dict[str, dict], architectures: dict[str, dict] | None = None) -> Path:
    """Write ``entries`` (``"org/stem"`` -> entry) and ``architectures`` (name -> config) under ``root``."""
    for key, doc in entries.items():
        org, stem = key.split("/")
        (root / "adapters" / org).mkdir(parents=True, exist_ok=True)
        (root / "adapters" / org / f"{stem}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    for name, config in (architectures or {}).items():
        (root / "architectures").mkdir(parents=True, exist_ok=True)
        # the archived files write the config as a JSON flow mapping
        (root / "architectures" / f"{name}.yaml").write_text(
            f"name: {name}\ndisplayname: {name}\ndescription: fabricated\nconfig:\n  {json.dumps(config)}\n")
    return root
