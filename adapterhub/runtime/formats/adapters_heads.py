"""The prediction head an ``adapters``-library directory carries (``head_config.json`` + head weights).

adapterhub's head is the task model's own head (:mod:`adapterhub.runtime.heads`), so a library head
is imported when it *is* such a head, and refused with the reason otherwise; it is never dropped.

* A static head (``"config": null``; saved from a transformers task model after ``adapters.init``)
  names the task model's own tensors (``classifier.weight``) and its class (``model_class``).
* A flex head (``XAdapterModel.add_*_head``; tensors ``heads.<name>.<i>.*``) is a stack of dropout,
  linear and activation layers. Where a transformers task model computes exactly the same function
  (same pooling, layers and activation) its linear layers are that model's head modules; the table
  below lists those cases for the families adapterhub supports. Dropout differs only in training.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...errors import SchemaError, SchemaProblem, WeightMismatchError
from ...jsonio import load_strict
from ..heads import head_info, split_head
from .weights import load_weights

HEAD_CONFIG_FILE = "head_config.json"
HEAD_WEIGHTS = ("model_head", "pytorch_model_head.bin")
"""The library's head weight files: ``model_head.safetensors``, else the legacy pickle."""


@dataclass(frozen=True)
class FlexHead:
    """A flex head that is exactly the head of a transformers task model."""

    task: str
    """Class-name suffix of that task model (``ForSequenceClassification``)."""
    config: dict[str, Any]
    """Flex config values that make it so (other values compute something else)."""
    modules: dict[int, str] = field(default_factory=dict)
    """Flex layer index -> the task model's module holding that linear layer."""


FLEX_DEFAULTS = {"use_pooler": False, "bias": True, "activation_function": "tanh"}
_POOLED_LINEAR = FlexHead("ForSequenceClassification", {"layers": 1, "use_pooler": True, "bias": True},
                          {1: "classifier"})  # BERT: dropout(pooler output) -> classifier
_DENSE_TANH = FlexHead("ForSequenceClassification",
                       {"layers": 2, "use_pooler": False, "activation_function": "tanh", "bias": True},
                       {1: "classifier.dense", 4: "classifier.out_proj"})  # RoBERTa: first token -> dense, tanh -> out
_DENSE_RELU = FlexHead("ForSequenceClassification",
                       {"layers": 2, "use_pooler": False, "activation_function": "relu", "bias": True},
                       {1: "pre_classifier", 4: "classifier"})  # DistilBERT: first token -> pre_classifier, relu
_TAGGING = FlexHead("ForTokenClassification", {"layers": 1, "bias": True}, {1: "classifier"})
FLEX_HEADS: dict[str, dict[str, FlexHead]] = {
    "bert": {"classification": _POOLED_LINEAR, "tagging": _TAGGING},
    "roberta": {"classification": _DENSE_TANH, "tagging": _TAGGING},
    "xlm-roberta": {"classification": _DENSE_TANH, "tagging": _TAGGING},
    "distilbert": {"classification": _DENSE_RELU, "tagging": _TAGGING},
}


@dataclass
class LibraryHead:
    """A library head in our terms: the task class it needs and its tensors under that class's names."""

    task_class: str
    """Exact class name (static heads) or class-name suffix (flex heads) of the task model."""
    tensors: dict[str, torch.Tensor]
    num_labels: int | None


def _refuse(directory: Path, pointer: str, message: str) -> SchemaError:
    return SchemaError(str(directory / HEAD_CONFIG_FILE), [SchemaProblem(pointer, message)])


def head_meta(directory: Path) -> dict[str, Any] | None:
    """``head_config.json`` of ``directory`` (None without one); weights without it are refused."""
    has_weights = any((directory / n).is_file() for n in (f"{HEAD_WEIGHTS[0]}.safetensors", HEAD_WEIGHTS[1]))
    if not (directory / HEAD_CONFIG_FILE).is_file():
        if has_weights:
            raise _refuse(directory, "/", "head weights without head_config.json: cannot tell which head they are")
        return None
    meta = load_strict(directory / HEAD_CONFIG_FILE)
    if not isinstance(meta, dict) or not isinstance(meta.get("model_class"), str):
        raise _refuse(directory, "/model_class", "head_config.json names no model_class")
    return meta


def task_class(meta: dict[str, Any], model_type: str, directory: Path) -> tuple[str, FlexHead | None]:
    """(task model class name or suffix, the flex head spec or None for a static head); refused if none fits."""
    cfg = meta.get("config")
    if cfg is None:
        return str(meta["model_class"]), None
    if not isinstance(cfg, dict):
        raise _refuse(directory, "/config", "not a head config object")
    kind = str(cfg.get("head_type"))
    spec = FLEX_HEADS.get(model_type, {}).get(kind)
    if spec is None:
        known = ", ".join(f"{t}: {', '.join(h)}" for t, h in FLEX_HEADS.items())
        raise _refuse(directory, "/config/head_type", f"a flex {kind!r} head on {model_type} has no equivalent "
                      f"transformers task-model head in adapterhub (supported flex heads: {known}); "
                      "remove head_config.json and the head weights to load the adapter alone")
    wrong = {k: cfg.get(k, FLEX_DEFAULTS.get(k)) for k, v in spec.config.items() if cfg.get(k, FLEX_DEFAULTS.get(k)) != v}
    if wrong:
        raise _refuse(directory, "/config", f"this flex {kind!r} head ({wrong}) computes something else than the "
                      f"*{spec.task} head of {model_type}, which needs {spec.config}; adapterhub stores heads as the "
                      "task model's own (remove head_config.json and the head weights to load the adapter alone)")
    return spec.task, spec


def task_class_of(meta: dict[str, Any], directory: Path) -> tuple[str, int | None]:
    """(transformers class to build the base as, num_labels) for the head ``meta`` describes."""
    cls, _ = task_class(meta, str(meta.get("model_type")), directory)
    n = (meta.get("config") or {}).get("num_labels", meta.get("num_labels"))
    return (f"AutoModel{cls}" if cls.startswith("For") else cls), n if isinstance(n, int) else None


def read_library_head(directory: Path, model_type: str) -> LibraryHead | None:
    """The directory's head under the task model's tensor names, or None when it has no head."""
    meta = head_meta(directory)
    if meta is None:
        return None
    cls, spec = task_class(meta, model_type, directory)
    tensors = load_weights(directory, *HEAD_WEIGHTS)
    cfg = meta.get("config") or {}
    n = cfg.get("num_labels", meta.get("num_labels"))
    if spec is None:
        return LibraryHead(cls, tensors, n if isinstance(n, int) else None)
    pattern = re.compile(rf"^heads\.{re.escape(str(meta.get('name')))}\.(\d+)\.(.+)$")
    renamed: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        m = pattern.match(key)
        module = spec.modules.get(int(m.group(1))) if m else None
        if module is None:
            raise _refuse(directory, "/config", f"head tensor {key!r} is not a layer of the {spec.task} head")
        renamed[f"{module}.{m.group(2)}"] = value
    return LibraryHead(cls, renamed, n if isinstance(n, int) else None)


def attach_head(head: LibraryHead, root: torch.nn.Module, directory: Path) -> tuple[dict[str, torch.Tensor], str | None, int | None]:
    """(head tensors, manifest head type, num_labels) for ``root``; refused when ``root`` is another class."""
    name = type(root).__name__
    if not (name == head.task_class or (head.task_class.startswith("For") and name.endswith(head.task_class))):
        raise WeightMismatchError(
            f"{directory}: the adapter's prediction head belongs to a {head.task_class} model, this model is {name}",
            hint=f"load it onto that task model class (with num_labels={head.num_labels}), or remove "
                 "head_config.json and the head weights to load the adapter without its head")
    split = split_head(root, head.tensors)
    if split.frozen or split.unknown:
        raise WeightMismatchError(
            f"{directory}: head tensors {(split.frozen + split.unknown)[:4]} are not {name}'s head "
            "(they would change the frozen base, or name no parameter)",
            hint="adapterhub stores only the task model's own head with an adapter")
    info = head_info(root)
    return split.head, info.type, info.num_labels
