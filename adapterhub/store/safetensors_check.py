"""Our own strict reading of a safetensors header, done before any library parses the file.

The format is ``u64 little-endian N`` + ``N`` bytes of UTF-8 JSON + a data buffer. A hostile header
can claim a huge size, point outside the file, overlap tensors (polyglot files), repeat keys (parsers
disagree on which wins), use dtypes a loader mishandles, or make shape arithmetic overflow. We check
all of that here, with Python integers (no overflow) and a small header cap, so the runtime and the
store share one gate. Only after :func:`check_safetensors` passes may ``safetensors`` open the file.

Policy decisions (pinned by tests):

- The header must start with ``{``: leading whitespace is refused. The safetensors README says the
  header "MUST begin with ``{``"; newer Rust readers accept leading spaces. Accepting less than every
  parser is the safe side of that parser differential.
- Trailing ASCII spaces inside the header are accepted: the reference writer pads the header with
  spaces to align the data buffer.
- Sub-byte dtypes (F4, F6_*) are refused: no adapter needs them and their size rules differ.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import AdapterHubError, UnsafeFileError
from ..jsonio import loads_strict

MAX_HEADER_SIZE = 16 * 1024 * 1024
"""Our cap on the JSON header (safetensors itself allows 100 MB; an adapter's header is kilobytes)."""

MAX_RANK = 16
MAX_U64 = 2**64 - 1

DTYPE_SIZES: Mapping[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
}
"""Allowed dtypes and their sizes in bytes."""

_TENSOR_KEYS = frozenset({"dtype", "shape", "data_offsets"})


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True)
class SafetensorsHeader:
    """What a validated header says: tensors (in file order), metadata, and where data starts."""

    tensors: tuple[TensorInfo, ...]
    metadata: dict[str, str]
    header_size: int
    data_start: int
    file_size: int

    def tensor(self, name: str) -> TensorInfo:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)


def _sniff_foreign(prefix: bytes) -> str | None:
    """Name a known non-safetensors format from its first bytes (for a helpful message)."""
    if len(prefix) >= 2 and prefix[0] == 0x80 and 2 <= prefix[1] <= 5:
        return "a Python pickle"
    if prefix.startswith(b"PK\x03\x04"):
        return "a zip archive (PyTorch's torch.save format holds a pickle)"
    if prefix.startswith(b"\x1f\x8b"):
        return "a gzip file"
    if prefix[:1] in (b"{", b"["):
        return "a JSON document"
    return None


def _fail(where: str, message: str) -> UnsafeFileError:
    return UnsafeFileError(f"{where}: not a valid safetensors file: {message}",
                           hint="only safetensors weights are loaded; re-export the adapter with safetensors")


def _check_tensor(where: str, name: str, info: Any) -> TensorInfo:
    if not isinstance(info, dict):
        raise _fail(where, f"tensor {name!r}: entry is not a JSON object")
    keys = set(info)
    if keys != _TENSOR_KEYS:
        extra, missing = sorted(keys - _TENSOR_KEYS), sorted(_TENSOR_KEYS - keys)
        raise _fail(where, f"tensor {name!r}: unexpected keys {extra} / missing keys {missing}")
    dtype = info["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise _fail(where, f"tensor {name!r}: dtype {dtype!r} is not allowed (allowed: {', '.join(DTYPE_SIZES)})")
    shape = info["shape"]
    if not isinstance(shape, list) or len(shape) > MAX_RANK:
        raise _fail(where, f"tensor {name!r}: shape must be a list of at most {MAX_RANK} dimensions")
    count = 1
    for dim in shape:
        if type(dim) is not int or dim < 0 or dim > MAX_U64:
            raise _fail(where, f"tensor {name!r}: shape {shape!r} has a dimension that is not an unsigned 64-bit int")
        count *= dim
        if count * DTYPE_SIZES[dtype] > MAX_U64:
            raise _fail(where, f"tensor {name!r}: shape {shape!r} overflows 64-bit size arithmetic")
    offsets = info["data_offsets"]
    if (not isinstance(offsets, list) or len(offsets) != 2
            or any(type(o) is not int or o < 0 or o > MAX_U64 for o in offsets)):
        raise _fail(where, f"tensor {name!r}: data_offsets must be two unsigned 64-bit ints")
    begin, end = offsets
    if end < begin:
        raise _fail(where, f"tensor {name!r}: data_offsets end {end} is before begin {begin}")
    if end - begin != count * DTYPE_SIZES[dtype]:
        raise _fail(where, f"tensor {name!r}: {end - begin} bytes at data_offsets but shape {shape} of {dtype} "
                           f"needs {count * DTYPE_SIZES[dtype]}")
    return TensorInfo(name, dtype, tuple(shape), begin, end)


def parse_header(raw: bytes, *, data_size: int, where: str = "<safetensors>") -> tuple[tuple[TensorInfo, ...], dict[str, str]]:
    """Validate the JSON header bytes against a data buffer of ``data_size`` bytes."""
    if not raw.startswith(b"{"):
        first = raw[:1]
        if first.isspace():
            raise _fail(where, "header starts with whitespace; adapterhub requires it to begin with '{'")
        raise _fail(where, "header does not begin with '{'")
    body = raw.rstrip(b" ")
    if not body.endswith(b"}"):
        raise _fail(where, "header must end with '}' (only space padding may follow it)")
    try:
        doc = loads_strict(body, where + " header")
    except AdapterHubError as exc:
        raise _fail(where, f"header is not strict UTF-8 JSON ({exc.message})") from None
    if not isinstance(doc, dict):
        raise _fail(where, "header is not a JSON object")
    metadata: dict[str, str] = {}
    tensors: list[TensorInfo] = []
    for name, info in doc.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                raise _fail(where, "__metadata__ must map strings to strings")
            metadata = dict(info)
            continue
        if not name:
            raise _fail(where, "a tensor has an empty name")
        tensors.append(_check_tensor(where, name, info))
    cursor = 0
    for t in sorted(tensors, key=lambda t: (t.begin, t.end)):
        if t.begin != cursor:
            kind = "overlaps the previous tensor" if t.begin < cursor else "leaves a gap before it"
            raise _fail(where, f"tensor {t.name!r} at data_offsets [{t.begin}, {t.end}] {kind} "
                               f"(expected it to start at {cursor})")
        cursor = t.end
    if cursor != data_size:
        raise _fail(where, f"tensors cover {cursor} bytes but the data buffer has {data_size} "
                           "(trailing or missing bytes)")
    return tuple(tensors), metadata


def check_safetensors_stream(fh: BinaryIO, file_size: int, *, where: str = "<safetensors>",
                             max_header_size: int = MAX_HEADER_SIZE) -> SafetensorsHeader:
    """Validate the file open as ``fh`` (positioned at 0) of ``file_size`` bytes."""
    prefix = fh.read(8)
    if len(prefix) < 8:
        raise _fail(where, f"only {len(prefix)} bytes; a safetensors file starts with an 8-byte header size")
    foreign = _sniff_foreign(prefix)
    (size,) = struct.unpack("<Q", prefix)
    if foreign and (size > max_header_size or 8 + size > file_size):
        raise _fail(where, f"this is {foreign}, not safetensors; pickled weights are never loaded")
    if size > max_header_size:
        raise _fail(where, f"header size {size} exceeds the {max_header_size}-byte limit")
    if 8 + size > file_size:
        raise _fail(where, f"header size {size} runs past the end of the {file_size}-byte file")
    if size < 2:
        raise _fail(where, f"header size {size} is too small for a JSON object")
    raw = fh.read(size)
    if len(raw) != size:
        raise _fail(where, "file ended inside the header")
    tensors, metadata = parse_header(raw, data_size=file_size - 8 - size, where=where)
    return SafetensorsHeader(tensors, metadata, size, 8 + size, file_size)


def check_safetensors(path: str | os.PathLike[str], *, max_header_size: int = MAX_HEADER_SIZE) -> SafetensorsHeader:
    """Validate a safetensors file on disk; raise :class:`UnsafeFileError` saying what is wrong."""
    p = Path(path)
    with p.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        return check_safetensors_stream(fh, size, where=str(p), max_header_size=max_header_size)


def check_safetensors_bytes(data: bytes, *, where: str = "<safetensors>",
                            max_header_size: int = MAX_HEADER_SIZE) -> SafetensorsHeader:
    """Validate safetensors bytes held in memory (tests, uploads)."""
    return check_safetensors_stream(io.BytesIO(data), len(data), where=where, max_header_size=max_header_size)


def is_safetensors_path(path: str) -> bool:
    """Whether a file named ``path`` must pass the header gate before it becomes a blob."""
    return path.endswith(".safetensors")


def temp_file_check(path: str, size: int) -> Callable[[Path], None] | None:
    """The check a blob writer runs on the finished temp file of ``path`` (``size`` bytes, already
    hashed) before it becomes a blob; None for files that are not safetensors."""
    if not is_safetensors_path(path):
        return None

    def check(temp: Path) -> None:
        with open(temp, "rb") as fh:
            check_safetensors_stream(fh, size, where=path)

    return check


def blob_check(path: str) -> Callable[[BinaryIO, int], None] | None:
    """The check run on a cached blob of ``path`` whose hash matched (the same gate, on an open
    file); None for files that are not safetensors."""
    if not is_safetensors_path(path):
        return None

    def check(fh: BinaryIO, size: int) -> None:
        check_safetensors_stream(fh, size, where=path)

    return check
