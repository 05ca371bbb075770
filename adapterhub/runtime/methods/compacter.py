"""Compacter and Compacter++ (Karimi Mahabadi et al. 2021): bottleneck adapters with PHM projections.

Each projection is ``H = sum_i C_i kron W_i`` (``[in, out]``) with ``C`` the "slow" rule matrices
shared by every layer of the adapter (``shared.phm_rule``, ``[n, n, n]``) and ``W_i = L_i R_i`` the
per-layer "fast" rank-r factors (``W_left [n, in/n, r]``, ``W_right [n, r, out/n]``), plus a bias.
``y = x H + b`` exactly as the ``adapters`` library's ``PHMLayer``; placement and residual math are
the bottleneck's (``compacter`` = Houlsby sites, ``compacter++`` = Pfeiffer site).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ...errors import SchemaError, SchemaProblem
from ..tensors import TensorTree
from .bottleneck import BOTTLENECK_PRESETS, Bottleneck
from .config import MethodConfig, ReductionFactor

_PHM_DEFAULTS = {
    "reduction_factor": 32, "non_linearity": "gelu", "phm_dim": 4, "phm_rank": 1, "shared_phm_rule": True,
    "factorized_phm_rule": False, "shared_W_phm": False, "factorized_phm_W": True, "phm_bias": True,
    "phm_c_init": "normal", "phm_init_range": 0.0001, "hypercomplex_nonlinearity": "glorot-uniform",
    "learn_phm": True, "dropout": 0.0, "leave_out": (),
}
COMPACTER_PRESETS: dict[str, dict[str, Any]] = {
    "compacter": {**_PHM_DEFAULTS, "placement": "houlsby"},
    "compacter++": {**_PHM_DEFAULTS, "placement": "pfeiffer"},
}


@dataclass(frozen=True)
class CompacterConfig(MethodConfig):
    variant: str
    reduction_factor: ReductionFactor | None = None
    non_linearity: str | None = None
    phm_dim: int | None = None
    phm_rank: int | None = None
    shared_phm_rule: bool | None = None
    factorized_phm_rule: bool | None = None
    shared_W_phm: bool | None = None  # noqa: N815 - the adapters library's key, kept for interop
    factorized_phm_W: bool | None = None  # noqa: N815
    phm_bias: bool | None = None
    phm_c_init: str | None = None
    phm_init_range: float | None = None
    hypercomplex_nonlinearity: str | None = None
    learn_phm: bool | None = None
    dropout: float | None = None
    leave_out: tuple[int, ...] | None = None

    def presets(self) -> dict[str, Any]:
        return dict(COMPACTER_PRESETS[self.variant])


def phm_matrix(rule: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``sum_i kron(rule[i], w[i])``: ``[n, n, n] x [n, a, b] -> [n*a, n*b]``."""
    n, a, b = w.shape
    prod = rule.unsqueeze(-1).unsqueeze(-3) * w.unsqueeze(-2).unsqueeze(-4)
    return prod.reshape(n, rule.shape[-2] * a, rule.shape[-1] * b).sum(0)


class Compacter(Bottleneck):
    name: ClassVar[str] = "compacter"
    config_type: ClassVar[type[MethodConfig]] = CompacterConfig
    adapters_architecture: ClassVar[str | None] = None  # BnConfig with phm_layer: read by Bottleneck
    training_only: ClassVar[frozenset[str]] = frozenset(
        {"dropout", "init_weights", "phm_init_range", "phm_c_init", "hypercomplex_nonlinearity", "learn_phm"})

    def __init__(self, config: dict[str, Any], binding) -> None:
        placement = "houlsby" if config["variant"] == "compacter" else "pfeiffer"
        preset = BOTTLENECK_PRESETS[placement]
        merged = {**preset, "init_weights": "bert", **config, "variant": placement}
        super().__init__(merged, binding)

    def validate(self) -> None:
        super().validate()
        cfg = self.config
        if not cfg.get("shared_phm_rule", True) or cfg.get("shared_W_phm"):
            raise SchemaError("<adapter config>", [SchemaProblem(
                "/adapter/config/shared_phm_rule", "only shared_phm_rule=true with per-layer W is supported")])
        n = int(cfg["phm_dim"])
        for layer, _loc, _prefix in self.placements():
            d = self.bottleneck_size(layer.index)
            if d % n or layer.width % n:
                raise SchemaError("<adapter config>", [SchemaProblem(
                    "/adapter/config/phm_dim", f"phm_dim {n} must divide hidden size {layer.width} "
                    f"and bottleneck size {d} (layer {layer.index})")])

    def shared_shapes(self) -> dict[str, tuple[int, ...]]:
        n = int(self.config["phm_dim"])
        if self.config.get("factorized_phm_rule"):
            return {"shared.phm_rule_left": (n, n, 1), "shared.phm_rule_right": (n, 1, n)}
        return {"shared.phm_rule": (n, n, n)}

    def projection_shapes(self, prefix: str, fin: int, fout: int) -> dict[str, tuple[int, ...]]:
        n, r = int(self.config["phm_dim"]), int(self.config["phm_rank"])
        out: dict[str, tuple[int, ...]]
        if self.config.get("factorized_phm_W", True):
            out = {f"{prefix}.W_left": (n, fin // n, r), f"{prefix}.W_right": (n, r, fout // n)}
        else:
            out = {f"{prefix}.W": (n, fin // n, fout // n)}
        if self.config.get("phm_bias", True):
            out[f"{prefix}.b"] = (fout,)
        return out

    def init(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        std_rule = float(self.config.get("phm_init_range", 1e-4))
        out = {}
        for name, shape in self.shapes().items():
            t = torch.zeros(shape)
            if name.startswith("shared."):
                t.normal_(0.0, std_rule, generator=generator)
            elif not name.endswith(".b"):
                fan_out, fan_in = shape[1], shape[2]  # xavier_normal_ per slice, as the library does
                t.normal_(0.0, math.sqrt(2.0 / (fan_in + fan_out)), generator=generator)
            out[name] = t
        return out

    def linear_weights(self, tree: TensorTree, prefix: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.config.get("factorized_phm_rule"):
            rule = torch.bmm(tree.get("shared.phm_rule_left"), tree.get("shared.phm_rule_right"))
        else:
            rule = tree.get("shared.phm_rule")
        if self.config.get("factorized_phm_W", True):
            w = torch.bmm(tree.get(f"{prefix}.W_left"), tree.get(f"{prefix}.W_right"))
        else:
            w = tree.get(f"{prefix}.W")
        bias = tree.get(f"{prefix}.b") if self.config.get("phm_bias", True) else None
        return phm_matrix(rule, w).t(), bias
