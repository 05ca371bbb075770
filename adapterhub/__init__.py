"""adapterhub: the package manager for parameter-efficient fine-tuning.

Importing ``adapterhub`` is cheap (no torch, no transformers): the CLI and the registry need neither.
The runtime (``adapterhub.runtime``) imports torch when it is first used.
"""

from typing import Any

from ._version import __version__

__all__ = ["__version__", "load"]


def __getattr__(name: str) -> Any:
    """``adapterhub.load`` (:func:`adapterhub.loading.load`), imported on first use: it needs torch, and
    it sits above the runtime, so the package root names it without importing it."""
    if name == "load":
        import importlib

        return importlib.import_module("adapterhub.loading").load
    raise AttributeError(f"module 'adapterhub' has no attribute {name!r}")
