"""Adapter tensors as a module tree whose ``state_dict`` keys are exactly the on-disk names.

Each adapter's parameters live in one :class:`TensorTree`, registered under the model instance
(``model.adapterhub_adapters.<name>``) so optimizers and ``Trainer`` see them, while the tree's
own keys (``layers.3.ffn.down.weight``) are what ``adapter.safetensors`` stores. One naming, no
translation tables between memory and disk.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..errors import WeightMismatchError


class TensorTree(nn.Module):
    """A module holding named parameters at dotted paths, created on demand."""

    def __init__(self, tensors: Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        for name, value in (tensors or {}).items():
            self.put(name, value)

    def _node(self, parts: list[str]) -> nn.Module:
        node: nn.Module = self
        for part in parts:
            child = node._modules.get(part)
            if child is None:
                child = nn.Module()
                node.add_module(part, child)
            node = child
        return node

    def put(self, name: str, value: torch.Tensor) -> nn.Parameter:
        *parents, leaf = name.split(".")
        param = value if isinstance(value, nn.Parameter) else nn.Parameter(value, requires_grad=False)
        self._node(parents).register_parameter(leaf, param)
        return param

    def get(self, name: str) -> nn.Parameter:
        *parents, leaf = name.split(".")
        node: nn.Module = self
        for part in parents:
            node = node._modules[part]
        return node._parameters[leaf]  # type: ignore[return-value]

    def has(self, name: str) -> bool:
        try:
            self.get(name)
        except KeyError:
            return False
        return True

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.named_parameters()}


def check_tensors(expected: Mapping[str, tuple[int, ...]], got: Mapping[str, torch.Tensor], where: str,
                  dtypes: Mapping[str, torch.dtype] | None = None) -> None:
    """Raise one :class:`WeightMismatchError` naming every missing, unexpected, mis-shaped or mistyped tensor.

    Tensors named in ``dtypes`` must have exactly that dtype (BitDelta's uint8 masks); all others float.
    """
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = sorted(
        f"{k}: expected {tuple(expected[k])}, got {tuple(got[k].shape)}"
        for k in set(expected) & set(got) if tuple(got[k].shape) != tuple(expected[k]))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}" + (f" (+{len(missing) - 5})" if len(missing) > 5 else ""))
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}" + (f" (+{len(unexpected) - 5})" if len(unexpected) > 5 else ""))
        if wrong:
            parts.append(f"wrong shape {wrong[:5]}" + (f" (+{len(wrong) - 5})" if len(wrong) > 5 else ""))
        raise WeightMismatchError(f"{where}: " + "; ".join(parts),
                                  hint="the weights do not fit this adapter config on this base model")
    dtypes = dtypes or {}
    typed = sorted(f"{k}: expected {dtypes[k]}, got {got[k].dtype}" for k in dtypes if k in got and got[k].dtype != dtypes[k])
    if typed:
        raise WeightMismatchError(f"{where}: wrong dtype {typed[:5]}" + (f" (+{len(typed) - 5})" if len(typed) > 5 else ""),
                                  hint="the weights do not fit this adapter config")
    bad = sorted(k for k, t in got.items() if k not in dtypes and not t.is_floating_point())
    if bad:
        raise WeightMismatchError(f"{where}: tensors {bad[:5]} are not floating point")
