"""Numbers written as text in untrusted input (adapterhub/digits.py): ``str.isdigit`` accepts characters
``int`` refuses ('²') and ``int`` raises past 4,300 digits, so each place that read such text with the pair
could be made to raise an untyped ValueError. Every such place now reads through ``plain_int`` and
answers a typed error (or ignores the value where it is only a hint)."""

from __future__ import annotations

import copy
import json

import pytest
from support.manifest_samples import VALID_MANIFEST

from adapterhub.digits import MAX_DIGITS, plain_int
from adapterhub.errors import AdapterHubError, SchemaError, UnsupportedSchemaVersionError
from adapterhub.transport import header_int

HOSTILE = ["²", "1²", "١", "-1", "+1", " 1", "1_000", "", "9" * 5000, "0x10", "1.0", None, 7]


@pytest.mark.parametrize("text", HOSTILE)
def test_plain_int_refuses_what_is_not_plain_ascii_digits(text):
    assert plain_int(text) is None


@pytest.mark.parametrize("text, value", [("0", 0), ("42", 42), ("9" * MAX_DIGITS, int("9" * MAX_DIGITS)),
                                         ("007", 7)])
def test_plain_int_reads_plain_digits(text, value):
    assert plain_int(text) == value


def test_header_int_strips_the_header_whitespace_and_nothing_else():
    assert header_int(" 123 ") == 123
    assert header_int("1 2") is None and header_int("9" * 20) is None and header_int(None) is None


@pytest.mark.parametrize("version, error", [("².0", SchemaError), ("1.²", SchemaError),
                                            ("9" * 5000 + ".0", UnsupportedSchemaVersionError),
                                            ("1." + "9" * 5000, SchemaError), ("2.0", UnsupportedSchemaVersionError)])
def test_a_hostile_schema_version_is_a_typed_error(version, error):
    from adapterhub.manifest import parse_manifest

    doc = copy.deepcopy(VALID_MANIFEST)
    doc["schema_version"] = version
    with pytest.raises(error):
        parse_manifest(doc)


@pytest.mark.parametrize("key", ["²", "9" * 5000, "٣"])
def test_a_hostile_per_layer_key_is_a_typed_error(key):
    from adapterhub.manifest import parse_manifest

    doc = copy.deepcopy(VALID_MANIFEST)
    doc["adapter"]["config"]["reduction_factor"] = {key: 8, "default": 16}
    with pytest.raises(SchemaError):
        parse_manifest(doc)


@pytest.mark.parametrize("fmt", ["².0", "9" * 5000 + ".0"])
def test_a_hostile_index_format_is_a_typed_error(tmp_path, fmt):
    from adapterhub.registry import open_index

    (tmp_path / "config.json").write_text(json.dumps({"index_format": fmt, "name": "test"}))
    with pytest.raises(AdapterHubError):
        open_index(tmp_path)


@pytest.mark.parametrize("label", ["²", "9" * 5000, "-1"])
def test_a_hostile_label_in_an_evaluation_file_is_a_typed_error(tmp_path, label):
    from adapterhub.serve_run import read_tsv

    path = tmp_path / "dev.tsv"
    path.write_text(f"sentence\tlabel\ngood movie\t1\nbad movie\t{label}\n", encoding="utf-8")
    with pytest.raises(SchemaError, match="/3"):
        read_tsv(path)
