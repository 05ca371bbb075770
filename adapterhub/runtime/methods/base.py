"""What every adapter method provides, and the small hook helpers they share.

A method instance is bound to one adapter config on one model (:class:`Binding`). It declares
the tensors it needs (names and shapes, checked before anything is attached), initialises fresh
ones for training, and attaches forward hooks that read its parameters from a :class:`TensorTree`.
Weight-space methods can also fold themselves into the base weights (``merge``) and back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.hooks import RemovableHandle

from ...errors import AdapterStateError
from ..arch import Binding
from ..tensors import TensorTree


class Method:
    """Base of one adapter method (one module per method under ``runtime/methods``)."""

    name: ClassVar[str]
    weight_space: ClassVar[bool] = False

    def __init__(self, config: dict[str, Any], binding: Binding) -> None:
        self.config = config
        self.binding = binding
        self.validate()

    def validate(self) -> None:
        """Raise a typed error if the config cannot be realised on this model (no side effects)."""

    def shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def init(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def attach(self, tree: TensorTree) -> list[RemovableHandle]:
        raise NotImplementedError

    def trainable(self, tree: TensorTree) -> list[nn.Parameter]:
        return list(tree.parameters())

    def merge(self, tree: TensorTree) -> None:
        raise AdapterStateError(f"method {self.name!r} works in activation space and cannot be merged",
                                hint="merge is defined for lora, dora and ia3")

    def unmerge(self, tree: TensorTree) -> None:
        raise AdapterStateError(f"method {self.name!r} cannot be merged, so it cannot be unmerged")


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The adapters library's activation for ``name`` (``swish`` is SiLU, ``gelu`` the erf form)."""
    from transformers.activations import get_activation

    key = name.lower()
    if key == "identity":
        return lambda x: x
    if key == "leakyrelu":
        return F.leaky_relu
    if key == "gelu_orig":
        key = "gelu_python"
    return get_activation(key)


def first_tensor(args: tuple, kwargs: dict, index: int, kwarg: str | None) -> torch.Tensor:
    """A module call's argument by position or keyword (transformers moved some to keywords in 5.x)."""
    if len(args) > index and isinstance(args[index], torch.Tensor):
        return args[index]
    if kwarg and isinstance(kwargs.get(kwarg), torch.Tensor):
        return kwargs[kwarg]
    for value in list(args) + list(kwargs.values()):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value
    raise RuntimeError("adapterhub: could not find the hidden states among the module's arguments")


def replace_output(output: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply ``fn`` to a module output that is a tensor or a tuple/list whose first item is one."""
    if isinstance(output, torch.Tensor):
        return fn(output)
    if isinstance(output, tuple):
        return (fn(output[0]), *output[1:])
    if isinstance(output, list):
        return [fn(output[0]), *output[1:]]
    raise RuntimeError(f"adapterhub: unexpected module output type {type(output).__name__}")


def in_place_ok(*tensors: torch.Tensor) -> bool:
    """In-place updates are safe when autograd is off or nothing here needs gradients."""
    return not torch.is_grad_enabled() or not any(t.requires_grad for t in tensors)
