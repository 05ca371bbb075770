"""What every adapter method provides, and the small hook helpers they share.

A method instance is bound to one adapter config on one model (:class:`Binding`). It declares
the tensors it needs (names and shapes, checked before anything is attached), initialises fresh
ones for training, and describes its forward math as one function per insertion point
(:meth:`Method.site_fns`, see :mod:`adapterhub.runtime.sites`) reading its parameters from a
:class:`TensorTree`. The runtime installs one hook per site that evaluates the active composition
(a single adapter, a stack, a fusion, ...). A method that cannot be described per site (it changes
the attention itself) overrides :meth:`Method.attach` instead and can then only be stacked.
Weight-space methods can also fold themselves into the base weights (``merge``) and back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.hooks import RemovableHandle

from ...errors import AdapterStateError
from ...manifest.configs import MethodConfig
from ..arch import Binding
from ..config import check_layer_indices
from ..folds import Fold
from ..sites import SiteFn, SiteKey, first_tensor, in_place_ok, install, replace_output
from ..tensors import TensorTree

__all__ = ["Method", "SiteFn", "SiteKey", "activation", "first_tensor", "in_place_ok", "replace_output"]


class Method:
    """Base of one adapter method (one module per method under ``runtime/methods``)."""

    name: ClassVar[str]
    weight_space: ClassVar[bool] = False

    def __init__(self, config: dict[str, Any], binding: Binding) -> None:
        self.config = config
        self.binding = binding
        check_layer_indices(config, binding)
        self.validate()

    def validate(self) -> None:
        """Raise a typed error if the config cannot be realised on this model (no side effects)."""

    def shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def dtypes(self) -> dict[str, torch.dtype]:
        """Tensors that must have one exact (non-float) dtype, kept as is on attach; all others are float."""
        return {}

    def init(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def site_fns(self, tree: TensorTree) -> dict[SiteKey, SiteFn] | None:
        """``{site: fn(value, aux, inplace) -> value'}``, or None if the method attaches its own hooks."""
        return None

    def attach(self, tree: TensorTree) -> list[RemovableHandle]:
        """Hooks for this adapter alone (methods with :meth:`site_fns` get them from the site installer)."""
        fns = self.site_fns(tree)
        if fns is None:
            raise NotImplementedError
        return install(self.binding, {k: (lambda v, aux, fn=fn: fn(v, aux, True)) for k, fn in fns.items()})

    def trainable(self, tree: TensorTree) -> list[nn.Parameter]:
        return list(tree.parameters())

    def count_parameters(self, tree: TensorTree, trainable_only: bool = False) -> int:
        """What ``num_parameters(name)`` reports: stored elements (BitDelta counts sign bits)."""
        return sum(p.numel() for p in tree.parameters() if p.requires_grad or not trainable_only)

    def folds(self) -> dict[SiteKey, Fold]:
        """How merging rewrites each projection this adapter acts on (keys as in :meth:`site_fns`).

        The runtime uses it to refuse a merge, an unmerge or an activation whose merged weights would
        not compute the active composition (:mod:`adapterhub.runtime.folds`). Empty: nothing to fold.
        """
        return {}

    def merge(self, tree: TensorTree) -> None:
        raise AdapterStateError(f"method {self.name!r} works in activation space and cannot be merged",
                                hint="merge is defined for lora, dora, ia3 and bitdelta")

    def unmerge(self, tree: TensorTree) -> None:
        raise AdapterStateError(f"method {self.name!r} cannot be merged, so it cannot be unmerged")

    # --- adapters this one works over (a fusion layer's members) --------------------------------------
    depends_on: ClassVar[str | None] = None
    """The config key listing attached adapters this method works over, in order (fusion: ``members``).

    The handle resolves those names to attached adapters before :meth:`build`, refuses to remove one
    while a dependent is attached, and saves them as the dependent's manifest dependencies (published
    names). None: the method stands alone."""

    @classmethod
    def build(cls, config: MethodConfig, binding: Binding, dependencies: Sequence[tuple[str, Method]]) -> Method:
        """The method object for validated ``config``; ``dependencies``: (local name, method) per ``depends_on``."""
        return cls(config.effective(), binding)


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
