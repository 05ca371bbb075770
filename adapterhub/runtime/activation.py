"""Compiling a composition block into one function per insertion point, and installing it.

Each leaf adapter contributes site functions (:meth:`Method.site_fns`); blocks combine them per
site: ``Stack`` chains them, ``Mix`` sums them with weights, ``Fuse`` attends over them,
``Route``/``Parallel``/``Ensemble`` apply different members to different rows of the batch. One
hook per site then runs the combined function, so a single adapter costs what it always did.

Batch-level behaviour lives in a few model-level hooks: ``Parallel``/``Ensemble`` replicate the
inputs once (branch ``k`` = rows ``[k*B, (k+1)*B)``), ``Ensemble`` combines the outputs, and EMEA
fits its per-example mixing weights with a few gradient steps before the real forward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

from ..blocks import (
    Block,
    Ensemble,
    Fuse,
    Mix,
    Parallel,
    Route,
    Stack,
    as_block,
    rename,
    summary,
    top_chain,
    validate,
)
from ..errors import CompositionError
from .attached import Attachments
from .head_routing import head_hooks
from .kv_cache import find_cache
from .merge_check import check_merged
from .methods.bottleneck import Bottleneck, BottleneckSite
from .methods.fusion import Fusion
from .methods.lora import Lora
from .sites import SiteFn, SiteKey, in_place_ok, install, site_layer

REPLICATED_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", "inputs_embeds",
                     "decoder_input_ids", "decoder_attention_mask", "decoder_inputs_embeds", "labels",
                     "pixel_values", "encoder_hidden_states", "encoder_attention_mask")


@dataclass
class Active:
    """An installed composition: the hooks to remove, and state the handle exposes."""

    block: Block | None
    handles: list[RemovableHandle] = field(default_factory=list)
    emea: list[_EmeaState] = field(default_factory=list)

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


@dataclass
class _EmeaState:
    node: Mix
    logits: torch.Tensor | None = None


class Compiler:
    """Turns one validated block tree into site functions for one handle."""

    def __init__(self, handle: Attachments) -> None:
        self.handle = handle
        self.binding = handle.binding
        self.num_layers = len(self.binding.layers)
        self._leaf: dict[str, dict[SiteKey, SiteFn]] = {}
        self.emea: dict[int, _EmeaState] = {}

    # --- leaves -----------------------------------------------------------------------------------
    def expand(self, block: Block | None) -> Block | None:
        """Names of fusion adapters stand for ``Fuse(*members, fusion=name)``."""

        def leaf(name: str) -> Block:
            entry = self.handle.entry(name)
            return Fuse(*entry.depends_on, fusion=name) if isinstance(entry.method, Fusion) else name

        return rename(block, leaf)

    def leaf_fns(self, name: str, where: str) -> dict[SiteKey, SiteFn]:
        if name not in self._leaf:
            entry = self.handle.entry(name)
            if entry.merged:
                raise CompositionError(f"adapter {name!r} is merged into the weights; it cannot be used inside {where}",
                                       hint="unmerge it first")
            fns = entry.method.site_fns(entry.tree)
            if fns is None:
                raise CompositionError(f"{entry.method.name} adapter {name!r} cannot be used inside {where}",
                                       hint="it attaches its own hooks; only a plain top-level Stack can hold it")
            self._leaf[name] = fns
        return self._leaf[name]

    def sites(self, node: Block | None, where: str = "Stack") -> set[SiteKey]:
        if node is None:
            return set()
        if isinstance(node, str):
            return set(self.leaf_fns(node, where))
        out: set[SiteKey] = set()
        for child in node.children:
            out |= self.sites(child, node.kind)
        return out

    # --- per-site functions -----------------------------------------------------------------------
    def fn(self, node: Block | None, key: SiteKey, where: str = "Stack") -> SiteFn | None:
        if node is None:
            return None
        if isinstance(node, str):
            return self.leaf_fns(node, where).get(key)
        if isinstance(node, Stack):
            return _chain([f for c in node.children if (f := self.fn(c, key, "Stack")) is not None])
        if isinstance(node, Mix):
            return self._mix(node, key)
        if isinstance(node, Fuse):
            return self._fuse(node, key)
        if isinstance(node, Route):
            return self._route(node, key)
        if isinstance(node, Parallel | Ensemble):
            return _branches([self.fn(c, key, node.kind) for c in node.children])
        raise CompositionError(f"unknown block {node!r}")  # pragma: no cover - validate() ran first

    def _mix(self, node: Mix, key: SiteKey) -> SiteFn | None:
        fns = [self.fn(c, key, "Mix") for c in node.children]
        if all(f is None for f in fns):
            return None
        if node.emea:
            state = self.emea.setdefault(id(node), _EmeaState(node))
            layer = site_layer(self.binding, key)

            def weights(v: torch.Tensor) -> list[Any]:
                if state.logits is None:
                    return [1.0 / len(fns)] * len(fns)
                w = torch.softmax(state.logits[:, layer, :], dim=-1).to(v.dtype)
                shape = (w.shape[0],) + (1,) * (v.dim() - 1)
                return [w[:, i].reshape(shape) for i in range(len(fns))]
        else:
            fixed = list(node.layer_weights(site_layer(self.binding, key)))

            def weights(v: torch.Tensor) -> list[Any]:
                return fixed

        def fn(v: torch.Tensor, aux: Any, inplace: bool) -> torch.Tensor:
            acc: torch.Tensor | None = None
            for w, f in zip(weights(v), fns, strict=True):
                term = (v if f is None else f(v, aux, False)) * w
                acc = term if acc is None else (acc.add_(term) if in_place_ok(acc, term) else acc + term)
            assert acc is not None
            return acc

        return fn

    def _fuse(self, node: Fuse, key: SiteKey) -> SiteFn | None:
        entry = self.handle.entry(node.fusion)
        if not isinstance(entry.method, Fusion):
            raise CompositionError(f"Fuse(fusion={node.fusion!r}): {node.fusion!r} is a {entry.method.name} adapter",
                                   hint="create a fusion layer with AdapterModel.add_fusion(name, members)")
        members = entry.depends_on
        if len(members) != len(node.children):
            raise CompositionError(f"fusion {node.fusion!r} was made for {len(members)} members {list(members)}, "
                                   f"the Fuse block has {len(node.children)}")
        for i, (member, child) in enumerate(zip(members, node.children, strict=True)):
            ok = child == member if isinstance(child, str) else member in set(child.leaves())
            if not ok:
                raise CompositionError(f"Fuse member {i} ({child!r}) does not match fusion member {member!r}",
                                       hint=f"fusion {node.fusion!r} fuses {list(members)} in this order")
        for leaf in node.leaves():
            method = self.handle.entry(leaf).method
            if not isinstance(method, Bottleneck):
                raise CompositionError(f"Fuse member {leaf!r} is a {method.name} adapter",
                                       hint="Fuse is defined over bottleneck and compacter adapters (or Stacks of them)")
        fns = [self.fn(c, key, "Fuse") for c in node.children]
        if all(f is None for f in fns):
            return None
        if key[0] != "bn" or any(f is None for f in fns):
            raise CompositionError(f"Fuse({', '.join(map(repr, node.children))}): members differ at site {key[:3]}",
                                   hint="fused members must have adapters at the same sites")
        last = None
        for leaf in node.leaves():
            site = self.leaf_fns(leaf, "Fuse").get(key)
            if isinstance(site, BottleneckSite):
                last = site
        assert last is not None
        fusion, tree = entry.method, entry.tree
        query_before_ln = bool(entry.method.config.get("query_before_ln"))
        leaves = [isinstance(f, BottleneckSite) for f in fns]

        def fn(h: torch.Tensor, x: torch.Tensor, inplace: bool) -> torch.Tensor:
            a, residual = last.prepare(h, x)
            ups = [f.delta(a) if is_leaf else f(h, x, False) - residual for f, is_leaf in zip(fns, leaves, strict=True)]
            return fusion.combine(tree, key, h if query_before_ln else a, ups, residual)

        return fn

    def _route(self, node: Route, key: SiteKey) -> SiteFn | None:
        n = len(node.children)
        groups: dict[Any, list[int]] = {}
        for i, entry in enumerate(node.children):
            if entry is not None:
                groups.setdefault(entry, []).append(i)
        fast = self._route_lora(node, key, groups, n)
        if fast is not None:
            return fast
        parts = [(f, torch.tensor(rows)) for entry, rows in groups.items()
                 if (f := self.fn(entry, key, "Route")) is not None]
        if not parts:
            return None

        def fn(v: torch.Tensor, aux: Any, inplace: bool) -> torch.Tensor:
            _check_batch(v, n)
            out = v if inplace and in_place_ok(v) else v.clone()
            for f, rows in parts:
                rows = rows.to(v.device)
                sub_aux = aux.index_select(0, rows) if isinstance(aux, torch.Tensor) else aux
                out.index_copy_(0, rows, f(v.index_select(0, rows), sub_aux, True))
            return out

        return fn

    def _route_lora(self, node: Route, key: SiteKey, groups: dict[Any, list[int]], n: int) -> SiteFn | None:
        """Every routed entry is a plain LoRA name (or absent here): gather factors, two ``bmm`` per projection."""
        if key[0] != "out":
            return None
        slots: list[tuple[torch.nn.Parameter, torch.nn.Parameter, float]] = []
        index = [0] * n
        for entry, rows in groups.items():
            if not isinstance(entry, str):
                return None
            e = self.handle.entry(entry)
            if e.merged or not isinstance(e.method, Lora):
                return None
            if key not in self.leaf_fns(entry, "Route"):
                continue
            spec = e.method.routable(key[1])
            if spec is None or (e.method.config.get("dropout") and e.tree.training):
                return None
            slots.append((e.tree.get(spec[0]), e.tree.get(spec[1]), spec[2]))
            for r in rows:
                index[r] = len(slots)
        if not slots:
            return None
        idx = torch.tensor(index)
        params = [p for a, b, _ in slots for p in (a, b)]
        cache: dict[str, Any] = {}

        def factors(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
            # cached between forwards until a factor changes; never while autograd records them (training)
            tracked = torch.is_grad_enabled() and any(p.requires_grad for p in params)
            stamp = None if tracked else (tuple(p._version for p in params), tuple(p.data_ptr() for p in params),
                                          device, torch.is_inference_mode_enabled())
            if stamp is None or cache.get("stamp") != stamp:
                rmax = max(a.shape[0] for a, _, _ in slots)
                a0, b0 = slots[0][0], slots[0][1]
                a_all = a0.new_zeros(len(slots) + 1, rmax, a0.shape[1])
                b_all = b0.new_zeros(len(slots) + 1, b0.shape[0], rmax)
                rows_a, rows_b = [a_all[0]], [b_all[0]]
                for a, b, s in slots:
                    pad = rmax - a.shape[0]
                    rows_a.append(torch.nn.functional.pad(a, (0, 0, 0, pad)))
                    rows_b.append(torch.nn.functional.pad(b * s, (0, pad)))
                sel = idx.to(device)
                # [B, in, r] and [B, r, out]: ready for bmm on [B, T, in]
                cache["a"] = torch.stack(rows_a)[sel].transpose(1, 2).contiguous()
                cache["b"] = torch.stack(rows_b)[sel].transpose(1, 2).contiguous()
                cache["stamp"] = stamp
            return cache["a"], cache["b"]

        def fn(y: torch.Tensor, x: torch.Tensor, inplace: bool) -> torch.Tensor:
            _check_batch(y, n)
            a, b = factors(y.device)
            xa = torch.bmm(x.reshape(n, -1, x.shape[-1]), a)
            y3 = y.view(n, -1, y.shape[-1]) if y.is_contiguous() else y.reshape(n, -1, y.shape[-1])
            if inplace and y.is_contiguous() and in_place_ok(y, a, b):
                y3.baddbmm_(xa, b)
                return y
            return torch.baddbmm(y3, xa, b).view_as(y)

        return fn


def _check_batch(v: torch.Tensor, n: int) -> None:
    if v.shape[0] != n:
        raise CompositionError(f"Route has {n} entries but the batch has {v.shape[0]} examples",
                               hint="give exactly one adapter name (or None) per example")


def _chain(fns: list[SiteFn]) -> SiteFn | None:
    if not fns:
        return None
    if len(fns) == 1:
        return fns[0]

    def fn(v: torch.Tensor, aux: Any, inplace: bool) -> torch.Tensor:
        for f in fns:
            out = f(v, aux, inplace)
            inplace = inplace or out is not v
            v = out
        return v

    return fn


def _branches(fns: list[SiteFn | None]) -> SiteFn | None:
    if all(f is None for f in fns):
        return None
    n = len(fns)

    def fn(v: torch.Tensor, aux: Any, inplace: bool) -> torch.Tensor:
        if v.shape[0] % n:
            raise CompositionError(f"{n} branches but a batch of {v.shape[0]} rows",
                                   hint="Parallel/Ensemble replicate the inputs of model(...) calls")
        b = v.shape[0] // n
        outs = []
        for k, f in enumerate(fns):
            sub = v[k * b:(k + 1) * b]
            sub_aux = aux[k * b:(k + 1) * b] if isinstance(aux, torch.Tensor) else aux
            outs.append(sub if f is None else f(sub, sub_aux, False))
        return torch.cat(outs, dim=0)

    return fn


def activate(handle: Attachments, spec: Block | tuple[Block, ...]) -> Active:
    """Validate and compile ``spec`` and install its hooks; nothing is installed if anything is wrong."""
    if isinstance(spec, tuple) and not spec:
        return Active(None)
    block = as_block(spec)
    validate(block)
    comp = Compiler(handle)
    block = comp.expand(block)
    validate(block)
    chain = top_chain(block)
    # segments: runs of site-composable items, and self-hooking leaves (kept in order, as a stack)
    plan: list[tuple[str, Any]] = []
    for item in chain:
        if isinstance(item, str):
            entry = handle.entry(item)
            if entry.merged:
                continue
            if entry.method.site_fns(entry.tree) is None:
                plan.append(("self", entry))
                continue
        if plan and plan[-1][0] == "sites":
            plan[-1][1].append(item)
        else:
            plan.append(("sites", [item]))
    installs: list[Callable[[], list[RemovableHandle]]] = []
    for kind, payload in plan:
        if kind == "self":
            installs.append(lambda e=payload: e.method.attach(e.tree))
            continue
        node = payload[0] if len(payload) == 1 else Stack(*payload)
        fns = {}
        for key in sorted(comp.sites(node), key=_site_order):
            f = comp.fn(node, key)
            if f is not None:
                fns[key] = (lambda v, aux, f=f: f(v, aux, True))
        installs.append(lambda fns=fns: install(handle.binding, fns))
    check_merged(handle, block, handle.merged, doing=f"activating {summary(block)}",
                 hint="unmerge the merged adapter (ah.unmerge) or activate a Stack in which it acts first")
    active = Active(block, emea=list(comp.emea.values()))
    try:
        for do in installs:
            active.handles += do()
        active.handles += _model_hooks(handle, block, active)
        active.handles += head_hooks(handle, chain)
    except Exception:
        active.remove()
        raise
    return active


def _site_order(key: SiteKey) -> tuple:
    return (key[0], key[1] if key[0] == "bn" else id(key[1]), key[2] if len(key) > 2 else "")


# --- model-level hooks: replication, ensemble outputs, EMEA -----------------------------------------
def _replicator(block: Block) -> Parallel | Ensemble | None:
    for item in top_chain(block):
        if isinstance(item, Parallel | Ensemble):
            return item
    return None


def _model_hooks(handle: Attachments, block: Block, active: Active) -> list[RemovableHandle]:
    rep = _replicator(block)
    hooks: list[RemovableHandle] = []
    if active.emea and rep is not None:
        raise CompositionError("Mix(weights='emea') cannot be combined with Parallel/Ensemble")
    root = handle.binding.root or handle.model
    backbone = handle.binding.backbone
    if rep is not None:
        n = len(rep.children)
        flag = {"done": False}

        def replicate_root(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            flag["done"] = backbone is not root  # the backbone call inside this forward is already replicated
            return _replicate_inputs(args, kwargs, n)

        def replicate_backbone(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            if flag["done"]:
                flag["done"] = False
                return None
            return _replicate_inputs(args, kwargs, n)

        def reset(module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
            flag["done"] = False
            if isinstance(rep, Ensemble):
                return _combine(output, rep, n)
            return output

        hooks.append(root.register_forward_pre_hook(replicate_root, with_kwargs=True))
        if backbone is not root:
            hooks.append(backbone.register_forward_pre_hook(replicate_backbone, with_kwargs=True))
        hooks.append(root.register_forward_hook(reset, with_kwargs=True))
    if active.emea:
        hooks.append(root.register_forward_pre_hook(_emea_hook(handle, active), with_kwargs=True))
    return hooks


def _batch_size(args: tuple, kwargs: dict) -> int | None:
    for name in ("input_ids", "inputs_embeds", "decoder_input_ids", "pixel_values"):
        t = kwargs.get(name)
        if isinstance(t, torch.Tensor):
            return t.shape[0]
    for t in args:
        if isinstance(t, torch.Tensor):
            return t.shape[0]
    return None


def _replicate_inputs(args: tuple, kwargs: dict, n: int) -> tuple[tuple, dict]:
    b = _batch_size(args, kwargs)
    if b is None:
        raise CompositionError("Parallel/Ensemble: could not find the batch among the model inputs")

    def rep(t: Any) -> Any:
        return torch.cat([t] * n, dim=0) if isinstance(t, torch.Tensor) and t.dim() and t.shape[0] == b else t

    new_args = tuple(rep(a) for a in args)
    new_kwargs = {k: (rep(v) if k in REPLICATED_INPUTS else v) for k, v in kwargs.items()}
    return new_args, new_kwargs


def _combine(output: Any, block: Ensemble, n: int) -> Any:
    """Average the ensemble's branches in ``logits`` (or ``last_hidden_state``) of the model output."""
    field_name = "logits" if getattr(output, "logits", None) is not None else "last_hidden_state"
    value = getattr(output, field_name, None)
    if value is None:
        raise CompositionError("Ensemble: the model output has neither logits nor last_hidden_state")
    if block.mode == "probs" and field_name != "logits":
        raise CompositionError("Ensemble(mode='probs') needs a model with a prediction head (logits)",
                               hint="use mode='logits' to average hidden states of a bare model")
    parts = value.reshape(n, value.shape[0] // n, *value.shape[1:])
    w = torch.tensor(block.weights, dtype=value.dtype, device=value.device).view(n, *([1] * (parts.dim() - 1)))
    if block.mode == "probs":
        combined = torch.log((torch.softmax(parts, dim=-1) * w).sum(0))
    else:
        combined = (parts * w).sum(0)
    output[field_name] = combined
    return output


def entropy(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Per-example mean prediction entropy (positions with ``mask == 0`` left out): shape ``[B]``."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    h = -(logp.exp() * logp).sum(-1)
    if h.dim() == 1:
        return h
    h = h.reshape(h.shape[0], -1)
    if mask is not None and mask.shape == h.shape:
        m = mask.to(h.dtype)
        return (h * m).sum(-1) / m.sum(-1).clamp_min(1.0)
    return h.mean(-1)


def _emea_hook(handle: Attachments, active: Active):
    state = {"inner": False}

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        if state["inner"]:
            return
        if torch.is_inference_mode_enabled():
            raise CompositionError("Mix(weights='emea') takes gradient steps during the forward",
                                   hint="call the model under torch.no_grad(), not torch.inference_mode()")
        if find_cache(args, kwargs) is not None:  # each gradient step's forward would write into it
            raise CompositionError("Mix(weights='emea') re-runs the forward once per gradient step, so a KV cache "
                                   "passed in would receive the new tokens once per step",
                                   hint="call the model without a cache (use_cache=False)")
        b = _batch_size(args, kwargs)
        if b is None:
            raise CompositionError("Mix(weights='emea'): could not find the batch among the model inputs")
        mask = kwargs.get("decoder_attention_mask") if "decoder_input_ids" in kwargs else kwargs.get("attention_mask")
        n_layers = len(handle.binding.layers)
        ref = next(handle.binding.backbone.parameters())
        for st in active.emea:
            st.logits = torch.zeros(b, n_layers, len(st.node.children), device=ref.device, dtype=torch.float32)
        steps = max(st.node.steps for st in active.emea)
        for step in range(steps):
            live = [st for st in active.emea if step < st.node.steps]
            for st in active.emea:
                st.logits = st.logits.detach().requires_grad_(st in live)
            state["inner"] = True
            try:
                with torch.enable_grad():
                    out = module(*args, **kwargs)
                    logits = getattr(out, "logits", None)
                    if logits is None:
                        raise CompositionError("Mix(weights='emea') needs a model with a prediction head (logits)",
                                               hint="EMEA minimises the entropy of the model's prediction")
                    total = entropy(logits, mask).sum()
                    grads = torch.autograd.grad(total, [st.logits for st in live])
            finally:
                state["inner"] = False
            for st, g in zip(live, grads, strict=True):
                st.logits = st.logits.detach() - st.node.lr * g
        for st in active.emea:
            st.logits = st.logits.detach()
        handle.last_mix_weights = [torch.softmax(st.logits, dim=-1) for st in active.emea]

    return hook
