"""LoHa ⇄ PEFT ``LOHA`` directories: config keys and tensor names (``formats/peft.py`` does the file work).

PEFT stores ``base_model.model.<module path>.hada_w1_a`` (``[out, r]``), ``hada_w1_b`` (``[r, in]``),
``hada_w2_a``, ``hada_w2_b`` for each ``nn.Linear`` it targets, with ``r``, ``alpha``, ``rank_dropout``
and ``module_dropout`` in ``adapter_config.json``; our tensors have the same leaf names and shapes.
What PEFT's LoHa has and we refuse, with a typed error: convolution layers (``hada_t1``/``hada_t2``),
per-module ``rank_pattern``/``alpha_pattern``, fused projections, and transformers' ``Conv1D``
projections (GPT-2), for which PEFT itself has no LoHa layer.
"""

from __future__ import annotations

from typing import Any

import torch

from ...arch import Binding
from ..base import peft_unsupported as refuse

PEFT_TYPE = "LOHA"
FACTORS = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
"""PEFT's ``LoHaLayer`` leaf names for linear layers; our tensors are ``<target prefix>.<leaf>`` with the same
names and shapes, so the mapping is one name per projection."""
CONV_LEAVES = ("hada_t1", "hada_t2")
"""PEFT's Tucker cores of LoHa on convolutions: read only to refuse them by name."""


def tensor_from_peft(leaf: str, value: torch.Tensor, module_path: str, parts: int) -> torch.Tensor:
    """Our tensor for one PEFT leaf (the same tensor); convolutions and fused projections are refused."""
    if leaf in CONV_LEAVES or value.dim() != 2:
        raise refuse("/use_effective_conv2d", f"{module_path}.{leaf} (shape {tuple(value.shape)}) belongs to LoHa "
                     "on a convolution layer; adapterhub supports LoHa on linear projections only")
    if parts > 1:
        raise refuse("/target_modules", f"{module_path!r} is a fused projection; LoHa on it is not supported")
    return value


def config_to_peft(config: dict[str, Any]) -> dict[str, Any]:
    return {"r": int(config["r"]), "alpha": float(config["alpha"]),
            "rank_dropout": float(config.get("rank_dropout") or 0.0),
            "module_dropout": float(config.get("module_dropout") or 0.0),
            "use_effective_conv2d": False, "init_weights": True, "rank_pattern": {}, "alpha_pattern": {}}


def check_exportable(binding: Binding, module_path: str, parts: int) -> None:
    if binding.conv1d:
        raise refuse("/target_modules", f"{binding.family.name} projections are transformers Conv1D layers, for "
                     "which PEFT has no LoHa layer (it supports nn.Linear, Conv1d and Conv2d), so PEFT could not "
                     "load the export; keep LoHa on this model in the adapterhub format (AdapterModel.save)")
    if parts > 1:
        raise refuse("/target_modules", f"{module_path!r} is a fused projection; LoHa on it cannot be exported")
