"""Fuzz targets: every parser of untrusted bytes, with the one outcome rule they must keep.

A target takes raw bytes and either returns or raises an :class:`~adapterhub.errors.AdapterHubError`
(the server's ``HubApiError`` is one). Anything else — ``RecursionError``, ``UnicodeEncodeError``,
``BadZipFile``, ``KeyError``... — is a bug the fuzzer reports. Targets also check what they accept:
accepted JSON must serialise back out, accepted archives hold only safe paths, an accepted
safetensors header tiles its data exactly. ``seeds(name)`` gives valid inputs to start from.

Run by ``benchmarks/fuzz.py`` (atheris, coverage-guided) and, briefly, by ``tests/project/test_fuzz.py``.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import io
import json
import struct
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from adapterhub.errors import AdapterHubError

ENTRY_NAME = "sst2-houlsby"
ARCHIVE_FORMATS = ("zip", "tar", "tar.gz")


def target_json(data: bytes) -> None:
    from adapterhub.jsonio import loads_strict

    value = loads_strict(data, "fuzz")
    json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")  # what it accepts can be written


def target_manifest(data: bytes) -> None:
    from adapterhub.jsonio import dumps_canonical
    from adapterhub.manifest import loads_manifest, manifest_to_dict

    manifest = loads_manifest(data, "fuzz")
    as_json = manifest_to_dict(manifest)
    again = loads_manifest(dumps_canonical(as_json).encode("utf-8"), "fuzz (round trip)")
    assert manifest_to_dict(again) == as_json, "a manifest does not survive a write and a read"


def target_index_entry(data: bytes) -> None:
    from adapterhub.jsonio import dumps_canonical
    from adapterhub.registry.entries import parse_entry_file

    for entry in parse_entry_file(data, "fuzz", ENTRY_NAME):
        dumps_canonical(entry.to_json()).encode("utf-8")
        with contextlib.suppress(AdapterHubError):
            entry.manifest  # noqa: B018 - parsed lazily, as resolving does


def target_safetensors_header(data: bytes) -> None:
    from adapterhub.store.safetensors_check import check_safetensors_bytes

    header = check_safetensors_bytes(data, where="fuzz")
    assert sum(t.nbytes for t in header.tensors) == header.file_size - header.data_start


def target_archive(data: bytes) -> None:
    """The first byte picks the format; the rest is the archive."""
    from adapterhub.paths import path_problem
    from adapterhub.store.extract import read_archive

    if not data:
        return
    fmt = ARCHIVE_FORMATS[data[0] % len(ARCHIVE_FORMATS)]
    for member in read_archive(data[1:], fmt, "fuzz"):
        assert member.path and path_problem(member.path) is None, f"unsafe member {member.path!r} accepted"


def target_server_commit(data: bytes) -> None:
    from adapterhub.server.commit_lines import CommitHeader, read_commit
    from adapterhub.server.names import check_path

    for line in read_commit(data.splitlines(keepends=True)):
        if isinstance(line, CommitHeader):
            assert line.summary.strip()
        else:
            assert check_path(line.path) == line.path


TARGETS: dict[str, tuple[Callable[[bytes], None], tuple[str, ...]]] = {
    "json": (target_json, ("adapterhub.jsonio",)),
    "manifest": (target_manifest, ("adapterhub.manifest", "adapterhub.schema")),
    "index_entry": (target_index_entry, ("adapterhub.registry.entries",)),
    "safetensors_header": (target_safetensors_header, ("adapterhub.store.safetensors_check",)),
    "archive": (target_archive, ("adapterhub.store.extract",)),
    "server_commit": (target_server_commit, ("adapterhub.server.commit_lines",)),
}
"""name -> (target, the modules it exercises: imported up front, so the fuzzer can instrument them)."""


def prepare(name: str) -> Callable[[bytes], None]:
    """Import what target ``name`` exercises and return the target."""
    run, modules = TARGETS[name]
    for module in modules:
        importlib.import_module(module)
    return run


# --- seeds and dictionaries ----------------------------------------------------------------------

_JSON_TOKENS = [b"[", b"{", b"[[[[[[[[", b'{"a":{"a":{"a":', b"\\ud800", b"\\udfff", b"\\ud83d\\ude00", b"\\u0000",
                b"1e999", b"-1e400", b"NaN", b"Infinity", b"1e308", b"9" * 40, b'"x":1,"x":2', b"\xef\xbb\xbf",
                b"\xff", b"null", b"true"]
DICTIONARIES: dict[str, list[bytes]] = {
    "json": _JSON_TOKENS,
    "manifest": _JSON_TOKENS + [b'"schema_version"', b'"2.0"', b'"files"', b'"dependencies"', b'"sources"',
                                b'"../x"', b'"composition"'],
    "index_entry": _JSON_TOKENS + [b'"v":1', b'"v":2', b'"yanked"', b'"manifest_sha256"', b"\n"],
    "safetensors_header": _JSON_TOKENS + [b'"dtype"', b'"F4"', b'"shape"', b'"data_offsets"', b'"__metadata__"',
                                          b"18446744073709551615", b"\xff\xff\xff\xff\xff\xff\xff\x7f"],
    "archive": [b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"ustar\x00", b"ustar  \x00", b"\x1f\x8b\x08",
                b"../", b"/etc/", b"\x00" * 512, b"././@LongLink", b"PaxHeader", b"path=", b"size="],
    "server_commit": _JSON_TOKENS + [b'"key":"header"', b'"key":"file"', b'"key":"lfsFile"', b'"deletedFolder"',
                                     b'"encoding":"utf-8"', b'"path":"../x"', b'"oid"', b"\n"],
}
"""libFuzzer dictionary entries per target: the tokens that reach the parsers' edge cases sooner."""



def _bundled_entries() -> bytes:
    from adapterhub.resources import bundled_index_dir

    index = bundled_index_dir()
    return (index / "ss" / "t2" / ENTRY_NAME).read_bytes()


def _bundled_manifest() -> bytes:
    first = _bundled_entries().splitlines()[0]
    return json.dumps(json.loads(first)["manifest"], indent=1).encode()


def _safetensors(tensors: dict[str, tuple[str, list[int], int]], metadata: dict[str, str] | None = None) -> bytes:
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, (dtype, shape, nbytes) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + bytes(range(256)) * (offset // 256) + bytes(offset % 256)


def _archive(fmt: str, files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    if fmt == "zip":
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name, body in files.items():
                zf.writestr(name, body)
    else:
        with tarfile.open(fileobj=buf, mode="w:gz" if fmt == "tar.gz" else "w") as tf:
            for name, body in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(body)
                tf.addfile(info, io.BytesIO(body))
    return bytes([ARCHIVE_FORMATS.index(fmt)]) + buf.getvalue()


def _commit_body(*lines: dict[str, object]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def seeds(name: str) -> list[bytes]:
    """Valid (and a few nearly valid) inputs for target ``name``."""
    weights = _safetensors({"adapter.down.weight": ("F32", [4, 8], 128), "adapter.up.weight": ("F16", [8, 4], 64)},
                           {"format": "pt"})
    if name == "json":
        return [b'{"a": [1, 2.5, -3e-7, true, false, null], "b": {"c": "\\u00e9\\ud83d\\ude00"}}', b"[]", b'"x"',
                _bundled_manifest()]
    if name == "manifest":
        return [_bundled_manifest()]
    if name == "index_entry":
        return [_bundled_entries()]
    if name == "safetensors_header":
        return [weights, _safetensors({"w": ("BF16", [2, 2], 8)}), _safetensors({})]
    if name == "archive":
        files = {"adapter_config.json": b'{"config": {"reduction_factor": 16}}', "adapter.safetensors": weights}
        nested = {f"sst2/{k}": v for k, v in files.items()}
        return [_archive(fmt, f) for fmt in ARCHIVE_FORMATS for f in (files, nested)]
    if name == "server_commit":
        content = base64.b64encode(weights).decode()
        return [
            _commit_body({"key": "header", "value": {"summary": "upload", "description": "", "parentCommit": "a" * 40}},
                         {"key": "file", "value": {"path": "dir/adapter.safetensors", "content": content,
                                                   "encoding": "base64"}},
                         {"key": "lfsFile", "value": {"path": "big.bin", "algo": "sha256", "oid": "b" * 64, "size": 9}},
                         {"key": "deletedFile", "value": {"path": "old.txt"}},
                         {"key": "deletedFolder", "value": {"path": "old/"}}),
            _commit_body({"key": "header", "value": {"summary": "utf-8"}},
                         {"key": "file", "value": {"path": "README.md", "content": "# hi\n", "encoding": "utf-8"}}),
        ]
    raise KeyError(name)


def write_dictionary(name: str, path: Path) -> Path:
    """``DICTIONARIES[name]`` in libFuzzer's ``-dict`` format (one escaped string per line)."""
    lines = ['"' + "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02x}" for b in token) + '"'
             for token in DICTIONARIES[name]]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_seeds(name: str, directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    items = seeds(name)
    for i, data in enumerate(items):
        (directory / f"seed-{i:02d}").write_bytes(data)
    return len(items)
