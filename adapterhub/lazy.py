"""Package attributes loaded on first use (PEP 562), so importing one module of a package loads only it.

Importing ``adapterhub.store.trust`` runs ``adapterhub/store/__init__.py`` first; if that file imported
every public name, each command would pay for the whole package (a warm ``adapterhub pull`` must stay
near 0.15 s). A package lists ``name -> relative module`` and binds the two functions returned here as
its ``__getattr__`` and ``__dir__``.

A function named like its own module (``store.pull`` in ``store/pull.py``) must be imported eagerly
instead: importing the submodule sets the package attribute of that name to the module, which would
hide the lazily bound function.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` whose public ``name`` lives in module ``exports[name]``."""

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)  # later lookups are plain attribute reads
        return value

    def dir_() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return getattr_, dir_
