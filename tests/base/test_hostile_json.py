"""Hostile JSON everywhere untrusted JSON enters: one strict loader, typed errors, never a traceback.

Deep nesting used to raise ``RecursionError``; a lone surrogate escape and ``1e999`` (parsed as inf,
bypassing the NaN/Infinity refusal) passed the loader and broke whatever wrote the value out later.
"""

from __future__ import annotations

import json
import struct

import pytest
from support.manifest_samples import manifest

from adapterhub.errors import JSONFormatError, UnsafeFileError
from adapterhub.jsonio import MAX_JSON_DEPTH, loads_strict, nesting_depth
from adapterhub.manifest import loads_manifest
from adapterhub.registry import entry_path, init_index, open_index
from adapterhub.store import check_safetensors_bytes

DEEP = "[" * 5000 + "]" * 5000


def manifest_text(**overrides) -> str:
    return json.dumps(manifest(**overrides))


HOSTILE_MANIFESTS = {
    "deep nesting": manifest_text().replace('"dependencies": []', f'"dependencies": {DEEP}'),
    "deep object": manifest_text()[:-1] + ', "x-deep": ' + '{"a": ' * 3000 + "1" + "}" * 3000 + "}",
    "lone surrogate value": manifest_text(description="\ud800 sneaky"),
    "lone surrogate key": manifest_text()[:-1] + ', "x-\\udc00": 1}',
    "overflowing number": manifest_text().replace('"value": 0.87', '"value": 1e999'),
    "negative overflow": manifest_text().replace('"value": 0.87', '"value": -1e400'),
}


@pytest.mark.parametrize("kind", sorted(HOSTILE_MANIFESTS))
def test_hostile_manifest_json_is_a_format_error(kind: str) -> None:
    text = HOSTILE_MANIFESTS[kind]
    for data in (text, text.encode("utf-8", "surrogatepass")):
        with pytest.raises(JSONFormatError):
            loads_manifest(data, "hostile.json")


def test_well_formed_edge_cases_still_parse() -> None:
    doc = loads_strict('{"pair": "\\ud83d\\ude00", "escaped": "\\\\ud800", "big": 1e308, "brackets": "[[[{{{"}')
    assert doc == {"pair": "\U0001f600", "escaped": "\\ud800", "big": 1e308, "brackets": "[[[{{{"}
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert nesting_depth(at_limit.encode()) == MAX_JSON_DEPTH and loads_strict(at_limit)
    with pytest.raises(JSONFormatError, match="nested more than"):
        loads_strict("[" + at_limit + "]")
    with pytest.raises(JSONFormatError, match="nested more than"):
        loads_strict("[" * 100_000)  # truncated: unclosed brackets count too


def test_depth_counting_ignores_brackets_in_strings_and_escapes() -> None:
    assert nesting_depth(b'{"a": "]]]]", "b": [["\\"[", "\\\\"], {}]}') == 3
    assert nesting_depth(b'"' + b"[" * 1000 + b'"') == 0
    with pytest.raises(JSONFormatError, match="larger than 10 bytes"):
        loads_strict(b"[1, 2, 3, 4, 5]", max_bytes=10)


def test_hostile_index_entry_lines_are_format_errors(tmp_path) -> None:
    root = init_index(tmp_path / "index", "test")
    path = root / entry_path("deep-adapter")
    path.parent.mkdir(parents=True, exist_ok=True)
    for line in (f'{{"v": 1, "name": "deep-adapter", "manifest": {DEEP}}}', '{"v": 1, "name": "\\ud800"}',
                 '{"v": 1e999}'):
        path.write_text(line + "\n")
        with pytest.raises(JSONFormatError, match="deep-adapter:1: "):
            open_index(root).entries("deep-adapter")


def safetensors_with_header(header: str) -> bytes:
    raw = header.encode("utf-8", "surrogatepass")
    return struct.pack("<Q", len(raw)) + raw


@pytest.mark.parametrize("header", [
    '{"__metadata__": {"x": "y"}, "t": {"dtype": "F32", "shape": [], "data_offsets": [0, 0]}, "z": ' + DEEP + "}",
    '{"__metadata__": {"\\ud800": "y"}}',
])  # fmt: skip
def test_hostile_safetensors_headers_are_refused_by_both_gates(header: str, tmp_path) -> None:
    data = safetensors_with_header(header)
    with pytest.raises(UnsafeFileError, match="not strict UTF-8 JSON"):
        check_safetensors_bytes(data)
    pytest.importorskip("torch")
    from adapterhub.runtime.safetensors_io import read_safetensors

    path = tmp_path / "hostile.safetensors"
    path.write_bytes(data)
    with pytest.raises(UnsafeFileError):
        read_safetensors(path)


HOSTILE_YAML = {
    "deep": "config: " + "[" * 3000 + "]" * 3000 + "\n",
    "alias bomb": "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                  "c: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n",
    "syntax": "type: adapter\n  bad: [indent\n",
    "not utf-8": b"type: \xff\xfe\n",
    "python tag": "x: !!python/object/apply:os.system ['true']\n",
}


def test_hostile_yaml_of_the_archived_index_is_reported_per_file(tmp_path) -> None:
    """Regression: PyYAML's exceptions (and RecursionError on deep nesting) escaped the importer."""
    from adapterhub.registry.archived import import_adapterhub_index

    org = tmp_path / "archive" / "adapters" / "org"
    org.mkdir(parents=True)
    for i, body in enumerate(HOSTILE_YAML.values()):
        (org / f"bad{i}.yaml").write_bytes(body if isinstance(body, bytes) else body.encode())
    report = import_adapterhub_index(tmp_path / "archive", tmp_path / "out")
    assert report.entries == 0 and len(report.failures) == len(HOSTILE_YAML)
    assert any("aliases" in f for f in report.failures) and any("too deeply" in f for f in report.failures)
