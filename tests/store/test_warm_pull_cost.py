"""A warm pull stays cheap, and the shortcut that makes it cheap is sound.

A warm ``adapterhub pull NAME`` reads the index, resolves and checks the cache. It must not import
jsonschema (the schema-validation memo of :mod:`adapterhub.schema` answers for documents this cache
has seen pass), the HTTP stack or the Hub client; and the memo must never let bytes it has not seen
pass skip validation. Importing one store or registry module must not drag in the whole package.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.store_support import manifest_for, safetensors_bytes
from support.warm_pull import PROBE as WARM_PROBE

from adapterhub import schema
from adapterhub.errors import SchemaError
from adapterhub.registry import add_release, entry_path, init_index, open_index, resolve
from adapterhub.resources import bundled_index_dir
from adapterhub.store import gc

HEAVY = ("jsonschema", "referencing", "requests", "urllib3", "huggingface_hub", "torch", "transformers", "filelock")
PROBE = ("import sys; from adapterhub.cli import main; rc = main(sys.argv[1:]); "
         f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules)); sys.exit(rc)")


def _cli_pull(cache: Path, *args: str) -> str:
    env = {**os.environ, "ADAPTERHUB_CACHE": str(cache)}
    for var in ("ADAPTERHUB_OFFLINE", "HF_HUB_OFFLINE", "ADAPTERHUB_INDEX"):
        env.pop(var, None)
    proc = subprocess.run([sys.executable, "-c", PROBE, "pull", *args, "-q"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_warm_pull_of_a_registry_name_imports_no_validator_http_or_hub_client(cache):
    first = _cli_pull(cache, "sst2-houlsby")  # fills the cache from the bundled index's mirror
    assert "sst2-houlsby" in first
    again = _cli_pull(cache, "sst2-houlsby")
    assert "HEAVY []" in again, again


def test_a_warm_pull_loads_no_other_command_no_download_stack_and_no_derivation(cache):
    env = {**os.environ, "ADAPTERHUB_CACHE": str(cache)}
    for var in ("ADAPTERHUB_OFFLINE", "HF_HUB_OFFLINE", "ADAPTERHUB_INDEX"):
        env.pop(var, None)
    _cli_pull(cache, "sst2-houlsby")
    proc = subprocess.run([sys.executable, "-c", WARM_PROBE, "pull", "sst2-houlsby", "-q"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED [] 0" in proc.stdout, proc.stdout
    pinned = subprocess.run([sys.executable, "-c", WARM_PROBE, "pull", "sst2-houlsby>=1,<2", "-q"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert "LOADED ['packaging.specifiers'] 0" in pinned.stdout, pinned.stdout  # a spec is parsed when given


def test_cache_gc_empties_the_memo_and_the_next_pull_validates_again(cache):
    _cli_pull(cache, "sst2-houlsby")
    assert any((cache / "validated").rglob("*"))
    gc()
    assert not (cache / "validated").exists()
    assert "'jsonschema'" in _cli_pull(cache, "sst2-houlsby")  # validated in full again
    assert "HEAVY []" in _cli_pull(cache, "sst2-houlsby")


def test_warm_pull_from_a_directory_index_imports_no_validator(cache, tmp_path):
    files = {"adapter.safetensors": safetensors_bytes(16), "adapter_config.json": b"{\"r\": 4}"}
    mirror = tmp_path / "index" / "mirror"
    index = init_index(tmp_path / "index", "test")
    mirror.mkdir()
    for body in files.values():
        (mirror / hashlib.sha256(body).hexdigest()).write_bytes(body)
    add_release(index, manifest_for(files, [{"type": "bundled"}], name="dir-adapter"))
    _cli_pull(cache, "dir-adapter", "--index", str(tmp_path / "index"))
    assert "HEAVY []" in _cli_pull(cache, "dir-adapter", "--index", str(tmp_path / "index"))


def test_changed_index_bytes_are_validated_in_full_after_a_remembered_pass(cache, tmp_path):
    files = {"adapter.safetensors": safetensors_bytes(16)}
    root = tmp_path / "index"
    index = init_index(root, "test")
    add_release(index, manifest_for(files, [{"type": "bundled"}], name="memo-adapter"))
    assert resolve(open_index(root), "memo-adapter").manifest.name == "memo-adapter"  # remembered as valid
    assert (cache / "validated").is_dir()
    path = root / entry_path("memo-adapter")
    line = json.loads(path.read_text())
    line["bogus"] = 1  # not allowed by index-entry.v1.json
    path.write_text(json.dumps(line) + "\n")
    with pytest.raises(SchemaError, match="bogus"):
        open_index(root).entries("memo-adapter")


def test_the_memo_answers_only_for_the_same_document_and_never_remembers_a_failure(cache, monkeypatch):
    bad = {"v": 1, "bogus": True}
    assert schema.validate_document(bad, schema.INDEX_CONFIG_SCHEMA, memo=True)
    assert schema.validate_document(bad, schema.INDEX_CONFIG_SCHEMA, memo=True)  # still validated, still bad
    good = json.loads((bundled_index_dir() / "config.json").read_text())
    assert schema.validate_document(good, schema.INDEX_CONFIG_SCHEMA, memo=True) == []

    def no_jsonschema(filename):
        raise AssertionError("jsonschema used for a document the memo knows")

    monkeypatch.setattr(schema, "_validator", no_jsonschema)
    assert schema.validate_document(good, schema.INDEX_CONFIG_SCHEMA, memo=True) == []
    assert schema.validate_document(dict(reversed(list(good.items()))), schema.INDEX_CONFIG_SCHEMA, memo=True) == []
    with pytest.raises(AssertionError, match="memo knows"):  # one value changed: a new document
        schema.validate_document({**good, "name": good.get("name", "") + "x"}, schema.INDEX_CONFIG_SCHEMA, memo=True)
    with pytest.raises(AssertionError, match="memo knows"):  # without memo=True nothing is skipped
        schema.validate_document(good, schema.INDEX_CONFIG_SCHEMA)
    with pytest.raises(AssertionError, match="memo knows"):
        schema.validate_document(good, schema.INDEX_ENTRY_SCHEMA, memo=True)


LAZY_PROBE = """
import sys
import adapterhub.store.trust, adapterhub.registry.index
light = sorted(m for m in ("adapterhub.store.cache", "adapterhub.store.locked", "adapterhub.registry.check",
                           "adapterhub.registry.writer", "filelock") if m in sys.modules)
import types
import adapterhub.registry as registry
import adapterhub.store as store
import adapterhub.store.cache_gc, adapterhub.store.pull, adapterhub.store.cache_verify, adapterhub.registry.searching
modules = [f"{p.__name__}.{n}" for p in (store, registry) for n in p.__all__
           if isinstance(getattr(p, n), types.ModuleType)]
print("LIGHT", light, "MODULES", modules)
"""


def test_package_exports_are_the_functions_and_load_only_what_is_used():
    proc = subprocess.run([sys.executable, "-c", LAZY_PROBE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "LIGHT [] MODULES []" in proc.stdout, proc.stdout
