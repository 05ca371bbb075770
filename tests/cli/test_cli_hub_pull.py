"""The CLI with ``hf:`` references against the local Hub server: pull (``--json``), a warm pull by commit
with no server and no heavy imports, cache ls / verify / info by reference, lock and ``pull -r``, run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support.hub_repos import put_fixture_repos
from support.warm_pull import PROBE

from adapterhub.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def repos(hub, cache, monkeypatch):
    found = put_fixture_repos(hub.server)
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    return found


def test_pull_json_then_warm_by_commit_without_server_or_heavy_imports(repos, capsys, cache, hub):
    code, out, err = run(capsys, "pull", "hf:org/peft-lora", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["reference"] == f"hf:org/peft-lora@{repos.peft}" and doc["name"] == "org-peft-lora"
    assert doc["downloaded_bytes"] > 0
    hub.server.stop()
    proc = subprocess.run([sys.executable, "-c", PROBE, "pull", f"hf:org/peft-lora@{repos.peft}", "-q"],
                          capture_output=True, text=True, env={**os.environ}, timeout=120)
    assert "LOADED [] 0" in proc.stdout, (proc.stdout, proc.stderr)  # no client, no derivation, no writer
    assert doc["path"] in proc.stdout


def test_cache_ls_verify_info_by_reference(repos, capsys):
    assert run(capsys, "pull", "hf:org/peft-lora@main", "-q")[0] == 0
    code, out, _ = run(capsys, "cache", "ls", "hf:org/peft-lora", "--json")
    assert code == 0 and [a["name"] for a in json.loads(out)["adapters"]] == ["org-peft-lora"]
    code, out, _ = run(capsys, "verify", "hf:org/peft-lora@main")
    assert code == 0 and "ok" in out
    code, out, _ = run(capsys, "info", "hf:org/peft-lora", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["manifest"]["adapter"]["method"] == "lora"
    assert doc["reference"] == "hf:org/peft-lora"
    code, _, err = run(capsys, "verify", "hf:org/never-pulled")
    assert code != 0 and "adapterhub pull hf:org/never-pulled" in err


def test_lock_pins_the_commit_and_pull_r_installs_it(repos, capsys, tmp_path, hub):
    lock = tmp_path / "adapterhub.lock"
    code, _, err = run(capsys, "lock", "hf:org/peft-lora", "-o", str(lock))
    assert code == 0, err
    doc = json.loads(lock.read_text())
    (entry,) = doc["adapters"]
    assert entry["hub"] == f"hf:org/peft-lora@{repos.peft}" and entry["manifest_sha256"]
    assert run(capsys, "cache", "rm", "org-peft-lora")[0] == 0
    code, out, err = run(capsys, "pull", "-r", str(lock), "--require-hashes", "--json")
    assert code == 0, err
    assert json.loads(out)[0]["reference"] == entry["hub"]
    entry["files"][0]["sha256"] = "0" * 64
    lock.write_text(json.dumps(doc))
    code, _, err = run(capsys, "pull", "-r", str(lock))
    assert code != 0 and "differ from the locked ones" in err


def test_run_takes_a_reference(repos, capsys):
    code, _, err = run(capsys, "run", "hf:org/peft-lora", "hello")
    assert code != 0 and "needs a head" in err  # pulled and read; this LoRA has no head (and no generation task)
