"""LoHa ⇄ PEFT ``LOHA`` directories: config keys and tensor names (``formats/peft.py`` does the file work).

PEFT stores ``base_model.model.<module path>.hada_w1_a`` (``[out, r]``), ``hada_w1_b`` (``[r, in]``),
``hada_w2_a``, ``hada_w2_b`` for each ``nn.Linear`` it targets, with ``r``, ``alpha``, ``rank_dropout``
and ``module_dropout`` in ``adapter_config.json``; our tensors have the same leaf names and shapes.
What PEFT's LoHa has and we refuse, with a typed error: convolution layers (``hada_t1``/``hada_t2``,
``use_effective_conv2d``), per-module ``rank_pattern``/``alpha_pattern``, and transformers' ``Conv1D``
projections (GPT-2), for which PEFT itself has no LoHa layer.
"""

from __future__ import annotations

from typing import Any

import torch

from ....errors import SchemaError, SchemaProblem
from ...arch import Binding
from ...tensors import TensorTree
from ..projection import Target

PEFT_TYPE = "LOHA"
FACTORS = ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b")
"""PEFT's ``LoHaLayer`` leaf names for linear layers; our tensors are ``<target prefix>.<leaf>`` with the same
names and shapes, so the mapping is one name per projection."""
CONV_LEAVES = ("hada_t1", "hada_t2")
"""PEFT's Tucker cores of LoHa on convolutions: read only to refuse them by name."""


def _refuse(pointer: str, message: str) -> SchemaError:
    return SchemaError("adapter_config.json (PEFT LoHa)", [SchemaProblem(pointer, message)])


def _check_linear(binding: Binding) -> None:
    if binding.conv1d:
        raise _refuse("/target_modules", f"{binding.family.name} projections are transformers Conv1D layers, for "
                      "which PEFT has no LoHa layer (it supports nn.Linear, Conv1d and Conv2d): PEFT cannot load "
                      "such a directory; use the adapterhub format (AdapterModel.save) for LoHa on this model")


class LohaPeft:
    """The mapping ``formats/peft.py`` asks a method for (see its ``PeftMapping``)."""

    peft_type = PEFT_TYPE
    method = "loha"
    leaves = (*FACTORS, *CONV_LEAVES)

    def config_from_peft(self, cfg: dict[str, Any], binding: Binding) -> dict[str, Any]:
        """Our config from PEFT's, without the targets (the reader finds them from the tensor names)."""
        _check_linear(binding)
        for key in ("rank_pattern", "alpha_pattern"):
            if cfg.get(key):
                raise _refuse(f"/{key}", f"per-module {key} is not supported (one r and alpha per adapter)")
        config: dict[str, Any] = {"r": int(cfg.get("r", 8)), "alpha": float(cfg.get("alpha", 8))}
        for key in ("rank_dropout", "module_dropout"):
            if cfg.get(key):
                config[key] = float(cfg[key])
        return config

    def tensor_from_peft(self, leaf: str, value: torch.Tensor, part: int, parts: int) -> tuple[str, torch.Tensor]:
        if parts > 1:
            raise _refuse("/target_modules", "LoHa on a fused projection is not supported")
        if leaf in CONV_LEAVES:
            raise _refuse("/use_effective_conv2d", f"{leaf!r} belongs to LoHa on a convolution layer; adapterhub "
                          "supports LoHa on linear projections only")
        if value.dim() != 2:
            raise _refuse("/target_modules", f"{leaf!r} has shape {tuple(value.shape)}; LoHa on linear projections "
                          "stores 2-D factors (convolutions are not supported)")
        return leaf, value

    def config_to_peft(self, config: dict[str, Any]) -> dict[str, Any]:
        return {"r": int(config["r"]), "alpha": float(config["alpha"]),
                "rank_dropout": float(config.get("rank_dropout") or 0.0),
                "module_dropout": float(config.get("module_dropout") or 0.0),
                "use_effective_conv2d": False, "init_weights": True, "rank_pattern": {}, "alpha_pattern": {}}

    def tensors_to_peft(self, tree: TensorTree, targets: list[Target], binding: Binding) -> dict[str, torch.Tensor]:
        """PEFT's leaves for the targets of one projection module (never fused: Conv1D is refused)."""
        _check_linear(binding)
        if len(targets) != 1 or targets[0].slot.parts != 1:
            raise _refuse("/target_modules", "LoHa on a fused projection cannot be exported to PEFT")
        t = targets[0]
        return {leaf: tree.get(f"{t.prefix}.{leaf}").detach() for leaf in FACTORS}
