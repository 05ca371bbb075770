"""Progress bars for long local work: drawn on a terminal, never with --json or when stderr is piped."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from support.paths import REPO
from support.tty_support import run_with_tty_stderr

from adapterhub.progress import Progress, quiet_hf_loading

ROOT = REPO
ARCHIVE = ROOT.parent / "shared" / "data" / "adapterhub-v2"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


def test_a_bar_is_drawn_only_when_enabled(monkeypatch):
    screen = io.StringIO()
    monkeypatch.setattr(sys, "stderr", screen)
    with Progress(None, 10, "work", unit="item") as auto:  # a StringIO is not a terminal
        auto.update(10)
        assert auto.callback is None
    with Progress(False, 0, "work") as off:
        off.report(5, 10)
    assert screen.getvalue() == ""
    with Progress(True, 0, "work", unit="item") as on:
        on.report(0, 4)  # the total arrives with the first report
        on.report(3, 4)
        assert on.callback is not None
    assert "/4 [" in screen.getvalue() and "item/s" in screen.getvalue()


def test_quiet_hf_loading_restores_what_it_silenced():
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    before = (hf_logging.is_progress_bar_enabled(), hub_utils.are_progress_bars_disabled(), hf_logging.get_verbosity())
    with quiet_hf_loading():
        assert not hf_logging.is_progress_bar_enabled() and hub_utils.are_progress_bars_disabled()
        assert hf_logging.get_verbosity() == hf_logging.ERROR
    assert (hf_logging.is_progress_bar_enabled(), hub_utils.are_progress_bars_disabled(),
            hf_logging.get_verbosity()) == before


@pytest.mark.skipif(not ARCHIVE.is_dir(), reason=f"shared data not present at {ARCHIVE}")
def test_import_adapterhub_shows_progress_on_a_terminal_only(tmp_path):
    cmd = [sys.executable, "-m", "adapterhub", "index", "import-adapterhub", str(ARCHIVE)]
    code, out, shown = run_with_tty_stderr([*cmd, "--out", str(tmp_path / "a"), "--json"], env=_env())
    assert code == 0 and json.loads(out)["entries"] > 200 and shown.strip() == "", shown
    code, out, shown = run_with_tty_stderr([*cmd, "--out", str(tmp_path / "b")], env=_env())
    assert code == 0 and out.startswith("imported") and "importing" in shown and "file/s" in shown, shown
    piped = subprocess.run([*cmd, "--out", str(tmp_path / "c")], capture_output=True, text=True, env=_env(),
                           timeout=600)
    assert piped.returncode == 0 and piped.stderr == "" and piped.stdout.replace(str(tmp_path / "c"), "") == \
        out.replace(str(tmp_path / "b"), "")
