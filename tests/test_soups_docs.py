"""The Python examples in docs/soups.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "soups.md"


def test_soups_doc_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert blocks
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    assert (tmp_path / "out" / "soup" / "adapterhub.json").is_file()
    assert namespace["greedy"].score >= max(namespace["greedy"].ingredient_scores)
