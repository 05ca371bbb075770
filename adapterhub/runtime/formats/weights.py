"""A foreign adapter directory's weight file: safetensors (header checked), else its legacy pickle.

Pickle is read only through :func:`adapterhub.store.convert.pickle_tensors` (PyTorch's weights-only
loader on torch >= 2.6, flat ``{name: tensor}`` mappings only), the one place adapterhub unpickles.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ...errors import NotFoundError
from ...store.convert import pickle_tensors
from ..safetensors_io import read_safetensors


def load_weights(directory: Path, stem: str = "adapter", legacy: str = "pytorch_adapter.bin") -> dict[str, torch.Tensor]:
    """``<stem>.safetensors`` if present, else ``legacy`` (a pickle) through the weights-only converter."""
    st = directory / f"{stem}.safetensors"
    if st.is_file():
        return read_safetensors(st)
    binary = directory / legacy
    if binary.is_file():
        return pickle_tensors(binary.read_bytes(), str(binary))
    raise NotFoundError(f"{directory}: neither {stem}.safetensors nor {legacy} found")
