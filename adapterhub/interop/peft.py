"""Deprecated: PEFT directories are read and written by :mod:`adapterhub.runtime.formats.peft`."""

from __future__ import annotations

import warnings

from ..runtime.formats.peft import export_peft, read_peft_dir

warnings.warn("adapterhub.interop.peft moved to adapterhub.runtime.formats.peft", DeprecationWarning, stacklevel=2)

__all__ = ["export_peft", "read_peft_dir"]
