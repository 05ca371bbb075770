"""Insertion points ("sites") and the one hook per site that runs whatever is active there.

Every activation-space method describes itself as functions per site instead of attaching its
own hooks, so compositions (stack, fusion, mixing, per-example routing) can combine members at
each site. A site function has the signature ``fn(value, aux, inplace) -> value'``:

* ``("bn", layer_index, location)``: a bottleneck site; ``value`` is the sublayer output ``h``
  (before the model's residual add and LayerNorm), ``aux`` the sublayer input ``x``;
* ``("out", module)``: the output ``y`` of a projection, ``aux`` its (already pre-hooked) input;
* ``("in", module)``: the input of a projection, ``aux`` is None.

``inplace`` says the caller does not need ``value`` afterwards (the function may overwrite it when
autograd allows). Bottleneck site functions are :class:`BottleneckSite` objects, which also expose
the two halves fusion needs (``prepare``: adapter input and residual; ``delta``: the adapter's
contribution).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..errors import CompositionError, UnsupportedArchitectureError
from .arch import Binding

SiteKey = tuple
SiteFn = Callable[[torch.Tensor, Any, bool], torch.Tensor]


def bn_key(layer_index: int, location: str) -> SiteKey:
    return ("bn", layer_index, location)


def site_layer(binding: Binding, key: SiteKey) -> int:
    """The global layer index a site belongs to (for per-layer weights)."""
    if key[0] == "bn":
        return int(key[1])
    return _module_layers(binding)[id(key[1])]


def _module_layers(binding: Binding) -> dict[int, int]:
    cached = getattr(binding, "_adapterhub_module_layers", None)
    if cached is None:
        cached = {}
        for layer in binding.layers:
            for m in layer.module.modules():
                cached.setdefault(id(m), layer.index)
        object.__setattr__(binding, "_adapterhub_module_layers", cached)
    return cached


def _unsupported_call(module: nn.Module | None, what: str) -> UnsupportedArchitectureError:
    name = type(module).__name__ if module is not None else "a hooked module"
    return UnsupportedArchitectureError(
        f"{name} {what}, not what adapterhub's architecture table expects of this module",
        hint="this transformers version changed the module's call; use transformers 4.57 or 5.x, or report the "
             "model class and transformers version")


def first_tensor(args: tuple, kwargs: dict, index: int, kwarg: str | None,
                 module: nn.Module | None = None) -> torch.Tensor:
    """A module call's argument by position or keyword (transformers moved some to keywords in 5.x)."""
    if len(args) > index and isinstance(args[index], torch.Tensor):
        return args[index]
    if kwarg and isinstance(kwargs.get(kwarg), torch.Tensor):
        return kwargs[kwarg]
    for value in list(args) + list(kwargs.values()):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value
    raise _unsupported_call(module, "was called without a floating-point tensor (the hidden states)")


def replace_output(output: Any, fn: Callable[[torch.Tensor], torch.Tensor], module: nn.Module | None = None) -> Any:
    """Apply ``fn`` to a module output that is a tensor or a tuple/list whose first item is one."""
    if isinstance(output, torch.Tensor):
        return fn(output)
    if isinstance(output, tuple):
        return (fn(output[0]), *output[1:])
    if isinstance(output, list):
        return [fn(output[0]), *output[1:]]
    raise _unsupported_call(module, f"returned a {type(output).__name__} (expected a tensor, tuple or list)")


def install(binding: Binding, fns: dict[SiteKey, Callable[[torch.Tensor, Any], torch.Tensor]]) -> list[RemovableHandle]:
    """One hook (pair) per site calling ``fns[key](value, aux)``; returns the handles to remove them."""
    handles: list[RemovableHandle] = []
    for key, fn in fns.items():
        if key[0] == "bn":
            layer = binding.layers[key[1]]
            site = layer.sites[key[2]]
            handles += _bn_hooks(layer.sub(site.residual), layer.sub(site.output), site, fn)
        elif key[0] == "out":
            handles.append(key[1].register_forward_hook(_out_hook(fn)))
        elif key[0] == "in":
            handles.append(key[1].register_forward_pre_hook(_in_hook(fn)))
        else:
            raise CompositionError(f"site key {key!r} has an unknown kind {key[0]!r}",
                                   hint="site keys are ('bn', layer_index, location), ('out', module) or "
                                        "('in', module)")
    return handles


def _bn_hooks(residual: nn.Module, output: nn.Module, site, fn) -> list[RemovableHandle]:
    cell: dict[str, Any] = {}

    def save_x(module: nn.Module, args: tuple, kwargs: dict) -> None:
        cell["x"] = first_tensor(args, kwargs, site.residual_arg, site.residual_kwarg, module)

    def hook(module: nn.Module, args: tuple, out: Any) -> Any:
        x = cell.pop("x", None)
        return replace_output(out, lambda h: fn(h, x), module)

    return [residual.register_forward_pre_hook(save_x, with_kwargs=True), output.register_forward_hook(hook)]


def _out_hook(fn):
    def hook(module: nn.Module, args: tuple, y: torch.Tensor) -> Any:
        return fn(y, args[0])

    return hook


def _in_hook(fn):
    def hook(module: nn.Module, args: tuple) -> Any:
        return (fn(args[0], None), *args[1:])

    return hook


def in_place_ok(*tensors: torch.Tensor) -> bool:
    """In-place updates are safe when autograd is off or nothing here needs gradients."""
    return not torch.is_grad_enabled() or not any(t.requires_grad for t in tensors)
