"""CLI: search, info, validate, index commands; exit codes; --json; no torch import."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.manifest_samples import VALID_MANIFEST, manifest_with

from adapterhub.cli import main
from adapterhub.manifest import parse_manifest
from adapterhub.registry import add_release, init_index


@pytest.fixture
def index_dir(tmp_path):
    root = tmp_path / "idx"
    init_index(root, "cli-test")
    add_release(root, parse_manifest(manifest_with("sst2-houlsby", "1.0.0")))
    add_release(root, parse_manifest(manifest_with("sst2-houlsby", "1.1.0")))
    return root


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_search_table_and_json(capsys, index_dir):
    code, out, _ = run(capsys, "search", "sst2", "--index", str(index_dir))
    assert code == 0 and "sst2-houlsby" in out and "1.1.0" in out and "NAME" in out
    code, out, _ = run(capsys, "search", "--method", "houlsby", "--index", str(index_dir), "--json")
    assert code == 0 and json.loads(out)[0]["name"] == "sst2-houlsby"


def test_search_base_matches_compatible_bases_and_json_says_which(capsys, index_dir):
    """--base used to match the exact id only (failed before: other-base was not listed)."""
    other = manifest_with("other-base", "1.0.0")
    other["base_model"] = {**other["base_model"], "id": "someone/minilm-copy"}  # same bert, 384 hidden, 6 layers
    add_release(index_dir, parse_manifest(other))
    far = manifest_with("far-base", "1.0.0")
    far["base_model"] = {**far["base_model"], "id": "bert-base-uncased", "hidden_size": 768, "num_hidden_layers": 12}
    add_release(index_dir, parse_manifest(far))
    base = VALID_MANIFEST["base_model"]["id"]
    code, out, _ = run(capsys, "search", "--base", base, "--index", str(index_dir), "--json")
    rows = json.loads(out)
    assert code == 0 and [(r["name"], r["base_match"]) for r in rows] == [("sst2-houlsby", "exact"),
                                                                         ("other-base", "compatible")]
    assert rows[0]["model_type"] == "bert" and rows[0]["hidden_size"] == 384 and rows[0]["num_hidden_layers"] == 6
    code, out, _ = run(capsys, "search", "--base", base, "--index", str(index_dir))
    assert code == 0 and "BASE_MATCH" in out and "compatible" in out and "far-base" not in out


def test_info(capsys, index_dir):
    code, out, _ = run(capsys, "info", "sst2-houlsby==1.0.0", "--index", str(index_dir))
    assert code == 0 and "sst2-houlsby 1.0.0" in out and "all-MiniLM-L6-v2" in out and "adapter.safetensors" in out
    code, out, _ = run(capsys, "info", "sst2-houlsby", "--index", str(index_dir), "--json")
    data = json.loads(out)
    assert data["manifest"]["version"] == "1.1.0" and [v["version"] for v in data["versions"]] == ["1.0.0", "1.1.0"]


def test_errors_exit_1_with_one_line(capsys, index_dir):
    code, out, err = run(capsys, "info", "missing-adapter", "--index", str(index_dir))
    assert code == 1 and err.startswith("error: no adapter named 'missing-adapter'") and err.count("\n") == 1


def test_usage_errors_exit_2(capsys):
    code, _, err = run(capsys, "info")
    assert code == 2 and "Missing argument" in err
    code, _, _ = run(capsys, "no-such-command")
    assert code == 2


def test_debug_shows_traceback(index_dir):
    proc = subprocess.run([sys.executable, "-m", "adapterhub", "--debug", "info", "missing-adapter", "--index",
                           str(index_dir)], capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "NotFoundError" in proc.stderr


def test_validate_manifest_and_directory(capsys, tmp_path):
    import hashlib

    d = tmp_path / "adapter"
    d.mkdir()
    weights = b"\x00" * 100
    (d / "adapter.safetensors").write_bytes(weights)
    doc = json.loads(json.dumps(VALID_MANIFEST))
    doc["files"] = [{"path": "adapter.safetensors", "size": 100, "sha256": hashlib.sha256(weights).hexdigest()}]
    (d / "adapterhub.json").write_text(json.dumps(doc))
    code, out, _ = run(capsys, "validate", str(d))
    assert code == 0 and "1 file(s) checked" in out
    (d / "stray.bin").write_bytes(b"x")
    code, _, err = run(capsys, "validate", str(d))
    assert code == 1 and "stray.bin: present in the directory but not listed" in err
    (d / "stray.bin").unlink()
    (d / "adapter.safetensors").write_bytes(b"\x01" * 100)
    code, out, _ = run(capsys, "validate", str(d), "--json")
    assert code == 1 and "sha256 does not match" in json.loads(out)["problems"][0]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**doc, "name": "Bad", "version": "x.y"}))
    code, _, err = run(capsys, "validate", str(bad))
    assert code == 1 and "/name" in err and "/version" in err


def test_index_commands(capsys, tmp_path):
    idx = tmp_path / "new-index"
    assert run(capsys, "index", "init", str(idx), "--name", "mine")[0] == 0
    m = tmp_path / "m.json"
    m.write_text(json.dumps(manifest_with("my-adapter", "1.0.0")))
    assert run(capsys, "index", "add", str(m), "--index", str(idx))[0] == 0
    m.write_text(json.dumps(manifest_with("my-adapter", "1.0.0", description="changed")))
    code, _, err = run(capsys, "index", "add", str(m), "--index", str(idx))
    assert code == 1 and "immutable" in err
    assert run(capsys, "index", "yank", "my-adapter", "1.0.0", "--index", str(idx), "--reason", "bad")[0] == 0
    code, out, _ = run(capsys, "index", "check", str(idx), "--json")
    assert code == 0 and json.loads(out)["yanked"] == 1
    code, _, err = run(capsys, "info", "my-adapter", "--index", str(idx))
    assert code == 1 and "only yanked versions match" in err


def test_version_flag(capsys):
    from adapterhub import __version__

    code, out, _ = run(capsys, "--version")
    assert code == 0 and __version__ in out


def test_search_and_help_do_not_import_torch(index_dir):
    probe = ("import sys; from adapterhub.cli import main; rc = main(sys.argv[1:]); "
             "bad = [m for m in ('torch', 'transformers', 'safetensors', 'huggingface_hub') if m in sys.modules]; "
             "print('IMPORTED', bad)")
    for args in (["--help"], ["search", "sst2", "--index", str(index_dir)], ["info", "sst2-houlsby", "--index", str(index_dir)]):
        proc = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True)
        assert "IMPORTED []" in proc.stdout, (args, proc.stdout, proc.stderr)
