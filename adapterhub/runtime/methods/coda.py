"""CoDA, conditional adapters (Lei et al. 2023): frozen layers on k routed tokens, an adapter on all.

Per transformer layer (except ``leave_out``), for layer input ``X`` (``[batch, n, d]``):

* router: ``s = LN(X) @ w`` (``LN`` without parameters, ``w`` learned, ``layers.<i>.router.weight``);
* weights: ``lambda = soft_top_k(s, k, epsilon)`` (:mod:`adapterhub.runtime.soft_topk`; pads excluded);
* selection ``I``: per sequence the ``k`` highest scores, kept in sequence order;
* heavy branch: the frozen layer's own forward on the sub-sequence ``X[I]`` only, with the matching
  attention-mask rows and columns and (RoPE models) position embeddings / ids, so attention is k x k;
  ``Z_cond = F(X[I]) - X[I]``;
* light branch: a parallel bottleneck ``Z_adapter = W_up act(W_down X + b_down) + b_up`` on every token;
* ``Y = X + Z_adapter + Scatter_I(lambda[I] * Z_cond)``.

The layer module's ``forward`` is replaced by an instance attribute while the adapter is active (never a
class patch) and restored on deactivate/remove. Rows of one batch can route different counts (a
fraction of each sequence's valid length); shorter rows are filled up to the batch's largest count with
unselected positions that no selected token can attend to and whose results are dropped.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.hooks import RemovableHandle

from ...errors import (
    AdapterStateError,
    CompositionError,
    SchemaError,
    SchemaProblem,
    UnsupportedArchitectureError,
)
from ..arch import FAMILIES, Layer
from ..kv_cache import CACHE_POSITION_KEYWORDS, cached_length, find_cache, without_cache
from ..prefix_attention import kernel_name
from ..soft_topk import budgets, soft_top_k
from ..tensors import TensorTree
from .base import Method, activation
from .config import MethodConfig, ReductionFactor, reduction_factor_for_layer

KERNELS = (None, "eager", "sdpa")
_MARK = "_adapterhub_coda"


@dataclass(frozen=True)
class Routing:
    """One layer's routing in the last forward: sorted token ``indices`` ``[batch, K]``, which of them are
    ``selected`` (the rest fill short rows), soft ``weights`` ``[batch, n]`` and per-row ``budgets``."""

    indices: torch.Tensor
    selected: torch.Tensor
    weights: torch.Tensor
    budgets: torch.Tensor


@dataclass(frozen=True)
class CodaConfig(MethodConfig):
    DEFAULTS: ClassVar[dict[str, Any]] = {
        "reduction_factor": 16, "non_linearity": "relu", "k": 0.25, "router_iterations": 20,
        "router_epsilon": 0.1, "leave_out": (),
    }
    reduction_factor: ReductionFactor | None = None
    non_linearity: str | None = None
    k: float | None = None
    router_iterations: int | None = None
    router_epsilon: float | None = None
    leave_out: tuple[int, ...] | None = None


class Coda(Method):
    """Conditional adapter: parallel bottleneck on all tokens, frozen layer on the routed ones."""

    name: ClassVar[str] = "coda"
    config_type: ClassVar[type[MethodConfig]] = CodaConfig
    last_routing: dict[int, Routing]

    def validate(self) -> None:
        fam = self.binding.family
        if not fam.token_routing:
            supported = ", ".join(t for f in FAMILIES if f.token_routing for t in f.model_types)
            raise UnsupportedArchitectureError(
                f"CoDA runs layers on routed tokens, which the {fam.name} family's layers do not support "
                f"(model_type {self.binding.model_type!r})", hint=f"supported model types: {supported}")
        config = getattr(self.binding.root, "config", None)
        flags = [f for f in fam.decoder_flags if getattr(config, f, False)]
        if flags:
            raise UnsupportedArchitectureError(f"CoDA on {fam.name} supports the encoder only ({'/'.join(flags)} "
                                               "is set)", hint="load the model as an encoder")
        kernel = kernel_name(config)
        if kernel not in KERNELS:
            raise UnsupportedArchitectureError(
                f"CoDA supports the eager and sdpa attention kernels, this model uses {kernel!r}",
                hint="load the model with attn_implementation='sdpa' or 'eager'")
        k = float(self.config["k"])
        if k >= 1 and k != int(k):
            raise SchemaError("<adapter config>", [SchemaProblem(
                "/adapter/config/k", f"{k} is a token count (>= 1) but not a whole number; use a fraction < 1 "
                                     "for a share of the sequence")])
        self.layers = list(self.binding.iter_layers(self.config.get("leave_out")))
        if not self.layers:
            raise SchemaError("<adapter config>", [SchemaProblem("/adapter/config/leave_out",
                                                                 "CoDA leaves out every layer")])
        for layer in self.layers:
            self.bottleneck_size(layer.index)  # a reduction_factor mapping missing a layer is a SchemaError

    def bottleneck_size(self, layer_index: int) -> int:
        rf = reduction_factor_for_layer(self.config["reduction_factor"], layer_index)
        return max(1, int(self.binding.hidden_size // rf))

    # --- tensors ----------------------------------------------------------------------------------
    def shapes(self) -> dict[str, tuple[int, ...]]:
        d = self.binding.hidden_size
        out: dict[str, tuple[int, ...]] = {}
        for layer in self.layers:
            r, p = self.bottleneck_size(layer.index), f"layers.{layer.index}"
            out.update({f"{p}.adapter.down.weight": (r, d), f"{p}.adapter.down.bias": (r,),
                        f"{p}.adapter.up.weight": (d, r), f"{p}.adapter.up.bias": (d,),
                        f"{p}.router.weight": (d,)})
        return out

    def init(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Adapter: kaiming-uniform down, zero up (starts as the identity); router ``N(0, 1/d)`` (scores ~ N(0, 1))."""
        d = self.binding.hidden_size
        out: dict[str, torch.Tensor] = {}
        for name, shape in self.shapes().items():
            t = torch.zeros(shape)
            if name.endswith("down.weight"):
                bound = 1.0 / math.sqrt(d)
                t.uniform_(-bound, bound, generator=generator)
            elif name.endswith("router.weight"):
                t.normal_(0.0, 1.0 / math.sqrt(d), generator=generator)
            out[name] = t
        return out

    # --- forward ----------------------------------------------------------------------------------
    def attach(self, tree: TensorTree) -> list[RemovableHandle]:
        state = _State()
        backbone = self.binding.backbone
        handles: list[Any] = []
        try:
            handles.append(backbone.register_forward_pre_hook(state.capture, with_kwargs=True))
            handles.append(backbone.register_forward_hook(state.clear, always_call=True))
            for layer in self.layers:
                handles.append(_ForwardPatch(layer.module, lambda orig, layer=layer: _LayerForward(
                    self, tree, state, layer, orig)))
        except BaseException:
            for h in reversed(handles):
                h.remove()
            raise
        self.last_routing = state.routes
        return handles

    def adapter_delta(self, tree: TensorTree, index: int, x: torch.Tensor) -> torch.Tensor:
        """``Z_adapter``: the parallel bottleneck on the layer input."""
        p = f"layers.{index}.adapter"
        act = activation(self.config["non_linearity"])
        return F.linear(act(F.linear(x, tree.get(f"{p}.down.weight"), tree.get(f"{p}.down.bias"))),
                        tree.get(f"{p}.up.weight"), tree.get(f"{p}.up.bias"))

    def scores(self, tree: TensorTree, index: int, x: torch.Tensor) -> torch.Tensor:
        """Router scores ``[batch, n]``: parameter-free LayerNorm of each token, dot the learned vector.

        A product and a row sum rather than a matmul: a GEMV's blocking depends on the batch shape, and a
        last-bit difference between two equal tokens (repeated ids in a Llama layer before either is routed)
        would then route differently in a padded batch than alone.
        """
        return (F.layer_norm(x, (x.shape[-1],)) * tree.get(f"layers.{index}.router.weight")).sum(-1)


def routing(handle: Any, name: str) -> dict[int, Routing]:
    """The routing of every CoDA layer of attached adapter ``name`` in the last forward (by layer index)."""
    entry = handle.entry(name)
    if entry.method.name != Coda.name:
        raise AdapterStateError(f"adapter {name!r} is a {entry.method.name} adapter, not coda")
    return dict(getattr(entry.method, "last_routing", {}))


class _State:
    """The padding mask of the current backbone forward, and the routing record."""

    def __init__(self) -> None:
        self.padding: torch.Tensor | None = None
        self.routes: dict[int, Routing] = {}

    def capture(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        mask = kwargs.get("attention_mask")
        if mask is None and len(args) > 1:
            names = list(inspect.signature(module.forward).parameters)
            if len(names) > 1 and names[1] == "attention_mask":
                mask = args[1]
        self.padding = mask if isinstance(mask, torch.Tensor) else None

    def clear(self, module: nn.Module, args: tuple, out: Any) -> None:
        self.padding = None

    def valid(self, x: torch.Tensor) -> torch.Tensor:
        b, n = x.shape[:2]
        mask = self.padding
        if mask is None:
            return torch.ones(b, n, dtype=torch.bool, device=x.device)
        if mask.dim() != 2 or tuple(mask.shape) != (b, n):
            raise AdapterStateError(f"CoDA needs a 2-D padding mask [batch, seq] = [{b}, {n}], the model got "
                                    f"{tuple(mask.shape)}", hint="pass attention_mask as tokenizers return it")
        return mask.to(x.device) != 0


class _ForwardPatch:
    """Replaces ``module.forward`` by an instance attribute; ``remove`` puts back exactly what was there."""

    def __init__(self, module: nn.Module, make: Any) -> None:
        if getattr(module, _MARK, False):
            raise CompositionError("a CoDA adapter is already active on this layer",
                                   hint="activate one CoDA adapter at a time")
        self.module = module
        self.had = "forward" in module.__dict__
        self.previous = module.__dict__.get("forward")
        self.fn = make(self.previous if self.had else module.forward)
        module.__dict__["forward"] = self.fn
        module.__dict__[_MARK] = True

    def remove(self) -> None:
        d = self.module.__dict__
        if d.get("forward") is self.fn:
            if self.had:
                d["forward"] = self.previous
            else:
                del d["forward"]
        d.pop(_MARK, None)


class _LayerForward:
    """The CoDA forward of one layer, calling the layer's original forward on the routed tokens."""

    def __init__(self, method: Coda, tree: TensorTree, state: _State, layer: Layer, original: Any) -> None:
        self.method, self.tree, self.state, self.layer, self.original = method, tree, state, layer, original
        self.signature = inspect.signature(original)
        self.var_kw = next((p.name for p in self.signature.parameters.values() if p.kind is p.VAR_KEYWORD), None)
        self.causal = method.binding.family.causal

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        bound = self.signature.bind(*args, **kwargs)
        call = {k: v for k, v in bound.arguments.items() if k != self.var_kw}
        call.update(bound.arguments.get(self.var_kw, {}) if self.var_kw else {})
        x = call["hidden_states"]
        self._refuse_cache(call)
        cfg, i = self.method.config, self.layer.index
        valid = self.state.valid(x)
        scores = self.method.scores(self.tree, i, x)
        k = budgets(float(cfg["k"]), valid)
        weights = soft_top_k(scores, k, epsilon=float(cfg["router_epsilon"]),
                             iterations=int(cfg["router_iterations"]), valid=valid)
        y = x + self.method.adapter_delta(self.tree, i, x)
        width = int(k.max()) if k.numel() else 0
        if width == 0:
            return y
        idx, sel = _select(scores.detach().float().masked_fill(~valid, -math.inf), k, width)
        self.state.routes[i] = Routing(idx, sel, weights.detach(), k)
        out = self.original(**self._sub_call(call, idx, sel, x.shape[1]))
        h = out if isinstance(out, torch.Tensor) else out[0]
        d = x.shape[-1]
        gather = idx.unsqueeze(-1).expand(*idx.shape, d)
        z_cond = h - x.gather(1, gather)
        lam = weights.gather(1, idx).to(x.dtype).unsqueeze(-1)
        contrib = torch.where(sel.unsqueeze(-1), lam * z_cond, torch.zeros_like(z_cond))
        y = y + torch.zeros_like(x).scatter(1, gather, contrib)
        if isinstance(out, torch.Tensor):
            return y
        return type(out)((y, *out[1:])) if isinstance(out, tuple | list) else _replace_first(out, y)

    def _refuse_cache(self, call: dict[str, Any]) -> None:
        """Refuse a forward that continues a KV cache, whatever name or position the cache arrives by
        (:mod:`adapterhub.runtime.kv_cache`): it is filled for this layer, its positions start after 0, or
        this layer already ran a prefill into it (which wrote nothing, so the cache is short here)."""
        cache = find_cache((), call)
        positions = [call.get(k) for k in CACHE_POSITION_KEYWORDS]
        stale = any(isinstance(p, torch.Tensor) and p.numel() > 0 and int(p.min()) > 0 for p in positions)
        if cache is not None:
            seen = getattr(cache, _MARK, None)
            filled = cached_length(cache, self.layer.index) > 0
            stale = stale or filled or (seen is not None and self.layer.index in seen)
            if not stale:
                with contextlib.suppress(AttributeError):  # a cache without a __dict__ is only checked by length
                    setattr(cache, _MARK, (seen or frozenset()) | {self.layer.index})
        if stale:
            raise AdapterStateError(
                "CoDA does not support a KV cache: its layers run on routed tokens only and write nothing to the "
                "cache, so a forward that continues a cache would be wrong",
                hint="call the model with use_cache=False (generate(..., use_cache=False) recomputes each step)")

    def _sub_call(self, call: dict[str, Any], idx: torch.Tensor, sel: torch.Tensor, n: int) -> dict[str, Any]:
        """The layer's arguments restricted to the routed tokens (and no cache)."""
        sub = dict(call)
        b, width = idx.shape
        x = call["hidden_states"]
        sub["hidden_states"] = x.gather(1, idx.unsqueeze(-1).expand(b, width, x.shape[-1]))
        sub["attention_mask"] = _sub_mask(call.get("attention_mask"), idx, sel, n, self.causal)
        pos = call.get("position_ids")
        if isinstance(pos, torch.Tensor) and pos.shape[-1] == n:
            sub["position_ids"] = pos.expand(b, n).gather(1, idx)
        pe = call.get("position_embeddings")
        if isinstance(pe, tuple | list):
            sub["position_embeddings"] = tuple(t.expand(b, *t.shape[1:]).gather(
                1, idx.unsqueeze(-1).expand(b, width, t.shape[-1])) for t in pe)
        return without_cache(sub)


def _select(masked: torch.Tensor, k: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``width`` positions per row in sequence order, and which are within the row's budget ``k``.

    Ties go to the earlier position (a stable sort), so equal scores (a Llama layer 0 sees repeated tokens
    as identical vectors) route the same tokens whatever the batch's padding.
    """
    top = torch.sort(masked, dim=-1, descending=True, stable=True).indices[:, :width]
    rank = torch.arange(width, device=masked.device).expand_as(top)
    selected = rank < k.unsqueeze(-1)
    idx, order = top.sort(dim=-1)
    return idx, selected.gather(1, order)


def _sub_mask(mask: torch.Tensor | None, idx: torch.Tensor, sel: torch.Tensor, n: int,
              causal: bool) -> torch.Tensor | None:
    """The attention mask between routed tokens; filler positions are keys for themselves only."""
    b, width = idx.shape
    fill = not bool(sel.all())
    if mask is None:
        if not fill:
            return None
        m = torch.ones(b, 1, width, width, dtype=torch.bool, device=idx.device)
        if causal:
            m = m.tril()
    else:
        if mask.dim() != 4 or mask.shape[-1] != n or mask.shape[-2] not in (1, n):
            raise AdapterStateError(f"CoDA cannot sub-select an attention mask of shape {tuple(mask.shape)} "
                                    f"for {n} tokens", hint="use the eager or sdpa kernel without a KV cache")
        m = mask.expand(b, *mask.shape[1:])
        heads, q = m.shape[1], m.shape[2]
        m = m.gather(3, idx[:, None, None, :].expand(b, heads, q, width))
        if q == n:
            m = m.gather(2, idx[:, None, :, None].expand(b, heads, width, width))
        if not fill:
            return m
        m = m.expand(b, heads, width, width)
    filler = ~sel[:, None, None, :]
    eye = torch.eye(width, dtype=torch.bool, device=idx.device)
    blocked, own = filler & ~eye, filler & eye
    if m.dtype == torch.bool:
        return (m & ~blocked) | own
    return m.masked_fill(blocked, torch.finfo(m.dtype).min).masked_fill(own, 0.0)


def _replace_first(out: Any, y: torch.Tensor) -> Any:
    """A ModelOutput-like result with its first field replaced."""
    key = next(iter(out.keys()))
    out[key] = y
    return out
