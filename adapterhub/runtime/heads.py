"""Prediction heads: the task model's own head, saved and loaded with the adapter.

A transformers task model (``*ForSequenceClassification``, ``*ForTokenClassification``...) is a
backbone (``model.base_model``) plus a head. The head's tensors (everything outside the backbone)
travel with the adapter in ``head.safetensors``, like PEFT's ``modules_to_save``. Language-model
heads belong to the base, so they pass through (never saved, never trained), unless the adapter
brought its own: an untied LM head trained as PEFT ``modules_to_save`` is stored and trained with
it. A head tied to the embeddings is part of the frozen base and cannot be an adapter's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import WeightMismatchError
from .fingerprint import CONTAINER

HEAD_FILE = "head.safetensors"


@dataclass(frozen=True)
class HeadInfo:
    type: str | None
    num_labels: int | None


def head_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """Parameters of ``model`` outside its backbone (and outside attached adapters)."""
    backbone = getattr(model, "base_model", model)
    if backbone is model:
        return {}
    inside = {id(p) for p in backbone.parameters()}
    return {n: p for n, p in model.named_parameters() if id(p) not in inside and CONTAINER not in n}


def head_info(model: nn.Module) -> HeadInfo:
    """The manifest head type of a model, from its class and config."""
    cls = type(model).__name__
    config = getattr(model, "config", None)
    n = getattr(config, "num_labels", None)
    if cls.endswith("ForSequenceClassification"):
        if getattr(config, "problem_type", None) == "regression" or n == 1:
            return HeadInfo("regression", 1)
        if getattr(config, "problem_type", None) == "multi_label_classification":
            return HeadInfo("multilabel-classification", n)
        return HeadInfo("classification", n)
    if cls.endswith("ForTokenClassification"):
        return HeadInfo("token-classification", n)
    if cls.endswith("ForQuestionAnswering"):
        return HeadInfo("question-answering", None)
    if cls.endswith("ForMultipleChoice"):
        return HeadInfo("multiple-choice", None)
    if cls.endswith(("LMHeadModel", "ForCausalLM", "ForMaskedLM", "ForConditionalGeneration")):
        return HeadInfo("lm", None)
    return HeadInfo(None, None)


def saved_head(model: nn.Module) -> dict[str, torch.Tensor]:
    """Head tensors to store with an adapter (none for LM heads: they are part of the base)."""
    if head_info(model).type in (None, "lm"):
        return {}
    return {k: v.detach().clone() for k, v in head_parameters(model).items()}


def check_head(model: nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """The stored head must match this model's head tensor for tensor (validated before any copy)."""
    params = head_parameters(model)
    missing = sorted(set(params) - set(tensors))
    unexpected = sorted(set(tensors) - set(params))
    wrong = sorted(k for k in set(params) & set(tensors) if tuple(params[k].shape) != tuple(tensors[k].shape))
    if missing or unexpected or wrong:
        raise WeightMismatchError(
            f"{where}: head does not fit {type(model).__name__} (missing {missing[:4]}, unexpected {unexpected[:4]}, "
            f"wrong shape {wrong[:4]})", hint="load the adapter onto the task model class it was saved from")


def load_head(model: nn.Module, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Copy head tensors into the model; return the previous values (to restore on remove)."""
    params = head_parameters(model)
    previous = {k: params[k].detach().clone() for k in tensors}
    with torch.no_grad():
        for k, v in tensors.items():
            params[k].copy_(v.to(params[k].dtype))
    return previous


@dataclass
class HeadSplit:
    """Stored head tensors sorted against one model (see :func:`split_head`)."""

    head: dict[str, torch.Tensor]
    """Tensors of the model's own head (outside the backbone): they travel with the adapter."""
    frozen: list[str]
    """Names of frozen-base parameters (or tied to one, like GPT-2's ``lm_head``) stored with other values."""
    unknown: list[str]
    """Names this model has no parameter for."""


def split_head(model: nn.Module, tensors: dict[str, torch.Tensor]) -> HeadSplit:
    """Sort tensors another tool saved as a head: the model's head, a changed frozen tensor, or unknown.

    A tensor naming a base parameter with exactly the base's value carries nothing (the ``adapters``
    library saves a tied LM head alongside) and is left out; with another value it would overwrite the
    frozen base, which adapterhub never does, so the caller refuses it.
    """
    params = head_parameters(model)
    out = HeadSplit({}, [], [])
    for name, value in tensors.items():
        if name in params:
            out.head[name] = value
            continue
        try:
            base = model.get_parameter(name)
        except AttributeError:
            out.unknown.append(name)
            continue
        if tuple(base.shape) != tuple(value.shape) or not torch.equal(base.detach().cpu(), value.to(base.dtype).cpu()):
            out.frozen.append(name)
    return out


def head_num_labels(model: nn.Module, tensors: dict[str, torch.Tensor]) -> int | None:
    """The label count a stored head was trained with, when only that keeps it from fitting ``model``.

    Tensors whose first dimension is the model's ``num_labels`` where the stored one differs (the output
    layer of a classification head) must all agree; otherwise (it fits, or it differs in other ways) None.
    """
    n = getattr(getattr(model, "config", None), "num_labels", None)
    params = head_parameters(model)
    found = {int(t.shape[0]) for k, t in tensors.items()
             if k in params and t.dim() and params[k].shape[0] == n and t.shape[0] != n
             and tuple(params[k].shape[1:]) == tuple(t.shape[1:])}
    return found.pop() if len(found) == 1 else None
