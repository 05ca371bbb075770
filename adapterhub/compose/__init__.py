"""Composing adapters on one frozen model (see ``docs/compose.md``).

Activation space (this package's blocks, run by :meth:`AdapterModel.activate`): ``Stack``,
``Fuse`` (AdapterFusion), ``Mix`` (incl. ``weights="emea"``), ``Ensemble``, ``Route`` and the
``adapters`` library's ``Parallel``. The blocks themselves are torch-free data; compiling them
(``adapterhub.runtime.activation``) imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..blocks import (
    Block,
    Ensemble,
    Fuse,
    Mix,
    Parallel,
    Route,
    Stack,
    document,
    from_document,
    from_json,
    to_json,
    validate,
)
from ..errors import AdapterStateError, CompositionError
from .published import load_composition, save_composition

if TYPE_CHECKING:
    from ..runtime.handle import AdapterModel

__all__ = [
    "Block", "Ensemble", "Fuse", "Mix", "Parallel", "Route", "Stack", "document", "entropy", "from_document",
    "from_json", "fusion_regularization", "load_composition", "load_fusion", "save_composition", "to_json",
    "validate",
    # weight-space composition (docs/soups.md), imported lazily (torch) by __getattr__ below
    "Average", "GreedySoup", "Merge", "WeightedSum", "attached", "save_soup", "soup_record",
]

_WEIGHT_SPACE = {"Average": "average", "WeightedSum": "average", "save_soup": "average", "soup_record": "average",
                 "GreedySoup": "soup", "attached": "soup", "Merge": "merge"}


def __getattr__(name: str) -> Any:
    """Weight-space names (they import torch) load on first use, so ``adapterhub.compose`` stays torch-free."""
    if name in _WEIGHT_SPACE:
        import importlib

        return getattr(importlib.import_module(f".{_WEIGHT_SPACE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fusion_regularization(ah: AdapterModel, name: str) -> Any:
    """The dynamic fusion config's loss term ``0.01 * sum_layers ||I - W_v||^2`` for fusion ``name``."""
    entry = ah.entry(name)  # the live fusion layer: its loss term reads its tensors
    if entry.method.name != "fusion":
        raise AdapterStateError(f"{name!r} is a {entry.method.name} adapter, not a fusion layer")
    return entry.method.regularization(entry.tree)


def entropy(logits: Any, mask: Any = None) -> Any:
    """Per-example mean prediction entropy (masked positions left out), as EMEA minimises it."""
    from ..runtime import activation  # deferred: adapterhub.compose stays torch-free

    return activation.entropy(logits, mask)


def load_fusion(ah: AdapterModel, requirement: str, *, index: Any = None, activate: bool = True,
                **pull_options: Any) -> str:
    """Resolve and pull a published fusion layer and its members from a registry, attach all; returns its name.

    Members already attached under their published name are reused; the others are loaded under
    their published names. ``pull_options`` go to :func:`adapterhub.store.pull` (``cache_dir``,
    ``offline``, ``sources``...).
    """
    from ..runtime.attached import find_attached  # deferred: adapterhub.compose stays torch-free
    from ..store import pull  # deferred: the store imports requests

    pulled = pull(requirement, index=index, **pull_options)
    if pulled.manifest.adapter.method != "fusion":
        raise CompositionError(f"{requirement}: {pulled.name} is a {pulled.manifest.adapter.method} adapter, not a fusion")
    for dep in pulled.dependencies:
        if find_attached(ah.attached, dep.name, published_first=True) is None:
            ah.load(dep.path, name=dep.name, activate=False)
    name = pulled.name if pulled.name not in ah.adapters else f"{pulled.name}-fusion"
    return ah.load(pulled.path, name=name, activate=activate)
