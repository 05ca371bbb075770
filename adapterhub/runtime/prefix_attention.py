"""Prepending learned keys/values to attention modules of a model instance (prefix tuning's mechanism).

The ``adapters`` library prepends the prefix to the keys and values *after* the projections (after
RoPE, before GQA's ``repeat_kv``, after any cache update) and gives the ``P`` prefix columns
"attend" in the mask. Two ways reach exactly that point without patching transformers classes:

* **Attention interface** (every family in transformers 5.x; GPT-2 and Llama in 4.57): the
  attention module picks its kernel by ``self.config._attn_implementation`` at call time. We give
  just that module instance a config *view* (all attributes forwarded to the real config, except
  ``_attn_implementation`` which reads ``"adapterhub_prefix"``) and register one function under that
  name in transformers' ``AttentionInterface``. It receives ``(module, query, key, value, mask, ...)``,
  prepends the prefix, pads the mask (or builds the causal one when the model passed none), widens
  T5's relative position bias, and delegates to the kernel the real config names (eager or sdpa).
  Masks are still built by the model from the real config, so their format is the kernel's.
* **Projection hooks** (BERT/RoBERTa, DistilBERT and T5 in 4.57, whose attention is computed inline):
  forward hooks on the key/value projections prepend the prefix rows (those modules reshape with
  ``view(batch, -1, heads, head_dim)``); a forward pre-hook on the attention module pads the mask.
  DistilBERT sizes its mask by the key *input*, so its key/value inputs are padded by ``P`` rows that
  the projection hooks overwrite. T5 4.57 then computes the relative bias for ``P + L`` keys itself.

One :class:`Controller` per attention module holds the active prefixes (several adapters stack:
later ones are prepended in front, as the library's Stack does); removing the last one restores the
module exactly (its own config object, no hooks).
"""

from __future__ import annotations

import inspect
import sys
import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..errors import AdapterStateError, UnsupportedArchitectureError
from .kv_cache import cached_length, find_cache

IMPL_NAME = "adapterhub_prefix"
SUPPORTED_KERNELS = (None, "eager", "sdpa")

# (batch) -> (keys, values), each (batch, kv_heads, P, head_dim)
Provider = Callable[[int], tuple[torch.Tensor, torch.Tensor]]

_CONTROLLERS: weakref.WeakKeyDictionary[nn.Module, Controller] = weakref.WeakKeyDictionary()
_BIAS_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[torch.Tensor, int, torch.Tensor]] = weakref.WeakKeyDictionary()
_registered = False


class ConfigView:
    """A model config seen through one attention module: ``_attn_implementation`` reads our name."""

    __slots__ = ("_adapterhub_base",)

    def __init__(self, base: Any) -> None:
        object.__setattr__(self, "_adapterhub_base", base)

    @property
    def _attn_implementation(self) -> str:
        return IMPL_NAME

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(object.__getattribute__(self, "_adapterhub_base"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "_adapterhub_base":  # copy/pickle restore their slot state through setattr
            object.__setattr__(self, name, value)
        else:
            setattr(object.__getattribute__(self, "_adapterhub_base"), name, value)


def uses_attention_interface(module: nn.Module) -> bool:
    """True when the module's forward dispatches through transformers' attention interface."""
    fn = inspect.unwrap(type(module).forward)
    return "ALL_ATTENTION_FUNCTIONS" in fn.__code__.co_names


def kernel_name(config: Any) -> str | None:
    return getattr(config, "_attn_implementation", None)


def _register() -> None:
    global _registered
    if not _registered:
        from transformers import AttentionInterface

        AttentionInterface.register(IMPL_NAME, _prefix_attention)
        _registered = True


class Controller:
    """The prefixes active on one attention module and the hooks or config view that apply them."""

    def __init__(self, module: nn.Module, *, causal: bool, k_module: nn.Module | None, v_module: nn.Module | None,
                 pad_kv: bool, bias_owner: nn.Module | None) -> None:
        self.module = module
        self.causal = causal
        self.k_module = k_module
        self.v_module = v_module
        self.pad_kv = pad_kv
        self.bias_owner = bias_owner
        self.entries: list[tuple[object, Provider]] = []
        self.interface = uses_attention_interface(module)
        self.hooks: list[RemovableHandle] = []
        self.base_config: Any = None
        self.current: tuple[torch.Tensor, torch.Tensor] | None = None
        self.projection_hooks: list[tuple[nn.Module, int]] = []

    # --- prefixes ---------------------------------------------------------------------------------
    def prefix(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """All active prefixes for this call, stacked (later adapters in front): (B, heads, P, d) each."""
        keys, values = [], []
        for _, provider in self.entries:
            k, v = provider(batch)
            keys.insert(0, k)
            values.insert(0, v)
        if len(keys) == 1:
            return keys[0], values[0]
        return torch.cat(keys, dim=2), torch.cat(values, dim=2)

    # --- install / uninstall ----------------------------------------------------------------------
    def install(self) -> None:
        if self.interface:
            _register()
            self.base_config = self.module.config
            self.module.config = ConfigView(self.base_config)
            return
        self.hooks.append(self.module.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
        self.hooks.append(self.module.register_forward_hook(self._post_hook, always_call=True))
        assert self.k_module is not None and self.v_module is not None
        k_hook = self.k_module.register_forward_hook(lambda m, a, out: self._project(out, 0))
        v_hook = self.v_module.register_forward_hook(lambda m, a, out: self._project(out, 1))
        self.hooks += [k_hook, v_hook]
        self.projection_hooks = [(self.k_module, k_hook.id), (self.v_module, v_hook.id)]

    def uninstall(self) -> None:
        if self.interface:
            if isinstance(self.module.__dict__.get("config"), ConfigView):
                self.module.config = self.base_config
            self.base_config = None
        for h in self.hooks:
            h.remove()
        self.hooks = []
        self.projection_hooks = []
        self.current = None

    # --- projection-hook mode (attention computed inline, transformers 4.57) ----------------------
    def _pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        hidden = args[0] if args and isinstance(args[0], torch.Tensor) else kwargs.get("hidden_states", kwargs.get("query"))
        if not isinstance(hidden, torch.Tensor):
            raise UnsupportedArchitectureError(
                f"prefix tuning: {type(module).__name__} was called without its input tensor (positional, "
                "hidden_states= or query=), so the prefix cannot be sized to the batch",
                hint="this transformers version changed the attention module's call; use transformers 4.57 or 5.x")
        cache = find_cache(args[1:], kwargs)  # any keyword transformers has used, or a cache by type
        cross = kwargs.get("key_value_states") is not None or kwargs.get("encoder_hidden_states") is not None
        if cache is not None and not cross and cached_length(cache, getattr(module, "layer_idx", None)) > 0:
            raise AdapterStateError(
                "prefix tuning cannot continue a filled KV cache where the attention is computed inline "
                f"({type(module).__name__}: BERT/DistilBERT/T5 in transformers 4.x)",
                hint="use transformers >= 5, or call without a cache (generate(..., use_cache=False))")
        self._run_projection_hooks_last()
        batch = hidden.shape[0]
        pk, pv = self.prefix(batch)
        p = pk.shape[2]
        self.current = (pk.transpose(1, 2).reshape(batch, p, -1), pv.transpose(1, 2).reshape(batch, p, -1))
        args, kwargs = list(args), dict(kwargs)
        for name in ("attention_mask", "mask"):
            if name in kwargs:
                kwargs[name] = pad_mask(kwargs[name], p)
                break
        else:
            if len(args) > 1:
                args[1] = pad_mask(args[1], p)
        if self.pad_kv:
            for name in ("key", "value"):
                x = kwargs.get(name)
                if isinstance(x, torch.Tensor):
                    kwargs[name] = torch.cat([x.new_zeros(x.shape[0], p, x.shape[2]), x], dim=1)
        return tuple(args), kwargs

    def _run_projection_hooks_last(self) -> None:
        """Prefix rows are raw keys/values: other methods' projection hooks (LoRA, IA3) must act first."""
        for module, hook_id in self.projection_hooks:
            hooks = module._forward_hooks
            if hook_id in hooks and next(reversed(hooks)) != hook_id:
                hooks[hook_id] = hooks.pop(hook_id)

    def _post_hook(self, module: nn.Module, args: tuple, output: Any) -> None:
        self.current = None

    def _project(self, out: torch.Tensor, which: int) -> torch.Tensor | None:
        if self.current is None:
            return None
        rows = self.current[which].to(out.dtype)
        if self.pad_kv:
            return torch.cat([rows, out[:, rows.shape[1]:]], dim=1)
        return torch.cat([rows, out], dim=1)


def pad_mask(mask: Any, p: int) -> Any:
    """Prepend ``p`` "attend" columns: True (bool), 1 (integer 0/1 masks), 0 (additive float masks)."""
    if not isinstance(mask, torch.Tensor):
        return mask
    shape = (*mask.shape[:-1], p)
    if mask.dtype == torch.bool:
        pad = torch.ones(shape, dtype=torch.bool, device=mask.device)
    elif not mask.is_floating_point() or mask.dim() == 2:
        pad = torch.ones(shape, dtype=mask.dtype, device=mask.device)
    else:
        pad = torch.zeros(shape, dtype=mask.dtype, device=mask.device)
    return torch.cat([pad, mask], dim=-1)


def causal_mask(q_len: int, k_len: int, p: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Additive (1, 1, q, p + k) mask: prefix columns open, real keys causal (bottom-right aligned)."""
    q_pos = torch.arange(q_len, device=device)[:, None] + (k_len - q_len)
    allowed = torch.arange(k_len, device=device)[None, :] <= q_pos
    allowed = torch.cat([torch.ones(q_len, p, dtype=torch.bool, device=device), allowed], dim=1)
    mask = torch.zeros(q_len, p + k_len, dtype=dtype, device=device)
    return mask.masked_fill(~allowed, torch.finfo(dtype).min)[None, None]


def _widen_bias(ctl: Controller, bias: torch.Tensor, q_len: int, k_len: int, p: int) -> torch.Tensor:
    """T5's relative bias for ``p + k`` keys: real key j at distance ``p + j - i`` (the library's shift)."""
    owner = ctl.bias_owner
    if owner is None or not getattr(owner, "has_relative_attention_bias", False):
        return torch.cat([bias.new_zeros(*bias.shape[:-1], p), bias], dim=-1)
    hit = _BIAS_CACHE.get(owner)
    if hit is not None and hit[0] is bias and hit[1] == p:
        return hit[2]
    wide = owner.compute_bias(q_len, p + k_len, device=bias.device, past_seen_tokens=k_len - q_len)
    wide = wide.to(bias.dtype)
    _BIAS_CACHE[owner] = (bias, p, wide)
    return wide


def _kernel(module: nn.Module, name: str | None) -> Callable[..., Any]:
    if name in (None, "eager"):
        return sys.modules[type(module).__module__].eager_attention_forward  # type: ignore[attr-defined]
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    return ALL_ATTENTION_FUNCTIONS[name]


def _prefix_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, **kwargs: Any) -> Any:
    ctl = _CONTROLLERS.get(module)
    config = module.__dict__.get("config")
    base = object.__getattribute__(config, "_adapterhub_base") if isinstance(config, ConfigView) else config
    name = kernel_name(base)
    if name not in SUPPORTED_KERNELS:
        raise UnsupportedArchitectureError(
            f"prefix tuning supports the eager and sdpa attention kernels, {type(module).__name__} now uses {name!r}",
            hint="keep attn_implementation 'sdpa' or 'eager' while a prefix-tuning adapter is attached")
    kernel = _kernel(module, name)
    if ctl is None or not ctl.entries:
        return kernel(module, query, key, value, attention_mask, **kwargs)
    q_len, k_len = query.shape[-2], key.shape[-2]
    pk, pv = ctl.prefix(query.shape[0])
    p = pk.shape[2]
    key = torch.cat([pk.to(key.dtype), key], dim=2)
    value = torch.cat([pv.to(value.dtype), value], dim=2)
    if attention_mask is not None:
        attention_mask = pad_mask(attention_mask, p)
    elif ctl.causal:
        attention_mask = causal_mask(q_len, k_len, p, query.dtype, query.device)
    if "is_causal" in kwargs:
        kwargs["is_causal"] = kwargs["is_causal"] and attention_mask is None
    bias = kwargs.get("position_bias")
    if isinstance(bias, torch.Tensor):
        kwargs["position_bias"] = _widen_bias(ctl, bias, q_len, k_len, p)
    return kernel(module, query, key, value, attention_mask, **kwargs)


class _Undo:
    """Removes one adapter's prefix from one attention module (same interface as a hook handle)."""

    def __init__(self, module: nn.Module, token: object) -> None:
        self.module = module
        self.token = token

    def remove(self) -> None:
        ctl = _CONTROLLERS.get(self.module)
        if ctl is None:
            return
        ctl.entries = [e for e in ctl.entries if e[0] is not self.token]
        if not ctl.entries:
            ctl.uninstall()
            del _CONTROLLERS[self.module]


def add_prefix(module: nn.Module, provider: Provider, *, causal: bool, k_module: nn.Module | None = None,
               v_module: nn.Module | None = None, pad_kv: bool = False,
               bias_owner: nn.Module | None = None) -> RemovableHandle:
    """Prepend ``provider``'s keys/values in ``module``; the returned handle's ``remove()`` undoes it."""
    ctl = _CONTROLLERS.get(module)
    if ctl is None:
        ctl = Controller(module, causal=causal, k_module=k_module, v_module=v_module, pad_kv=pad_kv,
                         bias_owner=bias_owner)
        if not ctl.interface and (k_module is None or v_module is None):
            raise UnsupportedArchitectureError(
                f"prefix tuning: {type(module).__name__} computes attention inline and no key/value projections "
                "are known for it", hint="pass k_module and v_module (the architecture table's PrefixSite k/v)")
        ctl.install()
        _CONTROLLERS[module] = ctl
    token = object()
    ctl.entries.append((token, provider))
    return _Undo(module, token)  # type: ignore[return-value]


def continues_cache(model: nn.Module) -> bool:
    """False when a prefix is active on an attention of ``model`` that is computed inline (BERT, DistilBERT,
    T5 in transformers 4.x): it refuses to continue a filled KV cache, so ``generate`` must run without one."""
    for module in model.modules():
        ctl = _CONTROLLERS.get(module)
        if ctl is not None and ctl.entries and not ctl.interface:
            return False
    return True
