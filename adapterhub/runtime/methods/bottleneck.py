"""Bottleneck adapters: Houlsby, Pfeiffer and parallel, with the ``adapters`` library's exact math.

At each site the model computes ``LN(h + x)`` (post-LN families) or ``h + x`` (pre-LN families),
where ``h`` is the sublayer output and ``x`` its input. The adapter replaces ``h`` by ``h'`` so
that the model's own residual add and LayerNorm give the reference result:

* sequential (Houlsby, Pfeiffer): ``h' = f(a) + r`` with ``a = LN(h + x)`` if ``original_ln_before``
  (the model's LayerNorm, applied twice as in Pfeiffer et al.; ``h + x`` on pre-LN models) else
  ``a = h``, and ``r = h`` (``residual_before_ln``) or ``r = a``;
* parallel: ``h' = f(x) + h``;

with ``f(a) = scaling * W_up act(W_down a + b_down) + b_up`` (optional LayerNorm before/after,
sigmoid gate). The model then adds ``x`` and applies its LayerNorm, exactly as the reference's
``post_forward`` does. Inference: one ``linear`` down, one ``addmm`` up into the residual; training: ``linear``, ``linear``, add.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ...digits import plain_int
from ...errors import SchemaError, SchemaProblem
from ...manifest.adapters_config import bottleneck_config, unsupported
from ..arch import Binding, Layer
from ..module_paths import layer_index, match_suffix
from ..sites import SiteKey, bn_key
from ..tensors import TensorTree
from .algebra import linear_combination
from .base import Combined, Method, activation, in_place_ok
from .config import MethodConfig, ReductionFactor, reduction_factor_for_layer

if TYPE_CHECKING:
    from ..package import AdapterPackage

LOCATIONS = ("attention", "ffn")

_BOTTLENECK_COMMON = {
    "ln_before": False, "ln_after": False, "use_gating": False, "dropout": 0.0, "leave_out": (),
    "original_ln_after": True, "residual_before_ln": True, "scaling": 1.0, "init_weights": "bert",
}
BOTTLENECK_PRESETS: dict[str, dict[str, Any]] = {
    "houlsby": {**_BOTTLENECK_COMMON, "locations": ("attention", "ffn"), "original_ln_before": False,
                "non_linearity": "swish", "reduction_factor": 16},
    "pfeiffer": {**_BOTTLENECK_COMMON, "locations": ("ffn",), "original_ln_before": True,
                 "non_linearity": "relu", "reduction_factor": 16},
    "parallel": {**_BOTTLENECK_COMMON, "locations": ("ffn",), "original_ln_before": False,
                 "non_linearity": "relu", "reduction_factor": 2, "init_weights": "mam_adapter", "scaling": 4.0},
}
"""The ``adapters`` library's presets, so an adapter moved between the two tools means the same thing."""


@dataclass(frozen=True)
class BottleneckConfig(MethodConfig):
    variant: str
    reduction_factor: ReductionFactor | None = None
    non_linearity: str | None = None
    locations: tuple[str, ...] | None = None
    original_ln_before: bool | None = None
    original_ln_after: bool | None = None
    residual_before_ln: bool | None = None
    ln_before: bool | None = None
    ln_after: bool | None = None
    scaling: float | str | None = None
    use_gating: bool | None = None
    init_weights: str | None = None
    dropout: float | None = None
    leave_out: tuple[int, ...] | None = None

    def presets(self) -> dict[str, Any]:
        return dict(BOTTLENECK_PRESETS[self.variant])


class Bottleneck(Method):
    """Bottleneck adapter at the sites named by ``locations``."""

    name: ClassVar[str] = "bottleneck"
    config_type: ClassVar[type[MethodConfig]] = BottleneckConfig
    training_only: ClassVar[frozenset[str]] = frozenset({"dropout", "init_weights"})
    adapters_architecture: ClassVar[str | None] = "bottleneck"
    """The library's BnConfig (its ``architecture`` is unset); it also holds Compacter (``phm_layer``)."""

    # --- geometry ---------------------------------------------------------------------------------
    @property
    def parallel(self) -> bool:
        return self.config.get("variant") == "parallel"

    @property
    def locations(self) -> tuple[str, ...]:
        return tuple(self.config["locations"])

    def placements(self) -> list[tuple[Layer, str, str]]:
        """(layer, location, tensor prefix) for every adapter block."""
        out = []
        for layer in self.binding.iter_layers(self.config.get("leave_out")):
            for loc in LOCATIONS:
                if loc in self.locations:
                    out.append((layer, loc, f"layers.{layer.index}.{loc}"))
        return out

    def bottleneck_size(self, layer_index: int) -> int:
        rf = reduction_factor_for_layer(self.config["reduction_factor"], layer_index)
        return max(1, int(self.binding.layers[layer_index].width // rf))

    def validate(self) -> None:
        if self.config.get("original_ln_after") is False:
            raise SchemaError("<adapter config>", [SchemaProblem(
                "/adapter/config/original_ln_after",
                "false is not supported: the runtime keeps the model's own residual add and LayerNorm")])
        for layer in self.binding.iter_layers(self.config.get("leave_out")):
            self.bottleneck_size(layer.index)  # a reduction_factor mapping missing a layer is a SchemaError

    # --- tensors ----------------------------------------------------------------------------------
    def projection_shapes(self, prefix: str, fin: int, fout: int) -> dict[str, tuple[int, ...]]:
        return {f"{prefix}.weight": (fout, fin), f"{prefix}.bias": (fout,)}

    def shared_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def shapes(self) -> dict[str, tuple[int, ...]]:
        out = dict(self.shared_shapes())
        for layer, _loc, prefix in self.placements():
            hidden = layer.width  # CLIP's towers differ in width
            d = self.bottleneck_size(layer.index)
            out.update(self.projection_shapes(f"{prefix}.down", hidden, d))
            out.update(self.projection_shapes(f"{prefix}.up", d, hidden))
            if self.config.get("ln_before"):
                out.update({f"{prefix}.ln_before.weight": (hidden,), f"{prefix}.ln_before.bias": (hidden,)})
            if self.config.get("ln_after"):
                out.update({f"{prefix}.ln_after.weight": (hidden,), f"{prefix}.ln_after.bias": (hidden,)})
            if self.config.get("use_gating"):
                out.update({f"{prefix}.gate.weight": (1, hidden), f"{prefix}.gate.bias": (1,)})
            if self.config.get("scaling") == "learned":
                out[f"{prefix}.scaling"] = (1,)
        return out

    def init(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        scheme = self.config.get("init_weights", "bert")
        out: dict[str, torch.Tensor] = {}
        for name, shape in self.shapes().items():
            t = torch.zeros(shape)
            leaf = name.rsplit(".", 2)
            if name.endswith("scaling") or ".ln_" in name and name.endswith("weight"):
                t.fill_(1.0)
            elif name.endswith(".weight") and ".ln_" not in name:
                is_up = leaf[-2] == "up"
                if scheme == "bert" or leaf[-2] == "gate":
                    t.normal_(0.0, 0.02, generator=generator)
                elif scheme == "mam_adapter":
                    if not is_up:
                        bound = 1.0 / math.sqrt(shape[1])  # kaiming_uniform(a=sqrt(5)) bound
                        t.uniform_(-bound, bound, generator=generator)
                elif scheme == "houlsby":
                    t.normal_(0.0, 1e-2, generator=generator).clamp_(-2e-2, 2e-2)
            out[name] = t
        return out

    @classmethod
    def combine(cls, pkgs: Sequence[AdapterPackage], coeffs: list[float], *, rank: int | None,
                binding: Binding | None) -> Combined:
        """``theta = sum_i c_i theta_i`` (activation space: the parameter average of model soups, the
        ``adapters`` library's ``average_adapter`` with ``combine_strategy="linear"``)."""
        tensors = {k: linear_combination([p.tensors[k] for p in pkgs], coeffs) for k in pkgs[0].tensors}
        return Combined(tensors, dict(pkgs[0].config), {"form": "parameters"})

    @classmethod
    def from_adapters(cls, cfg: dict[str, Any], meta: dict[str, Any], tensors: dict[str, torch.Tensor], name: str,
                      binding: Binding) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
        """A BnConfig adapter (bottleneck, or Compacter when ``phm_layer``): config by the torch-free
        :func:`~adapterhub.manifest.adapters_config.bottleneck_config`, tensors renamed to ours."""
        method, config = bottleneck_config(cfg, "version" in meta)
        return method, config, adapters_tensors(tensors, name, binding, bool(cfg.get("ln_before")))

    # --- forward ----------------------------------------------------------------------------------
    def linear_weights(self, tree: TensorTree, prefix: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight[out, in], bias) of one projection, in ``F.linear`` form."""
        return tree.get(f"{prefix}.weight"), tree.get(f"{prefix}.bias")

    def _block_fn(self, tree: TensorTree, layer: Layer, loc: str, prefix: str):
        cfg = self.config
        act = activation(cfg["non_linearity"])
        scaling = cfg.get("scaling", 1.0)
        learned = scaling == "learned"
        ln_before = (tree.get(f"{prefix}.ln_before.weight"), tree.get(f"{prefix}.ln_before.bias")) \
            if cfg.get("ln_before") else None
        ln_after = (tree.get(f"{prefix}.ln_after.weight"), tree.get(f"{prefix}.ln_after.bias")) \
            if cfg.get("ln_after") else None
        gate = (tree.get(f"{prefix}.gate.weight"), tree.get(f"{prefix}.gate.bias")) if cfg.get("use_gating") else None
        dropout = float(cfg.get("dropout") or 0.0)
        hidden = layer.width

        def f(a: torch.Tensor) -> torch.Tensor:
            wd, bd = self.linear_weights(tree, f"{prefix}.down")
            wu, bu = self.linear_weights(tree, f"{prefix}.up")
            z = a if ln_before is None else F.layer_norm(a, (hidden,), *ln_before)
            up = F.linear(act(F.linear(z, wd, bd)), wu, bu)
            if learned:
                up = up * tree.get(f"{prefix}.scaling")
            elif scaling != 1.0:
                up = up * scaling
            if dropout and tree.training:
                up = F.dropout(up, dropout, True)
            if gate is not None:
                g = torch.sigmoid(F.linear(a, *gate)).mean(dim=1).unsqueeze(-1)
                up = up * g
            if ln_after is not None:
                up = F.layer_norm(up, (hidden,), *ln_after)
            return up

        if learned or scaling != 1.0 or gate is not None or ln_after is not None:
            return f, None

        def f_plus(a: torch.Tensor, residual: torch.Tensor) -> torch.Tensor | None:
            """``f(a) + residual`` with the add inside the up-projection's GEMM (inference only).

            The residual is the GEMM's accumulator and the up bias rides along as one more input
            column, so the hidden states are read and written once instead of three times.
            """
            wd, bd = self.linear_weights(tree, f"{prefix}.down")
            wu, bu = self.linear_weights(tree, f"{prefix}.up")
            if (dropout and tree.training) or not in_place_ok(wd, wu, a, residual) or residual.shape != a.shape:
                return None
            z = act(F.linear(a if ln_before is None else F.layer_norm(a, (hidden,), *ln_before), wd, bd))
            ones = z.new_ones((*z.shape[:-1], 1))
            w_aug = torch.cat([wu.t(), bu.unsqueeze(0)]) if bu is not None else wu.t()
            z_aug = torch.cat([z, ones], dim=-1) if bu is not None else z
            out = torch.addmm(residual.reshape(-1, hidden), z_aug.reshape(-1, z_aug.shape[-1]), w_aug)
            return out.view(residual.shape)

        return f, f_plus

    def site_fns(self, tree: TensorTree) -> dict[SiteKey, BottleneckSite]:
        out: dict[SiteKey, BottleneckSite] = {}
        for layer, loc, prefix in self.placements():
            site = layer.sites[loc]
            ln = layer.sub(site.layer_norm) if site.layer_norm else None
            f, f_plus = self._block_fn(tree, layer, loc, prefix)
            out[bn_key(layer.index, loc)] = BottleneckSite(f, self.config, ln, f_plus)
        return out


class BottleneckSite:
    """One adapter block at one site: ``h' = delta(a) + residual`` with ``(a, residual) = prepare(h, x)``."""

    __slots__ = ("f", "f_plus", "parallel", "ln_before", "residual_before_ln", "ln")

    def __init__(self, f, config: dict[str, Any], ln: nn.Module | None, f_plus=None) -> None:
        self.f = f
        self.f_plus = f_plus
        self.parallel = config.get("variant") == "parallel"
        self.ln_before = bool(config.get("original_ln_before"))
        self.residual_before_ln = config.get("residual_before_ln", True)
        self.ln = ln

    def prepare(self, h: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(adapter input, residual) as the ``adapters`` library's ``pre_forward``."""
        if self.parallel:
            return x, h
        a = h
        if self.ln_before:
            a = h + x
            if self.ln is not None:
                a = self.ln(a)
        return a, (h if self.residual_before_ln else a)

    def delta(self, a: torch.Tensor) -> torch.Tensor:
        return self.f(a)

    def __call__(self, h: torch.Tensor, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        a, residual = self.prepare(h, x)
        if self.f_plus is not None:
            fused = self.f_plus(a, residual)
            if fused is not None:
                return fused
        up = self.f(a)
        return up.add_(residual) if in_place_ok(up) else up + residual


# --- the adapters library: BnConfig (architecture None) with its tensor names --------------------------
# Bottleneck container names (relative to a layer) -> our location: Family.library_bottleneck_sites.


def _strip_to_layer(key: str, layers: dict[str, Any]) -> tuple[Any, str] | None:
    hit = match_suffix(key, layers)
    if hit is None:
        return None
    return layers[hit[0]], hit[1]


def adapters_tensors(tensors: dict[str, torch.Tensor], name: str, binding: Binding,
                        ln_before: bool) -> dict[str, torch.Tensor]:
    layers = layer_index(binding)
    sites = binding.family.library_bottleneck_sites
    out: dict[str, torch.Tensor] = {}
    shared = re.compile(rf"(?:^|\.)shared_parameters\.{re.escape(name)}\.(.+)$")
    for key, value in tensors.items():
        m = shared.search(key)
        if m:
            out[f"shared.{m.group(1)}"] = value
            continue
        hit = _strip_to_layer(key, layers)
        if hit is None:
            raise unsupported("/", f"weight {key!r} is not inside a transformer layer of this model")
        layer, rest = hit
        infix = f".{name}."
        if infix not in f".{rest}":
            raise unsupported("/", f"weight {key!r} does not belong to adapter {name!r}")
        container, leaf = f".{rest}".split(infix, 1)
        loc = sites.get(container.lstrip("."))
        if loc is None:
            raise unsupported("/", f"weight {key!r}: unknown adapter location {container.lstrip('.')!r}")
        out[f"layers.{layer.index}.{loc}.{_bottleneck_leaf(leaf, ln_before)}"] = value
    return {k: v for k, v in out.items() if k is not None}


def _bottleneck_leaf(leaf: str, ln_before: bool) -> str:
    parts = leaf.split(".")
    if parts[0] == "adapter_down":
        index = plain_int(parts[1]) if len(parts) > 2 else None
        rest = ".".join(parts[2:]) if index is not None else ".".join(parts[1:])
        if ln_before and index == 0:
            return f"ln_before.{rest}"
        return f"down.{rest}"
    if parts[0] == "adapter_up":
        return "up." + ".".join(parts[1:])
    if parts[0] == "adapter_norm_before":
        return "ln_before." + ".".join(parts[1:])
    if parts[0] == "adapter_norm_after":
        return "ln_after." + ".".join(parts[1:])
    return leaf  # gate.weight, gate.bias, scaling
