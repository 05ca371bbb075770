"""A short coverage-guided fuzzing run of every target (the long runs: ``python benchmarks/fuzz.py``).

Each target gets a few thousand inputs from its seeds (fixed libFuzzer seed, a time cap of a few
seconds); the only allowed outcomes are success or a typed ``AdapterHubError``. The targets'
seeds themselves must be accepted, so a target that refuses everything cannot pass unnoticed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import REPO

BENCH = REPO / "benchmarks"
sys.path.insert(0, str(BENCH))

import fuzz_targets  # noqa: E402

pytest.importorskip("atheris", reason="atheris (the test extra; CPython wheels on Linux) runs the fuzz targets")


@pytest.mark.parametrize("target", sorted(fuzz_targets.TARGETS))
def test_seeds_are_accepted(target: str) -> None:
    run = fuzz_targets.prepare(target)
    for data in fuzz_targets.seeds(target):
        run(data)


@pytest.mark.parametrize("target", sorted(fuzz_targets.TARGETS))
def test_short_fuzz_run(target: str, tmp_path: Path) -> None:
    cmd = [sys.executable, str(BENCH / "fuzz.py"), "--targets", target, "--runs", "2000", "--max-time", "3",
           "--seed", "1", "--artifacts", str(tmp_path / "crashes"), "--json", str(tmp_path / "result.json")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    (result,) = json.loads((tmp_path / "result.json").read_text())["results"]
    assert result["outcome"] == "ok" and result["inputs"] > 100, result
    assert not list((tmp_path / "crashes").glob("*"))
