"""The Python examples in docs/compose.md run as written."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "compose.md"


def test_compose_doc_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    assert (tmp_path / "out" / "fz" / "adapterhub.json").is_file()
    assert tuple(namespace["w"].shape) == (4, 2, 3)
    assert namespace["probs"].sum(-1).allclose(namespace["torch"].ones(4))
