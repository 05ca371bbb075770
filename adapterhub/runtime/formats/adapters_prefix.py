"""Converting an ``adapters``-library prefix-tuning directory into our flat inference form.

The library saves each location's module (``<loc>.wte.weight``, ``<loc>.control_trans.{0,2}.*``, or
``<loc>.control_trans`` for ``flat=True``) once canonically plus once per layer alias, all sharing
storage in memory. Location keys: ``self_prefix`` (DistilBERT: ``self``), and on T5 ``encoder_prefix``
and ``cross_prefix``. We check that every alias of a tensor is identical, evaluate the MLP once and
store the per-layer prefixes (``flat=true``), which the runtime prepends exactly as the library does.
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ...errors import WeightMismatchError
from ...manifest.adapters_config import unsupported
from ..arch import Binding
from ..config import check_config
from ..methods.prefix import PrefixTuning, flat_config, mlp_prefix

LOCATIONS = {"self_prefix": "self", "self": "self", "encoder_prefix": "encoder", "cross_prefix": "cross"}
MLP_LEAVES = {"wte.weight": "wte", "control_trans.0.weight": "down.weight", "control_trans.0.bias": "down.bias",
              "control_trans.2.weight": "up.weight", "control_trans.2.bias": "up.bias"}


def _config(cfg: dict[str, Any]) -> dict[str, Any]:
    if cfg.get("use_gating"):
        raise unsupported("/config/use_gating", "gated prefix tuning (UniPELT) is not supported")
    out: dict[str, Any] = {"prefix_length": int(cfg.get("prefix_length", 30)),
                           "bottleneck_size": int(cfg.get("bottleneck_size", 512)),
                           "non_linearity": str(cfg.get("non_linearity") or "tanh").lower(),
                           "flat": bool(cfg.get("flat", False))}
    if cfg.get("dropout"):
        out["dropout"] = float(cfg["dropout"])
    for key in ("encoder_prefix", "cross_prefix"):
        if key in cfg:
            out[key] = bool(cfg[key])
    if cfg.get("leave_out"):
        out["leave_out"] = sorted(int(i) for i in cfg["leave_out"])
    return out


def _collect(tensors: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """``{"reparam.self.wte": t, ...}`` (or ``flat.<group>``) with every alias checked equal."""
    pattern = re.compile(rf"(?:^|\.)prefix_tunings\.{re.escape(name)}\.([A-Za-z_]+)\.(.+)$")
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        m = pattern.search(key)
        if m is None:
            raise unsupported("/", f"weight {key!r} does not belong to prefix-tuning adapter {name!r}")
        loc, leaf = m.groups()
        group = LOCATIONS.get(loc)
        if group is None:
            raise unsupported("/", f"weight {key!r}: unknown prefix location {loc!r}")
        if leaf == "control_trans":
            ours = f"flat.{group}"
        elif leaf in MLP_LEAVES:
            ours = f"reparam.{group}.{MLP_LEAVES[leaf]}"
        else:
            raise unsupported("/", f"weight {key!r}: unknown prefix-tuning tensor {leaf!r}")
        seen = out.get(ours)
        if seen is None:
            out[ours] = value
        elif seen.shape != value.shape or not torch.equal(seen, value):
            raise WeightMismatchError(f"{key}: differs from another copy of the same shared prefix tensor",
                                      hint="the directory is inconsistent; re-save it from the library")
    return out


def convert_prefix(cfg: dict[str, Any], tensors: dict[str, torch.Tensor], name: str,
                   binding: Binding) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """(method, stated config, tensors) in our flat inference form."""
    stated = _config(cfg)
    found = _collect(tensors, name)

    lib_flat = stated["flat"]
    reparam = {**stated, "flat": False}
    method = PrefixTuning(check_config("prefix_tuning", reparam, ("prefix_tuning",)).effective(), binding)
    p, width = method.p, method.width
    groups = method.groups()
    out: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}
    for group, n in groups.items():
        if lib_flat:
            vec = found.pop(f"flat.{group}", None)
            if vec is None:
                raise WeightMismatchError(f"prefix location {group!r} has no control_trans tensor",
                                          hint="the adapter config and its weights disagree")
            if vec.numel() != p * n * 2 * width:
                raise WeightMismatchError(f"prefix location {group!r}: control_trans has {vec.numel()} values, "
                                          f"expected {p}x{n}x2x{width}")
            outputs[group] = vec.reshape(p, n * 2, width)
        else:
            g = f"reparam.{group}"
            leaves = {k: found.pop(f"{g}.{k}", None) for k in ("wte", "down.weight", "down.bias", "up.weight", "up.bias")}
            missing = sorted(k for k, v in leaves.items() if v is None)
            if missing:
                raise WeightMismatchError(f"prefix location {group!r}: missing {missing}")
            want = method.shapes()
            wrong = [f"{k}: expected {want[f'{g}.{k}']}, got {tuple(v.shape)}" for k, v in leaves.items()
                     if v is not None and tuple(v.shape) != want[f"{g}.{k}"]]
            if wrong:
                raise WeightMismatchError(f"prefix location {group!r}: wrong shape {wrong}",
                                          hint="the weights do not fit this adapter config on this base model")
            with torch.no_grad():
                y = mlp_prefix(leaves["wte"].float(), leaves["down.weight"].float(), leaves["down.bias"].float(),
                               leaves["up.weight"].float(), leaves["up.bias"].float(), method.config["non_linearity"])
            outputs[group] = y.view(p, n * 2, width)
    if found:
        raise WeightMismatchError(f"unexpected prefix tensors {sorted(found)[:5]}",
                                  hint="a location the config disables (encoder_prefix/cross_prefix/leave_out) has weights")
    for t in method.targets:
        chunk = outputs[t.site.group]
        out[f"{t.name}.prefix_k"] = chunk[:, 2 * t.position].contiguous()
        out[f"{t.name}.prefix_v"] = chunk[:, 2 * t.position + 1].contiguous()
    return "prefix_tuning", flat_config(stated), out
