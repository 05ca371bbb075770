"""Reading and writing adapter weight files: safetensors only, header checked before loading.

Runtime never unpickles (DESIGN principle 3). ``read_safetensors`` refuses files whose header
is malformed or whose tensor offsets do not tile the data section, before any tensor is built.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..errors import UnsafeFileError

MAX_HEADER = 100 * 1024 * 1024


def check_header(path: Path) -> dict:
    """Validate the safetensors header of ``path`` and return it (without ``__metadata__``)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise UnsafeFileError(f"{path}: too short to be a safetensors file")
        (n,) = struct.unpack("<Q", raw)
        if n > MAX_HEADER or 8 + n > size:
            raise UnsafeFileError(f"{path}: safetensors header length {n} is out of range")
        try:
            header = json.loads(fh.read(n))
        except ValueError as exc:
            raise UnsafeFileError(f"{path}: safetensors header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise UnsafeFileError(f"{path}: safetensors header is not an object")
    header.pop("__metadata__", None)
    spans = sorted((tuple(v["data_offsets"]), k) for k, v in header.items())
    end = 0
    for (start, stop), name in spans:
        if start != end or stop < start:
            raise UnsafeFileError(f"{path}: tensor {name!r} has overlapping or gapped data offsets")
        end = stop
    if 8 + n + end != size:
        raise UnsafeFileError(f"{path}: data section is {size - 8 - n} bytes but tensors need {end}")
    return header


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    p = Path(path)
    check_header(p)
    return load_file(str(p))


def write_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path),
              metadata={"format": "pt", **(metadata or {})})
