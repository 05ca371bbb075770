"""AdapterFusion layers (Pfeiffer et al. 2021): an adapter of its own, method ``fusion``.

At every bottleneck site its members share, the fusion layer attends over the members' outputs
exactly as the ``adapters`` library's ``BertFusion`` does:

* the **last** member's ``prepare`` gives the adapter input ``a`` and the residual ``r``; the query
  is ``a`` (``h`` with ``query_before_ln``);
* every member contributes ``u_i = f_i(a)`` (a Stack member: its output minus ``r``);
* ``Q = W_q q + b_q``, ``K_i = W_k u_i + b_k``, ``V_i = W_v u_i`` (no bias); with
  ``residual_before`` the residual is added to ``u_i`` first (keys too, as the library does);
* ``p = softmax_i(Q . K_i / T)`` (no 1/sqrt(d)); dropout on the scores in training;
* output ``h' = sum_i p_i V_i + r`` (``V`` after the sum when ``value_before_softmax`` is false).

``temperature``: T starts at 50 and drops by 0.05 per *training* forward down to 1 (the library
also anneals during evaluation, which makes inference depend on call count; we do not).
Tensors: ``layers.<i>.<location>.{query,key}.{weight,bias}``, ``layers.<i>.<location>.value.weight``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.nn import functional as F

from ...errors import CompositionError, SchemaError, SchemaProblem
from ..arch import Binding
from ..sites import SiteKey, bn_key
from ..tensors import TensorTree
from .base import Method
from .bottleneck import Bottleneck
from .config import MethodConfig

FUSION_PRESETS: dict[str, dict[str, Any]] = {
    "static": {"key": True, "query": True, "value": False, "query_before_ln": False, "regularization": False,
               "residual_before": False, "temperature": False, "value_before_softmax": True,
               "value_initialized": False, "dropout_prob": None},
    "dynamic": {"key": True, "query": True, "value": True, "query_before_ln": False, "regularization": True,
                "residual_before": False, "temperature": False, "value_before_softmax": True,
                "value_initialized": True, "dropout_prob": None},
}


@dataclass(frozen=True)
class FusionConfig(MethodConfig):
    members: tuple[str, ...]
    variant: str | None = None
    key: bool | None = None
    query: bool | None = None
    value: bool | None = None
    query_before_ln: bool | None = None
    regularization: bool | None = None
    residual_before: bool | None = None
    temperature: bool | None = None
    value_before_softmax: bool | None = None
    value_initialized: bool | None = None
    dropout_prob: float | None = None

    def presets(self) -> dict[str, Any]:
        return {"variant": "dynamic", **FUSION_PRESETS[self.variant or "dynamic"]}


class Fusion(Method):
    """A fusion layer over named bottleneck members (their methods are needed for the sites)."""

    name: ClassVar[str] = "fusion"
    config_type: ClassVar[type[MethodConfig]] = FusionConfig
    depends_on: ClassVar[str | None] = "members"

    def __init__(self, config: dict[str, Any], binding: Binding, members: Sequence[tuple[str, Method]]) -> None:
        self.members = list(members)
        super().__init__(config, binding)
        self.temperature = 50.0 if config.get("temperature") else 1.0

    @classmethod
    def build(cls, config: MethodConfig, binding: Binding, dependencies: Sequence[tuple[str, Method]]) -> Fusion:
        """A fusion layer over its members' methods (the handle resolves ``members`` to attached adapters)."""
        return cls(config.effective(), binding, dependencies)

    def validate(self) -> None:
        cfg = self.config
        if not (cfg.get("query") or cfg.get("key") or cfg.get("value")):
            raise SchemaError("<fusion config>", [SchemaProblem(
                "/adapter/config", "at least one of query, key, value must be true")])
        sites: set[SiteKey] | None = None
        for name, method in self.members:
            if not isinstance(method, Bottleneck):
                raise CompositionError(f"fusion member {name!r} is a {method.name} adapter",
                                       hint="AdapterFusion is defined over bottleneck and compacter adapters")
            mine = {bn_key(layer.index, loc) for layer, loc, _ in method.placements()}
            if sites is not None and mine != sites:
                raise CompositionError(f"fusion members place adapters at different sites ({name!r} differs)",
                                       hint="fuse adapters with the same locations and leave_out")
            sites = mine
        self.sites: list[SiteKey] = sorted(sites or ())

    @staticmethod
    def prefix(key: SiteKey) -> str:
        return f"layers.{key[1]}.{key[2]}"

    def shapes(self) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {}
        for key in self.sites:
            hidden = self.binding.layers[key[1]].width  # CLIP's towers differ in width
            p = self.prefix(key)
            for part in ("query", "key"):
                if self.config.get(part):
                    out[f"{p}.{part}.weight"] = (hidden, hidden)
                    out[f"{p}.{part}.bias"] = (hidden,)
            if self.config.get("value"):
                out[f"{p}.value.weight"] = (hidden, hidden)
        return out

    def init(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        out = {}
        for name, shape in self.shapes().items():
            t = torch.zeros(shape)
            if name.endswith("value.weight") and self.config.get("value_initialized"):
                t.fill_(1e-6).fill_diagonal_(1.0)
            elif name.endswith(".weight"):
                t.normal_(0.0, 0.02, generator=generator)
            out[name] = t
        return out

    def site_fns(self, tree: TensorTree) -> None:
        return None  # a fusion layer only acts inside a Fuse block (see adapterhub.runtime.activation)

    def attach(self, tree: TensorTree):
        raise CompositionError("a fusion layer is activated through Fuse(...) or its own name")

    def combine(self, tree: TensorTree, key: SiteKey, query: torch.Tensor, ups: list[torch.Tensor],
                residual: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        p = self.prefix(key)
        u = torch.stack(ups, dim=-2)  # [..., N, H]
        if cfg.get("residual_before"):
            u = u + residual.unsqueeze(-2)
        q = F.linear(query, tree.get(f"{p}.query.weight"), tree.get(f"{p}.query.bias")) if cfg.get("query") else query
        k = F.linear(u, tree.get(f"{p}.key.weight"), tree.get(f"{p}.key.bias")) if cfg.get("key") else u
        value_first = cfg.get("value") and cfg.get("value_before_softmax", True)
        v = F.linear(u, tree.get(f"{p}.value.weight")) if value_first else u
        scores = torch.matmul(k, q.unsqueeze(-1)).squeeze(-1)  # [..., N]
        if tree.training:
            drop = cfg.get("dropout_prob")
            if drop is None:
                drop = float(getattr(getattr(self.binding.root, "config", None), "attention_probs_dropout_prob", 0.0) or 0.0)
            if drop:
                scores = F.dropout(scores, drop, True)
        probs = torch.softmax(scores / self.temperature, dim=-1)
        ctx = torch.matmul(probs.unsqueeze(-2), v).squeeze(-2)
        if cfg.get("value") and not cfg.get("value_before_softmax", True):
            ctx = F.linear(ctx, tree.get(f"{p}.value.weight"))
        if tree.training and self.temperature > 1.0:
            self.temperature = max(self.temperature - 0.05, 1.0)
        return ctx if cfg.get("residual_before") else ctx + residual

    def regularization(self, tree: TensorTree) -> torch.Tensor:
        """``0.01 * sum_layers ||I - W_v||_F^2`` (the dynamic config's value regulariser)."""
        terms = []
        for key in self.sites:
            name = f"{self.prefix(key)}.value.weight"
            if tree.has(name):
                w = tree.get(name)
                terms.append(((torch.eye(w.shape[0], dtype=w.dtype, device=w.device) - w) ** 2).sum())
        return 0.01 * torch.stack(terms).sum() if terms else torch.zeros(())
