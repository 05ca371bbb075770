"""Composition blocks: what to run, as plain immutable data (no torch here).

A block tree names adapters attached to one :class:`~adapterhub.runtime.AdapterModel` and says how
their outputs combine. The runtime compiles it into one function per insertion point
(:mod:`adapterhub.runtime.activation`). Blocks round-trip through JSON (:func:`to_json` /
:func:`from_json`) so a composition can be published next to its adapters.

Nesting rules (anything else raises :class:`~adapterhub.errors.CompositionError` naming what is
allowed): ``Stack`` holds any block; ``Fuse``, ``Mix``, ``Parallel``, ``Ensemble`` and ``Route``
hold adapter names and Stacks of "site" blocks (names, Stack, Fuse, Mix). At most one
batch-replicating block (``Parallel`` or ``Ensemble``) per composition, and only at the top or
directly inside the top-level Stack chain.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Union

from .errors import CompositionError

Block = Union[str, "Stack", "Fuse", "Mix", "Ensemble", "Route", "Parallel"]

JSON_FORMAT = "adapterhub.composition/1"


class _Composite:
    """Shared behaviour: children, leaf listing, equality by content."""

    kind: ClassVar[str]
    children: tuple[Block, ...]

    def leaves(self) -> Iterator[str]:
        """Every adapter name in the tree, depth first (duplicates kept)."""
        for child in self.children:
            if isinstance(child, str):
                yield child
            elif child is not None:
                yield from child.leaves()

    def __iter__(self) -> Iterator[Block]:
        return iter(self.children)

    def __len__(self) -> int:
        return len(self.children)


def _children(kind: str, children: Sequence[Any], *, allow_none: bool = False) -> tuple[Block, ...]:
    if len(children) == 1 and isinstance(children[0], list | tuple) and kind != "Route":
        children = tuple(children[0])
    if not children:
        raise CompositionError(f"{kind}() needs at least one member", hint=f"e.g. {kind}('a', 'b')")
    out = []
    for child in children:
        if child is None and allow_none:
            out.append(None)
        elif isinstance(child, str | _Composite):
            if isinstance(child, str) and not child:
                raise CompositionError(f"{kind}: an adapter name cannot be empty")
            out.append(child)
        else:
            raise CompositionError(f"{kind}: member {child!r} is neither an adapter name nor a composition block",
                                   hint="members are adapter names (str) or Stack/Fuse/Mix/... blocks")
    return tuple(out)


def _weights(kind: str, weights: Any, n: int) -> tuple[tuple[float, ...], ...] | None:
    """``None`` (uniform), ``[w_1..w_n]`` (every layer) or ``[[w_1..w_n] per layer]``; normalised to sum 1."""
    if weights is None:
        return None
    rows = weights if weights and isinstance(weights[0], list | tuple) else [weights]
    out = []
    for row in rows:
        if len(row) != n:
            raise CompositionError(f"{kind}: {len(row)} weights for {n} members",
                                   hint="give one weight per member (or one such list per layer)")
        vals = [float(w) for w in row]
        total = sum(vals)
        if any(not math.isfinite(v) or v < 0 for v in vals) or total <= 0:
            raise CompositionError(f"{kind}: weights must be finite, >= 0 and not all zero (got {vals})")
        out.append(tuple(v / total for v in vals))
    return tuple(out)


@dataclass(frozen=True, init=False)
class Stack(_Composite):
    """Members run in order at every insertion point: each consumes the previous one's output."""

    kind: ClassVar[str] = "Stack"
    children: tuple[Block, ...]

    def __init__(self, *children: Block) -> None:
        object.__setattr__(self, "children", _children("Stack", children))


@dataclass(frozen=True, init=False)
class Fuse(_Composite):
    """AdapterFusion over bottleneck members with the fusion layer ``fusion`` (an adapter of method ``fusion``)."""

    kind: ClassVar[str] = "Fuse"
    children: tuple[Block, ...]
    fusion: str

    def __init__(self, *children: Block, fusion: str) -> None:
        if not isinstance(fusion, str) or not fusion:
            raise CompositionError("Fuse needs fusion=<name of a fusion adapter>",
                                   hint="create one with AdapterModel.add_fusion(name, members)")
        object.__setattr__(self, "children", _children("Fuse", children))
        object.__setattr__(self, "fusion", fusion)


@dataclass(frozen=True, init=False)
class Mix(_Composite):
    """Weighted sum of the members' outputs at every insertion point.

    ``weights``: None (uniform), one list (all layers), one list per layer, or ``"emea"``
    (Entropy-Minimized Ensemble of Adapters: per-example, per-layer weights fitted at inference by
    ``steps`` gradient steps of size ``lr`` on the prediction entropy, starting from uniform).
    """

    kind: ClassVar[str] = "Mix"
    children: tuple[Block, ...]
    weights: tuple[tuple[float, ...], ...] | str | None
    steps: int
    lr: float

    def __init__(self, *children: Block, weights: Any = None, steps: int = 1, lr: float = 10.0) -> None:
        kids = _children("Mix", children)
        object.__setattr__(self, "children", kids)
        if isinstance(weights, str):
            if weights != "emea":
                raise CompositionError(f"Mix: unknown weights {weights!r}", hint="a list of numbers, None or 'emea'")
            if int(steps) < 0 or not math.isfinite(float(lr)) or float(lr) <= 0:
                raise CompositionError("Mix(weights='emea'): steps must be >= 0 and lr > 0")
            object.__setattr__(self, "weights", "emea")
        else:
            object.__setattr__(self, "weights", _weights("Mix", weights, len(kids)))
        object.__setattr__(self, "steps", int(steps))
        object.__setattr__(self, "lr", float(lr))

    @property
    def emea(self) -> bool:
        return self.weights == "emea"

    def layer_weights(self, layer: int) -> tuple[float, ...]:
        """The normalised weights used at ``layer`` (fixed weights only)."""
        if self.weights is None:
            return tuple(1.0 / len(self.children) for _ in self.children)
        if self.weights == "emea":
            raise CompositionError("Mix(weights='emea') has per-example weights; read AdapterModel.last_mix_weights")
        rows = self.weights
        if len(rows) == 1:
            return rows[0]
        if layer >= len(rows):
            raise CompositionError(f"Mix: {len(rows)} per-layer weight rows but the model has layer {layer}")
        return rows[layer]


@dataclass(frozen=True, init=False)
class Ensemble(_Composite):
    """Output-level ensemble: each member runs on the whole batch; outputs are averaged.

    ``mode="probs"`` averages ``softmax(logits)`` (the returned ``logits`` are the log of that
    average, so ``softmax`` gives the ensemble probabilities); ``mode="logits"`` averages logits
    (or ``last_hidden_state`` for bare models).
    """

    kind: ClassVar[str] = "Ensemble"
    children: tuple[Block, ...]
    weights: tuple[float, ...]
    mode: str

    def __init__(self, *children: Block, weights: Sequence[float] | None = None, mode: str = "probs") -> None:
        kids = _children("Ensemble", children)
        if mode not in ("probs", "logits"):
            raise CompositionError(f"Ensemble: mode {mode!r} is not 'probs' or 'logits'")
        w = _weights("Ensemble", list(weights), len(kids)) if weights is not None else None
        object.__setattr__(self, "children", kids)
        object.__setattr__(self, "weights", w[0] if w else tuple(1.0 / len(kids) for _ in kids))
        object.__setattr__(self, "mode", mode)


@dataclass(frozen=True, init=False)
class Parallel(_Composite):
    """The ``adapters`` library's Parallel: the batch is replicated, branch k's rows are ``[k*B, (k+1)*B)``."""

    kind: ClassVar[str] = "Parallel"
    children: tuple[Block, ...]

    def __init__(self, *children: Block) -> None:
        object.__setattr__(self, "children", _children("Parallel", children))


@dataclass(frozen=True, init=False)
class Route(_Composite):
    """Example ``i`` of the batch runs with ``adapter_names[i]`` (a name, a site block, or None = base model)."""

    kind: ClassVar[str] = "Route"
    children: tuple[Block | None, ...]

    def __init__(self, adapter_names: Sequence[Block | None]) -> None:
        if isinstance(adapter_names, str) or not isinstance(adapter_names, Sequence):
            raise CompositionError("Route(adapter_names=[...]) takes one entry per example",
                                   hint="e.g. Route(['a', None, 'b'])")
        object.__setattr__(self, "children", _children("Route", tuple(adapter_names), allow_none=True))

    @property
    def adapter_names(self) -> tuple[Block | None, ...]:
        return self.children


BLOCK_TYPES: dict[str, type] = {c.kind: c for c in (Stack, Fuse, Mix, Ensemble, Parallel, Route)}
REPLICATING = (Parallel, Ensemble)
SITE_BLOCKS = (Stack, Fuse, Mix)
ALLOWED: dict[str, str] = {
    "Stack": "adapter names and any block",
    "Fuse": "adapter names and Stacks (of names, Stack, Fuse, Mix)",
    "Mix": "adapter names and Stacks, Fuse, Mix (not Parallel, Ensemble, Route)",
    "Ensemble": "adapter names, Stack, Fuse, Mix",
    "Parallel": "adapter names, Stack, Fuse, Mix",
    "Route": "adapter names, None, Stack, Fuse, Mix",
}


def as_block(spec: Block | Sequence[Block]) -> Block:
    """Several top-level names/blocks mean a Stack, as ``activate('a', 'b')`` always did."""
    if isinstance(spec, str | _Composite):
        return spec
    items = tuple(spec)
    return items[0] if len(items) == 1 else Stack(*items)


def top_chain(block: Block | None) -> list[Block]:
    """The top-level Stack flattened (where self-hooking and merged adapters may stand); [] for None."""
    if block is None:
        return []
    if isinstance(block, Stack):
        return [x for c in block.children for x in top_chain(c)]
    return [block]


def leaf_names(block: Block | None) -> list[str]:
    """Every adapter name ``block`` runs, depth first, duplicates kept ([] for None)."""
    if block is None:
        return []
    return [block] if isinstance(block, str) else list(block.leaves())


def used_names(block: Block | None) -> list[str]:
    """Adapter and fusion-layer names ``block`` uses, in first-appearance order, without duplicates.

    A ``Fuse``'s fusion layer counts after its members: what a block depends on, as a manifest lists it.
    """
    out: list[str] = []

    def walk(node: Block | None) -> None:
        if node is None:
            return
        if isinstance(node, str):
            out.append(node)
            return
        for child in node.children:
            walk(child)
        if isinstance(node, Fuse):
            out.append(node.fusion)

    walk(block)
    return list(dict.fromkeys(out))


def rename(block: Block | None, leaf: Callable[[str], Block], fusion: Callable[[str], str] | None = None) -> Block | None:
    """The same tree with every adapter name ``n`` replaced by ``leaf(n)`` (a name or a block) and, with
    ``fusion``, every ``Fuse``'s fusion layer ``f`` by ``fusion(f)``. Unchanged subtrees are kept as they are."""
    if block is None:
        return None
    if isinstance(block, str):
        return leaf(block)
    kids = tuple(rename(c, leaf, fusion) for c in block.children)
    layer = fusion(block.fusion) if fusion is not None and isinstance(block, Fuse) else None
    if kids == block.children and layer in (None, getattr(block, "fusion", None)):
        return block
    out = copy.copy(block)
    object.__setattr__(out, "children", kids)
    if layer is not None:
        object.__setattr__(out, "fusion", layer)
    return out


def summary(block: Block | None) -> str:
    """A one-line rendering, ``Stack(a, Fuse(b, c))``, for messages and descriptions."""
    if block is None or isinstance(block, str):
        return str(block)
    return f"{block.kind}({', '.join(summary(c) for c in block.children)})"


def validate(block: Block) -> None:
    """Raise :class:`CompositionError` if the tree nests blocks in a way that is not defined."""
    replicating: list[str] = []

    def walk(node: Block | None, parent: str | None, top_chain: bool) -> None:
        if node is None or isinstance(node, str):
            return
        kind = node.kind
        if parent is not None and parent != "Stack":
            ok = isinstance(node, SITE_BLOCKS)
            if parent == "Fuse":
                ok = isinstance(node, Stack)
            if not ok:
                raise CompositionError(f"{kind} cannot be nested inside {parent}",
                                       hint=f"{parent} may hold: {ALLOWED[parent]}")
        if isinstance(node, REPLICATING):
            if not top_chain:
                raise CompositionError(f"{kind} must be the top-level block or inside the top-level Stack",
                                       hint="it replicates the batch once for the whole model")
            replicating.append(kind)
        if isinstance(node, Mix) and node.emea and parent not in (None, "Stack"):
            raise CompositionError("Mix(weights='emea') must be the top-level block or inside a Stack")
        for child in node.children:
            walk(child, kind, top_chain and isinstance(node, Stack))

    walk(block, None, True)
    if len(replicating) > 1:
        raise CompositionError(f"at most one Parallel/Ensemble per composition (got {replicating})",
                               hint="nesting batch replication is not defined")


def to_json(block: Block) -> Any:
    """The JSON form: a name is a string; a block is ``{"type": ..., "children": [...], <options>}``."""
    if block is None or isinstance(block, str):
        return block
    out: dict[str, Any] = {"type": block.kind, "children": [to_json(c) for c in block.children]}
    if isinstance(block, Fuse):
        out["fusion"] = block.fusion
    elif isinstance(block, Mix):
        out["weights"] = block.weights if block.weights == "emea" else (
            [list(r) for r in block.weights] if block.weights is not None else None)
        if block.emea:
            out.update(steps=block.steps, lr=block.lr)
    elif isinstance(block, Ensemble):
        out.update(weights=list(block.weights), mode=block.mode)
    return out


def from_json(data: Any) -> Block:
    """Inverse of :func:`to_json`; unknown types or keys raise :class:`CompositionError`."""
    if isinstance(data, str):
        return data
    if not isinstance(data, dict) or data.get("type") not in BLOCK_TYPES or not isinstance(data.get("children"), list):
        raise CompositionError(f"not a composition block: {data!r}",
                               hint=f"expected a name or {{'type': one of {sorted(BLOCK_TYPES)}, 'children': [...]}}")
    kind = data["type"]
    allowed = {"type", "children", *{"Fuse": ("fusion",), "Mix": ("weights", "steps", "lr"),
                                     "Ensemble": ("weights", "mode")}.get(kind, ())}
    extra = sorted(set(data) - allowed)
    if extra:
        raise CompositionError(f"{kind}: unknown keys {extra}", hint=f"allowed: {sorted(allowed)}")
    kids = [None if c is None and kind == "Route" else from_json(c) for c in data["children"]]
    opts = {k: v for k, v in data.items() if k not in ("type", "children")}
    if kind == "Route":
        return Route(kids)
    if (kind == "Mix" and isinstance(opts.get("weights"), list) and len(opts["weights"]) == 1
            and isinstance(opts["weights"][0], list)):  # one row for every layer; a flat list stays a row
        opts["weights"] = opts["weights"][0]
    return BLOCK_TYPES[kind](*kids, **opts)


def document(block: Block) -> dict[str, Any]:
    """A self-describing JSON document (``{"format": ..., "composition": ...}``) for publishing."""
    return {"format": JSON_FORMAT, "composition": to_json(block)}


def from_document(doc: Any) -> Block:
    if not isinstance(doc, dict) or doc.get("format") != JSON_FORMAT or "composition" not in doc:
        raise CompositionError(f"not a composition document (expected format {JSON_FORMAT!r})")
    return from_json(doc["composition"])
