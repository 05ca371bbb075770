"""The base model an adapter directory is scaffolded against: loaded from a local path, lazily.

``init`` needs the base for two different things: its *structure* (foreign formats name tensors by
module path, so converting them needs the module tree) and its *weights* (the fingerprint). A model
directory with weights gives both; a ``config.json`` alone gives the structure only (built on the
``meta`` device, no memory, no weights), so the fingerprint is left out and the caller says so.
This module imports torch and transformers; the CLI imports it only for ``init``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AdapterHubError, NotFoundError, SchemaError, SchemaProblem
from ..jsonio import load_strict
from ..progress import quiet_hf_loading

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
PEFT_TASK_CLASSES = {
    "SEQ_CLS": "AutoModelForSequenceClassification", "TOKEN_CLS": "AutoModelForTokenClassification",
    "QUESTION_ANS": "AutoModelForQuestionAnswering", "CAUSAL_LM": "AutoModelForCausalLM",
    "SEQ_2_SEQ_LM": "AutoModelForSeq2SeqLM", "FEATURE_EXTRACTION": "AutoModel",
}
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?")


@dataclass
class LoadedBase:
    """A base model instance and what is known about it."""

    model: Any
    has_weights: bool
    path: Path
    repo_id: str | None
    """The Hub id the model says it came from (``_name_or_path``), when it looks like one."""

    @property
    def fingerprint(self) -> str | None:
        if not self.has_weights:
            return None
        from ..runtime import wrap  # deferred: CLI import cost (torch)

        return wrap(self.model).fingerprint


def _model_class(config: Any, adapter_config: dict[str, Any] | None):
    import transformers

    task = (adapter_config or {}).get("task_type")
    if isinstance(task, str) and task in PEFT_TASK_CLASSES:
        return getattr(transformers, PEFT_TASK_CLASSES[task])
    for arch in getattr(config, "architectures", None) or ():
        cls = getattr(transformers, arch, None)
        if cls is not None:
            return cls
    return transformers.AutoModel


def load_base(path: str | Path, adapter_config: dict[str, Any] | None = None, *, task_class: str | None = None,
              num_labels: int | None = None) -> LoadedBase:
    """Load the model at ``path`` (a directory with weights, or only a config.json: structure only).

    The class is ``task_class`` (a transformers class name: what the adapter's head needs) when given,
    else the PEFT ``task_type`` when the adapter states one, else the checkpoint's ``architectures``, else
    ``AutoModel`` (the fingerprint only covers the backbone, so a task head in the checkpoint does not
    change it). ``num_labels`` sizes a classification head to the adapter's (its values come from the
    adapter anyway).
    """
    import torch
    from transformers import AutoConfig

    p = Path(path)
    config_path = p if p.is_file() else p / "config.json"
    if not config_path.is_file():
        raise NotFoundError(f"{p}: no config.json; --base must be a local model directory or its config.json",
                            hint="download the base first, e.g. `hf download <id> --local-dir DIR`")
    try:
        config = AutoConfig.from_pretrained(str(config_path.parent))
    except (OSError, ValueError, KeyError) as exc:
        raise SchemaError(str(config_path), [SchemaProblem("/", f"not a transformers config: {exc}")]) from None
    cls = _named_class(task_class, config_path) if task_class else _model_class(config, adapter_config)
    relabel = num_labels is not None and num_labels != config.num_labels
    if relabel:
        config.num_labels = num_labels
    has_weights = p.is_dir() and any((p / f).is_file() for f in WEIGHT_FILES)
    if has_weights:
        with quiet_hf_loading():  # transformers 5's "Loading weights" bar would land in `init --json` output
            model = cls.from_pretrained(str(p), config=config, ignore_mismatched_sizes=relabel)
    else:
        with torch.device("meta"):
            model = cls.from_config(config) if cls.__name__.startswith("Auto") else cls._from_config(config)
    model.eval()
    name = _name_or_path(config_path)
    return LoadedBase(model, has_weights, p, name if name and REPO_ID.fullmatch(name) and not Path(name).exists()
                      else None)


def _named_class(name: str, where: Path):
    import transformers

    cls = getattr(transformers, name, None)
    if not isinstance(cls, type):
        raise NotFoundError(f"{where}: the adapter's head needs transformers class {name!r}, which this "
                            f"transformers {transformers.__version__} does not have")
    return cls


def _name_or_path(config_path: Path) -> str | None:
    try:
        value = load_strict(config_path).get("_name_or_path")
    except (AdapterHubError, AttributeError):
        return None
    return value if isinstance(value, str) and value else None
