"""``adapterhub.load(model, "hf:ORG/REPO")``: pull, then attach, in one call.

The runtime never downloads (``AdapterModel.load`` takes a directory); this helper sits above it and the
store: it pulls the requirement (an index name, ``NAME==1.0``, or a Hub reference
``hf:ORG/REPO[@REV][:SUBFOLDER]``, verified by the Hub's own hashes) into the cache, then attaches the
verified view to ``model`` (after its dependencies, e.g. a fusion layer's members). A local directory is
attached as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .runtime import AdapterModel, wrap
from .store import PulledAdapter, pull


def load(model: Any, requirement: str | Path, *, name: str | None = None, activate: bool = True,
         force: bool = False, index: Any = None, offline: bool | None = None, endpoint: str | None = None,
         token: str | bool | None = None, progress: bool | None = False) -> AdapterModel:
    """Attach the adapter ``requirement`` names to ``model`` (pulling it first); returns the model's handle.

    ``name``/``activate``/``force`` are :meth:`AdapterModel.load`'s; ``index``, ``offline``, ``endpoint``,
    ``token`` and ``progress`` are :func:`adapterhub.store.pull`'s. The adapter's name on the handle is
    ``name``, else the (derived) manifest's name.
    """
    handle = wrap(model)
    if isinstance(requirement, Path) or Path(str(requirement)).is_dir():
        handle.load(requirement, name=name, force=force, activate=activate)
        return handle
    pulled: PulledAdapter = pull(str(requirement), index=index, offline=offline, endpoint=endpoint, token=token,
                                 progress=progress)
    for dep in pulled.dependencies:  # a fusion layer's members, under the names its config uses
        if dep.manifest.adapter.method != "composition" and dep.name not in handle.adapters:
            handle.load(dep.path, name=dep.name, force=force, activate=False)
    handle.load(pulled.path, name=name or pulled.name, force=force, activate=activate)
    return handle
