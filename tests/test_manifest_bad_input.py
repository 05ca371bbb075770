"""Bad manifests: each is rejected with its own clear message (pointer + what was expected)."""

from __future__ import annotations

import copy
import json

import pytest
from manifest_samples import COMMIT, SHA, VALID_MANIFEST, manifest

from adapterhub.errors import DuplicateKeyError, JSONFormatError, SchemaError, UnsupportedSchemaVersionError
from adapterhub.manifest import (
    load_manifest,
    loads_manifest,
    manifest_problems,
    manifest_to_dict,
    parse_manifest,
)
from adapterhub.runtime.config import typed_config


def _set(path: str, value):
    data = copy.deepcopy(VALID_MANIFEST)
    keys = path.split("/")
    target = data
    for k in keys[:-1]:
        target = target[int(k)] if isinstance(target, list) else target[k]
    last = keys[-1]
    if value is _DELETE:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return data


_DELETE = object()
FILE = {"path": "adapter.safetensors", "size": 1, "sha256": SHA}

BAD_CASES = [
    # (id, document, expected pointer, expected message fragment)
    ("missing-name", _set("name", _DELETE), "", "'name' is required"),
    ("missing-files", _set("files", _DELETE), "", "'files' is required"),
    ("missing-base-model", _set("base_model", _DELETE), "", "'base_model' is required"),
    ("missing-hidden-size", _set("base_model/hidden_size", _DELETE), "/base_model", "'hidden_size' is required"),
    ("name-wrong-type", _set("name", 42), "/name", "not of type 'string'"),
    ("size-wrong-type", _set("files/0/size", "12"), "/files/0/size", "not of type 'integer'"),
    ("negative-size", _set("files/0/size", -1), "/files/0/size", "less than the minimum"),
    ("authors-not-list", _set("authors", "me"), "/authors", "not of type 'array'"),
    ("unknown-top-field", manifest(colour="red"), "", "unknown field(s) ('colour' was unexpected)"),
    ("unknown-task-field", _set("task/difficulty", 3), "/task", "'difficulty' was unexpected"),
    ("name-uppercase", _set("name", "SST2_Houlsby"), "/name", "does not match"),
    ("name-too-short", _set("name", "a"), "/name", "does not match"),
    ("name-too-long", _set("name", "a" * 65), "/name", "does not match"),
    ("name-leading-hyphen", _set("name", "-abc"), "/name", "does not match"),
    ("name-double-hyphen", _set("name", "sst2--houlsby"), "/name", "no '--'"),
    ("sha256-63-chars", _set("files/0/sha256", "a" * 63), "/files/0/sha256", "does not match"),
    ("sha256-non-hex", _set("files/0/sha256", "g" * 64), "/files/0/sha256", "does not match"),
    ("sha256-uppercase", _set("files/0/sha256", "A" * 64), "/files/0/sha256", "does not match"),
    ("sha1-only", _set("files/0", {"path": "a.safetensors", "size": 1, "sha1": "a" * 40}), "/files/0", "'sha256' is required"),
    ("path-dotdot", _set("files/0/path", "../x"), "/files/0/path", "'..' segment"),
    ("path-inner-dotdot", _set("files/0/path", "a/../../x"), "/files/0/path", "'..' segment"),
    ("path-absolute", _set("files/0/path", "/etc/x"), "/files/0/path", "does not match"),
    ("path-drive", _set("files/0/path", "C:\\x"), "/files/0/path", "backslash"),
    ("path-drive-relative", _set("files/0/path", "C:x"), "/files/0/path", "drive letter"),
    ("path-unc", _set("files/0/path", "\\\\host\\share\\x"), "/files/0/path", "does not match"),
    ("path-nul", _set("files/0/path", "a\x00b"), "/files/0/path", "control character"),
    ("path-newline", _set("files/0/path", "a\nb"), "/files/0/path", "control character"),
    ("path-reserved-windows", _set("files/0/path", "weights/NUL.txt"), "/files/0/path", "device name"),
    ("path-trailing-dot", _set("files/0/path", "weights."), "/files/0/path", "ending in '.'"),
    ("path-case-collision", _set("files", [FILE, {**FILE, "path": "Adapter.safetensors"}]), "/files", "differ only in case"),
    ("path-duplicate", _set("files", [FILE, dict(FILE)]), "/files/1/path", "duplicate file path"),
    ("unknown-method", _set("adapter/method", "magic"), "/adapter/method", "is not one of"),
    ("config-key-of-other-method", _set("adapter/config/r", 8), "/adapter/config", "'r' was unexpected"),
    ("lora-config-on-bottleneck", _set("adapter", {"method": "lora", "config": {"r": 8, "alpha": 8, "variant": "houlsby"}}),
     "/adapter/config", "'variant' was unexpected"),
    ("lora-missing-r", _set("adapter", {"method": "lora", "config": {"alpha": 8}}), "/adapter/config", "'r' is required"),
    ("unknown-variant", _set("adapter/config/variant", "lohfink"), "/adapter/config/variant", "is not one of"),
    ("bad-activation", _set("adapter/config/non_linearity", "mish"), "/adapter/config/non_linearity", "is not one of"),
    ("zero-reduction", _set("adapter/config/reduction_factor", 0), "/adapter/config/reduction_factor", ""),
    ("leave-out-beyond-layers", _set("adapter/config/leave_out", [6]), "/adapter/config/leave_out/0", "does not exist"),
    ("hf-branch-revision", _set("sources/0/revision", "main"), "/sources/0/revision", "never a branch"),
    ("base-branch-revision", _set("base_model/revision", "main"), "/base_model/revision", "never a branch"),
    ("version-not-pep440", _set("version", "one.two"), "/version", "not a PEP 440 version"),
    ("version-garbage", _set("version", "1.0-final-final2x"), "/version", "not a PEP 440 version"),
    ("bad-dependency-spec", _set("dependencies", [{"name": "other-adapter", "spec": ">>1"}]), "/dependencies/0/spec", "not a PEP 440 specifier"),
    ("self-dependency", _set("dependencies", [{"name": "sst2-houlsby"}]), "/dependencies/0/name", "depend on itself"),
    ("fusion-member-not-dependency", _set("adapter", {"method": "fusion", "config": {"members": ["a-b", "c-d"]}}),
     "/adapter/config/members/0", "must also be listed"),
    ("bad-license", _set("license", "my license!"), "/license", "does not match"),
    ("head-labels-count", _set("head/num_labels", 3), "/head/labels", "num_labels is 3"),
    ("https-source-not-tls", _set("sources/0", {"type": "https", "base_url": "http://example.org/x/"}), "/sources/0/base_url", "does not match"),
    ("source-unknown-type", _set("sources/0", {"type": "ftp"}), "/sources/0/type", "is not one of"),
    ("empty-files-without-archive", _set("files", []), "/files", "should be non-empty"),
    ("bad-fingerprint", _set("base_model/fingerprint", "md5:abc"), "/base_model/fingerprint", "does not match"),
    ("metric-value-string", _set("metrics/0/value", "high"), "/metrics/0/value", "not of type 'number'"),
]


@pytest.mark.parametrize(("doc", "pointer", "fragment"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_manifest_is_rejected_with_its_own_message(doc, pointer, fragment):
    with pytest.raises(SchemaError) as info:
        parse_manifest(doc, "bad.json")
    problems = info.value.problems
    assert any(p.pointer == pointer and fragment in p.message for p in problems), problems
    assert "bad.json" in str(info.value)


def test_bad_cases_are_many_and_distinct():
    assert len(BAD_CASES) >= 30
    assert len({c[0] for c in BAD_CASES}) == len(BAD_CASES)


def test_all_problems_collected_in_one_pass():
    doc = _set("name", "BAD NAME")
    doc["files"][0]["sha256"] = "xyz"
    doc["adapter"]["config"]["r"] = 1
    doc["version"] = "nope"
    problems = manifest_problems(doc)
    pointers = {p.pointer for p in problems}
    assert {"/name", "/files/0/sha256", "/adapter/config", "/version"} <= pointers


def test_duplicate_keys_rejected():
    text = json.dumps(VALID_MANIFEST)[:-1] + ', "name": "other-name"}'
    with pytest.raises(DuplicateKeyError, match="duplicate key 'name'"):
        loads_manifest(text, "dup.json")


def test_nested_duplicate_keys_rejected():
    text = '{"a": {"b": 1, "b": 2}}'
    with pytest.raises(DuplicateKeyError):
        loads_manifest(text)


def test_invalid_json_and_utf8(tmp_path):
    p = tmp_path / "m.json"
    p.write_bytes(b'{"name": "\xff"}')
    with pytest.raises(JSONFormatError, match="UTF-8"):
        load_manifest(p)
    p.write_text('{"name": ')
    with pytest.raises(JSONFormatError, match="line 1"):
        load_manifest(p)
    p.write_text('{"value": NaN}')
    with pytest.raises(JSONFormatError):
        load_manifest(p)


def test_unknown_major_schema_version_fails_loudly():
    with pytest.raises(UnsupportedSchemaVersionError, match="2.0"):
        parse_manifest(manifest(schema_version="2.0"))


def test_newer_minor_version_is_read_and_unknown_fields_kept():
    doc = manifest(schema_version="1.7", shiny_new_field={"a": 1})
    m = parse_manifest(doc)
    assert m.extensions == {"shiny_new_field": {"a": 1}}
    assert manifest_to_dict(m) == doc


def test_unknown_field_refused_for_known_minor():
    with pytest.raises(SchemaError, match="shiny_new_field"):
        parse_manifest(manifest(shiny_new_field=1))


def test_extension_fields_round_trip():
    doc = manifest(**{"x-trainer": {"seed": 1}})
    assert manifest_to_dict(parse_manifest(doc)) == doc


def test_valid_manifest_round_trips_and_types():
    m = parse_manifest(copy.deepcopy(VALID_MANIFEST))
    assert manifest_to_dict(m) == VALID_MANIFEST
    assert m.adapter.config.variant == "houlsby" and "locations" not in m.adapter.config  # stated only
    assert typed_config(m.adapter).effective()["locations"] == ("attention", "ffn")  # the method's defaults
    assert m.sources[0].revision == COMMIT
    assert m.files[0].sha256 == SHA
