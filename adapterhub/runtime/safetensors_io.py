"""Reading and writing adapter weight files: safetensors only, header checked before loading.

Runtime never unpickles (DESIGN principle 3). ``read_safetensors`` passes every file through the
store's strict header gate (:func:`adapterhub.store.safetensors_check.check_safetensors`: strict
JSON, allowed dtypes, offsets that tile the data section) before any tensor is built.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..store.safetensors_check import check_safetensors


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    p = Path(path)
    check_safetensors(p)
    return load_file(str(p))


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path),
              metadata={"format": "pt", **(metadata or {})})
