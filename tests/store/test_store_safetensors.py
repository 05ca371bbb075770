"""Our safetensors header gate: hostile headers are refused before any library parses the file."""

from __future__ import annotations

import json
import pickle
import struct

import pytest
from support.store_support import raw_safetensors, safetensors_bytes

from adapterhub.errors import UnsafeFileError
from adapterhub.store import check_safetensors, check_safetensors_bytes


def tensor(dtype: str, shape: list[int], begin: int, end: int) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def test_valid_file_matches_the_reference_library(tmp_path):
    import numpy as np
    from safetensors.numpy import save_file

    path = tmp_path / "ok.safetensors"
    save_file({"a": np.zeros((3, 4), np.float32), "b": np.ones(5, np.int64), "empty": np.zeros((0, 2), np.float16)},
              str(path), metadata={"k": "v"})
    header = check_safetensors(path)
    assert {t.name: t.shape for t in header.tensors} == {"a": (3, 4), "b": (5,), "empty": (0, 2)}
    assert header.metadata == {"k": "v"}
    assert header.data_start + sum(t.nbytes for t in header.tensors) == header.file_size


def test_hand_built_file_passes():
    assert check_safetensors_bytes(safetensors_bytes(8)).tensors[0].shape == (8,)


@pytest.mark.parametrize("data, needle", [
    (struct.pack("<Q", 2**64 - 1) + b"{}", "exceeds"),
    (struct.pack("<Q", 1000) + b"{}", "past the end"),
    (b"\x01\x02", "8-byte header size"),
    (raw_safetensors({"a": tensor("F32", [2], 0, 8), "b": tensor("F32", [2], 4, 12)}, b"\0" * 12), "overlaps"),
    (raw_safetensors({"a": tensor("F32", [2], 0, 8)}, b"\0" * 12), "trailing or missing"),
    (raw_safetensors({"a": tensor("F32", [2], 0, 8)}, b"\0" * 4), "trailing or missing"),
    (raw_safetensors({"a": tensor("F32", [2], 4, 12)}, b"\0" * 12), "gap"),
    (raw_safetensors({"a": tensor("Q4", [2], 0, 1)}, b"\0"), "not allowed"),
    (raw_safetensors({"a": tensor("F4", [2], 0, 1)}, b"\0"), "not allowed"),
    (raw_safetensors({"a": tensor("F32", [2**62, 2**62], 0, 8)}, b"\0" * 8), "overflow"),
    (raw_safetensors({"a": tensor("F32", [3], 0, 8)}, b"\0" * 8), "needs 12"),
    (raw_safetensors({"a": tensor("F32", [-1], 0, 0)}), "unsigned"),
    (raw_safetensors({"a": tensor("F32", [True], 0, 4)}, b"\0" * 4), "unsigned"),
    (raw_safetensors({"a": {**tensor("F32", [1], 0, 4), "extra": 1}}, b"\0" * 4), "unexpected keys"),
    (raw_safetensors({"__metadata__": {"k": 1}}), "strings to strings"),
    (raw_safetensors(b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, '
                     b'"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', b"\0" * 4), "duplicate"),
    (raw_safetensors(b'{"a": \xff}'), "UTF-8"),
    (raw_safetensors(b"[1, 2]"), "begin with"),
    (raw_safetensors(b'{"a": NaN}'), "strict"),
])
def test_hostile_headers_are_refused(data, needle):
    with pytest.raises(UnsafeFileError) as err:
        check_safetensors_bytes(data)
    assert needle.lower() in str(err.value).lower()


def test_leading_whitespace_is_refused_trailing_padding_accepted():
    header = json.dumps({"a": tensor("F32", [1], 0, 4)}).encode()
    assert check_safetensors_bytes(raw_safetensors(header + b"    ", b"\0" * 4)).tensors[0].name == "a"
    with pytest.raises(UnsafeFileError, match="whitespace"):
        check_safetensors_bytes(raw_safetensors(b"    " + header, b"\0" * 4))
    with pytest.raises(UnsafeFileError, match="end with"):
        check_safetensors_bytes(raw_safetensors(header + b"\n\t", b"\0" * 4))


def test_pickle_and_torch_zip_are_named_as_such():
    with pytest.raises(UnsafeFileError, match="pickle"):
        check_safetensors_bytes(pickle.dumps({"w": [1.0] * 100}, protocol=4))
    with pytest.raises(UnsafeFileError, match="zip"):
        check_safetensors_bytes(b"PK\x03\x04" + b"\0" * 200)


def test_header_cap_is_configurable():
    data = safetensors_bytes(8)
    with pytest.raises(UnsafeFileError, match="limit"):
        check_safetensors_bytes(data, max_header_size=16)


def test_one_safetensors_gate_for_new_and_cached_blobs(tmp_path):
    """pull and archive share store/safetensors_check's gates: a temp file and a cached blob are checked alike."""
    from adapterhub.store.safetensors_check import blob_check, temp_file_check

    assert temp_file_check("adapter_config.json", 10) is None and blob_check("adapter_config.json") is None
    name = "w/adapter.safetensors"
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_bytes(safetensors_bytes(8))
    bad.write_bytes(b"\x80\x04" + b"\x00" * 30)  # a pickle named .safetensors
    temp_file_check(name, good.stat().st_size)(good)
    with good.open("rb") as fh:
        blob_check(name)(fh, good.stat().st_size)
    with pytest.raises(UnsafeFileError, match=f"{name}: not a valid safetensors file"):
        temp_file_check(name, bad.stat().st_size)(bad)
    with bad.open("rb") as fh, pytest.raises(UnsafeFileError, match=f"{name}: not a valid safetensors file"):
        blob_check(name)(fh, bad.stat().st_size)
