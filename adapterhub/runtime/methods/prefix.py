"""Prefix tuning (Li and Liang 2021) as the ``adapters`` library 1.3.0 computes it.

Every targeted attention module gets ``P`` learned key and value vectors per key/value head,
prepended to its keys and values (see :mod:`adapterhub.runtime.prefix_attention` for where and how).

Two tensor forms, chosen by the config's ``flat`` key:

* ``flat=false`` (training form, the library's default): one reparametrization MLP per location
  group (``self``; T5: ``encoder``, ``self``, ``cross``): ``Embedding(P, H) -> Linear(H, b) -> act ->
  Linear(b, n * 2 * heads * head_dim)``; layer ``j`` of the group reads chunk ``2j`` (keys) and
  ``2j + 1`` (values). Tensors: ``reparam.<group>.{wte, down.weight, down.bias, up.weight, up.bias}``.
* ``flat=true`` (inference form, what the library's ``eject`` yields): the MLP's output stored per
  layer, ``layers.<i>.<self|cross>.prefix_k`` and ``.prefix_v``, each ``[P, kv_heads * head_dim]``.

:func:`flat_tensors` turns the first form into the second exactly; :func:`eject` does it for an
attached adapter. Dropout (``dropout``) acts on the prefix in training mode, as in the library.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.hooks import RemovableHandle

from ...errors import SchemaError, SchemaProblem, UnsupportedArchitectureError, WeightMismatchError
from ...manifest.adapters_config import flat_config, prefix_config, unsupported
from ...manifest.config_check import check_stated_config
from ..arch import Binding, Layer, PrefixSite, get_submodule
from ..prefix_attention import SUPPORTED_KERNELS, add_prefix, kernel_name, uses_attention_interface
from ..tensors import TensorTree, check_tensors
from .base import Method, activation
from .config import MethodConfig


@dataclass(frozen=True)
class Target:
    """One attention module receiving a prefix: its layer, site and position within its group."""

    layer: Layer
    site: PrefixSite
    position: int

    @property
    def name(self) -> str:
        return f"layers.{self.layer.index}.{self.site.key}"


@dataclass(frozen=True)
class Geometry:
    """One location group's sizes: key/value heads, head dim and the hidden size its MLP reads (a CLIP
    model's towers differ; every layer of any other family has the same)."""

    kv_heads: int
    head_dim: int
    hidden: int

    @property
    def width(self) -> int:
        return self.kv_heads * self.head_dim


def head_geometry(layer: Layer) -> Geometry:
    """A layer's prefix sizes as the library derives them from its (tower's) config (``num_key_value_heads``,
    ``d_kv``)."""
    config = layer.config
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = getattr(config, "d_kv", None) or layer.width // heads
    return Geometry(kv_heads, int(head_dim), layer.width)


def plan(binding: Binding, config: dict[str, Any]) -> list[Target]:
    """Targets in model order (the library's layer order within each location group)."""
    skip_groups = {g for g, flag in (("encoder", config.get("encoder_prefix", True)),
                                     ("cross", config.get("cross_prefix", True))) if not flag}
    counts: dict[str, int] = {}
    out: list[Target] = []
    for layer in binding.iter_layers(tuple(config.get("leave_out") or ())):
        for site in binding.family.prefix(layer.shape):
            if site.group in skip_groups:
                continue
            out.append(Target(layer, site, counts.get(site.group, 0)))
            counts[site.group] = counts.get(site.group, 0) + 1
    return out


def mlp_prefix(wte: torch.Tensor, down_w: torch.Tensor, down_b: torch.Tensor, up_w: torch.Tensor,
               up_b: torch.Tensor, non_linearity: str) -> torch.Tensor:
    """The reparametrization MLP's output for positions ``0..P-1``: ``[P, n * 2 * kv_heads * head_dim]``."""
    return F.linear(activation(non_linearity)(F.linear(wte, down_w, down_b)), up_w, up_b)


@dataclass(frozen=True)
class PrefixTuningConfig(MethodConfig):
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "prefix_length": 30, "bottleneck_size": 512, "non_linearity": "tanh", "flat": False, "dropout": 0.0,
        "encoder_prefix": True, "cross_prefix": True, "leave_out": (),
    }
    prefix_length: int | None = None
    bottleneck_size: int | None = None
    non_linearity: str | None = None
    flat: bool | None = None
    dropout: float | None = None
    encoder_prefix: bool | None = None
    cross_prefix: bool | None = None
    leave_out: tuple[int, ...] | None = None


class PrefixTuning(Method):
    name: ClassVar[str] = "prefix_tuning"
    config_type: ClassVar[type[MethodConfig]] = PrefixTuningConfig
    adapters_architecture: ClassVar[str | None] = "prefix_tuning"

    @classmethod
    def from_adapters(cls, cfg: dict[str, Any], meta: dict[str, Any], tensors: dict[str, torch.Tensor], name: str,
                      binding: Binding) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
        return convert_library_prefix(cfg, tensors, name, binding)

    def validate(self) -> None:
        fam = self.binding.family
        self.p = int(self.config["prefix_length"])
        self.flat = bool(self.config.get("flat"))
        self.targets = plan(self.binding, self.config)
        self.geometry = {t.site.group: head_geometry(t.layer) for t in self.targets}
        if not self.targets:
            raise SchemaError("<adapter config>", [SchemaProblem(
                "/adapter/config", "prefix tuning selects no attention module (leave_out and the location flags "
                                   "exclude every layer)")])
        kernel = kernel_name(getattr(self.binding.root, "config", None))
        if kernel not in SUPPORTED_KERNELS:
            raise UnsupportedArchitectureError(
                f"prefix tuning supports the eager and sdpa attention kernels, this model uses {kernel!r}",
                hint="load the model with attn_implementation='sdpa' or 'eager'")
        if fam.shared_position_bias:
            left = set(self.config.get("leave_out") or ())
            for decoder in (False, True):
                stack = {layer.index for layer in self.binding.layers if layer.decoder == decoder}
                if stack & left and not stack <= left:
                    raise SchemaError("<adapter config>", [SchemaProblem(
                        "/adapter/config/leave_out", f"{fam.name} shares one relative position bias per stack, so "
                                                     "prefix tuning must cover all or none of a stack's layers")])
        for t in self.targets:
            attn = t.layer.sub(t.site.attention)
            if not uses_attention_interface(attn) and not (t.site.k and t.site.v):
                raise UnsupportedArchitectureError(
                    f"{type(attn).__name__} computes attention inline and has no known key/value projections")

    # --- tensors ----------------------------------------------------------------------------------
    def groups(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.targets:
            out[t.site.group] = out.get(t.site.group, 0) + 1
        return out

    def shapes(self) -> dict[str, tuple[int, ...]]:
        if self.flat:
            return {f"{t.name}.{leaf}": (self.p, self.geometry[t.site.group].width) for t in self.targets
                    for leaf in ("prefix_k", "prefix_v")}
        b = int(self.config["bottleneck_size"])
        out: dict[str, tuple[int, ...]] = {}
        for group, n in self.groups().items():
            h, width = self.geometry[group].hidden, self.geometry[group].width
            out.update({f"reparam.{group}.wte": (self.p, h), f"reparam.{group}.down.weight": (b, h),
                        f"reparam.{group}.down.bias": (b,), f"reparam.{group}.up.weight": (n * 2 * width, b),
                        f"reparam.{group}.up.bias": (n * 2 * width,)})
        return out

    def init(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """As the library: Embedding N(0, 1); Linear kaiming-uniform(a=sqrt 5) weights and biases; flat N(0, 1)."""
        out: dict[str, torch.Tensor] = {}
        shapes = self.shapes()
        for name, shape in shapes.items():
            t = torch.empty(shape)
            if name.endswith((".wte", ".prefix_k", ".prefix_v")):
                t.normal_(0.0, 1.0, generator=generator)
            else:
                fan_in = shapes[name.rsplit(".", 1)[0] + ".weight"][1]
                bound = 1.0 / math.sqrt(fan_in)
                t.uniform_(-bound, bound, generator=generator)
            out[name] = t
        return out

    def flat_tensors(self, tree: TensorTree | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The inference form (``flat=true`` tensors) of this adapter's weights."""
        get = tree.get if isinstance(tree, TensorTree) else tree.__getitem__
        if self.flat:
            return {name: get(name).detach().clone() for name in self.shapes()}
        with torch.no_grad():
            outs = {g: self._group_output(get, g) for g in self.groups()}
        out: dict[str, torch.Tensor] = {}
        for t in self.targets:
            chunk = outs[t.site.group]
            out[f"{t.name}.prefix_k"] = chunk[:, 2 * t.position].contiguous()
            out[f"{t.name}.prefix_v"] = chunk[:, 2 * t.position + 1].contiguous()
        return out

    def export(self, stated: dict[str, Any], tree: TensorTree | dict[str, torch.Tensor]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(stated config, tensors) of the flat inference form; what :func:`eject` attaches."""
        return flat_config(stated), self.flat_tensors(tree)

    def _group_output(self, get: Any, group: str) -> torch.Tensor:
        g = f"reparam.{group}"
        y = mlp_prefix(get(f"{g}.wte"), get(f"{g}.down.weight"), get(f"{g}.down.bias"), get(f"{g}.up.weight"),
                       get(f"{g}.up.bias"), str(self.config.get("non_linearity") or "tanh"))
        return y.view(self.p, -1, self.geometry[group].width)

    # --- forward ----------------------------------------------------------------------------------
    def attach(self, tree: TensorTree) -> list[RemovableHandle]:
        state = _ForwardState(self, tree)
        handles: list[RemovableHandle] = []
        for parent in self._stack_parents():
            handles.append(parent.register_forward_pre_hook(lambda m, a: state.invalidate()))
        owners = self._bias_owners()
        try:
            for t in self.targets:
                s = t.site
                handles.append(add_prefix(
                    t.layer.sub(s.attention), lambda batch, t=t: state.kv(t, batch), causal=s.causal,
                    k_module=t.layer.sub(s.k) if s.k else None, v_module=t.layer.sub(s.v) if s.v else None,
                    pad_kv=s.pad_kv, bias_owner=owners.get(t.layer.decoder) if s.key == "self" else None))
        except BaseException:
            for h in reversed(handles):
                h.remove()
            raise
        return handles

    def _stack_parents(self) -> list[nn.Module]:
        out: list[nn.Module] = []
        for stack in self.binding.family.stacks:
            path = stack.rsplit(".", 1)[0] if "." in stack else ""
            try:
                module = get_submodule(self.binding.backbone, path)
            except AttributeError:
                continue
            if all(module is not m for m in out):
                out.append(module)
        return out

    def _bias_owners(self) -> dict[bool, nn.Module]:
        """Per stack, the attention module of its first layer that computes the relative bias all layers share."""
        path = self.binding.family.shared_position_bias
        if path is None:
            return {}
        out: dict[bool, nn.Module] = {}
        for layer in self.binding.layers:
            out.setdefault(layer.decoder, layer.sub(path))
        return out


class _ForwardState:
    """Computes each group's prefix once per model forward (the MLP is shared by all its layers)."""

    def __init__(self, method: PrefixTuning, tree: TensorTree) -> None:
        self.method = method
        self.tree = tree
        self.cache: dict[str, tuple[tuple[int, ...], torch.Tensor]] = {}

    def invalidate(self) -> None:
        self.cache.clear()

    def _versions(self) -> tuple[int, ...]:
        return tuple(p._version for p in self.tree.parameters()) + (int(torch.is_grad_enabled()),)

    def _group(self, group: str) -> torch.Tensor:
        versions = self._versions()
        hit = self.cache.get(group)
        if hit is not None and hit[0] == versions:
            return hit[1]
        out = self.method._group_output(self.tree.get, group)
        self.cache[group] = (versions, out)
        return out

    def kv(self, target: Target, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.method
        if m.flat:
            k = self.tree.get(f"{target.name}.prefix_k")
            v = self.tree.get(f"{target.name}.prefix_v")
        else:
            chunk = self._group(target.site.group)
            k, v = chunk[:, 2 * target.position], chunk[:, 2 * target.position + 1]
        geo = m.geometry[target.site.group]
        shape = (batch, m.p, geo.kv_heads, geo.head_dim)
        k = k.reshape(1, m.p, geo.kv_heads, geo.head_dim).expand(shape).transpose(1, 2)
        v = v.reshape(1, m.p, geo.kv_heads, geo.head_dim).expand(shape).transpose(1, 2)
        p = float(m.config.get("dropout") or 0.0)
        if p > 0 and self.tree.training:
            k, v = F.dropout(k, p, True), F.dropout(v, p, True)
        return k, v


def eject(handle: Any, name: str) -> None:
    """Replace attached prefix-tuning adapter ``name`` by its flat inference form (outputs unchanged).

    ``handle.save(name, ...)`` afterwards writes ``flat=true`` with per-layer prefixes, as the
    library's ``eject_prefix_tuning`` does; the reparametrization MLP is dropped.
    """
    pkg = handle.package(name)
    if pkg.method != PrefixTuning.name:
        raise SchemaError("<adapter>", [SchemaProblem("/adapter/method", f"{name!r} is a {pkg.method} adapter, "
                                                                         "not prefix_tuning")])
    if pkg.config.get("flat"):
        return
    typed = PrefixTuningConfig.from_stated(pkg.config)  # validated when it was attached
    config, tensors = PrefixTuning(typed.effective(), handle.binding).export(pkg.config, pkg.tensors)
    check_stated_config(PrefixTuning.name, config)
    flat = PrefixTuning(PrefixTuningConfig.from_stated(config).effective(), handle.binding)
    check_tensors(flat.shapes(), tensors, f"eject({name!r})")  # before anything is removed
    pkg.tensors, pkg.config = tensors, config
    active = handle.active
    handle.remove(name)
    handle.load_package(pkg, name=name, activate=False)
    if active:
        handle.activate(*active)


# --- the adapters library ---------------------------------------------------------------------------
MLP_LEAVES = {"wte.weight": "wte", "control_trans.0.weight": "down.weight", "control_trans.0.bias": "down.bias",
              "control_trans.2.weight": "up.weight", "control_trans.2.bias": "up.bias"}


def _collect(tensors: dict[str, torch.Tensor], name: str, locations: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """``{"reparam.self.wte": t, ...}`` (or ``flat.<group>``) with every alias checked equal."""
    pattern = re.compile(rf"(?:^|\.)prefix_tunings\.{re.escape(name)}\.([A-Za-z_]+)\.(.+)$")
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        m = pattern.search(key)
        if m is None:
            raise unsupported("/", f"weight {key!r} does not belong to prefix-tuning adapter {name!r}")
        loc, leaf = m.groups()
        group = locations.get(loc)
        if group is None:
            raise unsupported("/", f"weight {key!r}: unknown prefix location {loc!r} (this model's: "
                                   f"{', '.join(sorted(locations))})")
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


def convert_library_prefix(cfg: dict[str, Any], tensors: dict[str, torch.Tensor], name: str,
                           binding: Binding) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """(method, stated config, tensors) of an ``adapters``-library prefix tuning, in our flat inference form.

    Converting an ``adapters``-library prefix-tuning directory into our flat inference form.

    The library saves each location's module (``<loc>.wte.weight``, ``<loc>.control_trans.{0,2}.*``, or
    ``<loc>.control_trans`` for ``flat=True``) once canonically plus once per layer alias, all sharing
    storage in memory. Location keys: ``self_prefix`` (DistilBERT: ``self``), and on T5 ``encoder_prefix``
    and ``cross_prefix``. We check that every alias of a tensor is identical, evaluate the MLP once and
    store the per-layer prefixes (``flat=true``), which the runtime prepends exactly as the library does.
    """
    stated = prefix_config(cfg)
    found = _collect(tensors, name, binding.family.library_prefix_locations)

    lib_flat = stated["flat"]
    reparam = {**stated, "flat": False}
    check_stated_config(PrefixTuning.name, reparam)
    method = PrefixTuning(PrefixTuningConfig.from_stated(reparam).effective(), binding)
    p = method.p
    groups = method.groups()
    out: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}
    for group, n in groups.items():
        width = method.geometry[group].width
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
