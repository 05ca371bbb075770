"""Per-member prediction heads for blocks that give different rows of the batch to different members.

Loading an adapter copies its head into the model's one head module, so without this every member of
a block is scored by the head loaded last. That is wrong for members trained with heads of their own
(two published SST-2 adapters, say). For ``Parallel``/``Ensemble`` (branch ``k`` = rows
``[k*B, (k+1)*B)``) and ``Route`` (row ``i`` = entry ``i``) a forward hook on each head module
recomputes a member's rows with that member's stored head tensors (``torch.func.functional_call``),
before ``Ensemble`` averages the branches.

A member's head is the head of the last adapter in it (depth first, in ``Stack`` order) that carries
one; a ``Fuse`` uses its fusion adapter's head. A member with no head of its own (and a ``None`` route)
keeps the model's current head. Gradients reach only the model's own head parameters, so train a block
with one shared head; per-member heads are for using adapters that already have theirs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from ..blocks import Block, Ensemble, Fuse, Parallel, Route
from ..errors import CompositionError
from .attached import Attachments
from .heads import head_parameters

HeadTensors = dict[str, torch.Tensor]


def head_source(handle: Attachments, node: Block | None) -> str | None:
    """The adapter whose stored head ``node`` uses: the last one in it (depth first, in ``Stack``
    order) that brought a head; a ``Fuse`` uses its fusion adapter's. None: the model's current head."""
    if node is None:
        return None
    if isinstance(node, str):
        return node if handle.entry(node).head else None
    if isinstance(node, Fuse) and handle.entry(node.fusion).head:
        return node.fusion
    for child in reversed(node.children):
        found = head_source(handle, child)
        if found is not None:
            return found
    return None


def member_head(handle: Attachments, node: Block | None) -> HeadTensors | None:
    """The stored head a member uses (None: the model's current head)."""
    name = head_source(handle, node)
    return None if name is None else handle.entry(name).head


def head_owner(handle: Attachments, chain: Sequence[Block]) -> str | None:
    """Whose head the model's head module should hold for this composition (None: leave it).

    The last adapter of the top-level chain that brought a head; None when a split (``Parallel``,
    ``Ensemble``, ``Route``) comes after every such adapter, since then :func:`head_hooks` scores each
    member's rows with its own head.
    """
    for item in reversed(chain):
        if isinstance(item, Parallel | Ensemble | Route):
            return None
        name = head_source(handle, item)
        if name is not None:
            return name
    return None


def _row_groups(block: Parallel | Ensemble | Route) -> Callable[[int], list[torch.Tensor]]:
    """Rows of each member for a batch of ``total`` rows (the model's view, after replication)."""
    n = len(block.children)
    if isinstance(block, Route):
        def route_rows(total: int) -> list[torch.Tensor]:
            if total != n:
                raise CompositionError(f"Route: {n} entries for a batch of {total} at the prediction head")
            return [torch.tensor([i]) for i in range(n)]
        return route_rows

    def branch_rows(total: int) -> list[torch.Tensor]:
        if total % n:
            raise CompositionError(f"{block.kind}: batch of {total} rows at the head is not {n} branches")
        b = total // n
        return [torch.arange(k * b, (k + 1) * b) for k in range(n)]
    return branch_rows


def _head_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Top-level modules of ``model`` that own head parameters (``classifier``, ``score``, ...)."""
    names = {n.split(".", 1)[0] for n in head_parameters(model)}
    return {n: model.get_submodule(n) for n in sorted(names)}


def _module_params(head: HeadTensors, module_name: str, like: nn.Module) -> dict[str, torch.Tensor]:
    prefix = module_name + "."
    own = dict(like.named_parameters())
    out = {}
    for k, v in head.items():
        if k.startswith(prefix):
            local = k[len(prefix):]
            ref = own[local]
            out[local] = v.to(dtype=ref.dtype, device=ref.device)
    return out


def _take(value: Any, rows: torch.Tensor, total: int) -> Any:
    if isinstance(value, torch.Tensor) and value.dim() and value.shape[0] == total:
        return value.index_select(0, rows.to(value.device))
    return value


def head_hooks(handle: Attachments, chain: Sequence[Block]) -> list[RemovableHandle]:
    """Hooks that score each member's rows with its own head (none when every member shares one)."""
    at = next((i for i, b in enumerate(chain) if isinstance(b, Parallel | Ensemble | Route)), None)
    if at is None or any(member_head(handle, later) is not None for later in chain[at + 1:]):
        return []  # no split, or an adapter stacked after the split brings the one head for all rows
    splitter = chain[at]
    assert isinstance(splitter, Parallel | Ensemble | Route)
    # a member whose head is the one in the model now uses the live module (trainable, no extra work)
    heads = [h if h is None or not _is_current(handle, h) else None
             for h in (member_head(handle, c) for c in splitter.children)]
    if all(h is None for h in heads):
        return []
    rows_for = _row_groups(splitter)
    hooks = []
    for module_name, module in _head_modules(handle.model).items():
        params = [None if h is None else _module_params(h, module_name, module) for h in heads]
        busy = [False]

        def hook(mod: nn.Module, args: tuple, kwargs: dict, output: Any, params=params, busy=busy) -> Any:
            if busy[0] or not isinstance(output, torch.Tensor):
                return output  # busy: our own functional_call below runs this module (and this hook) again
            total = output.shape[0]
            out = output.clone()
            busy[0] = True
            try:
                for rows, p in zip(rows_for(total), params, strict=True):
                    if p is None:
                        continue
                    sub_args = tuple(_take(a, rows, total) for a in args)
                    sub_kwargs = {k: _take(v, rows, total) for k, v in kwargs.items()}
                    res = torch.func.functional_call(mod, p, sub_args, sub_kwargs, strict=False)
                    out.index_copy_(0, rows.to(out.device), res.to(out.dtype))
            finally:
                busy[0] = False
            return out

        hooks.append(module.register_forward_hook(hook, with_kwargs=True))
    return hooks


def _is_current(handle: Attachments, head: HeadTensors) -> bool:
    """Whether ``head`` equals the head now in the model (then no recomputation is needed)."""
    params = head_parameters(handle.model)
    return all(k in params and torch.equal(v.to(params[k].dtype), params[k].detach()) for k, v in head.items())
