"""The examples of docs/security.md's "Server" section run as written (real server, real client)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from huggingface_hub import constants
from support.doc_examples import DOCS

from adapterhub.server import load_token_file


def server_section() -> str:
    text = (DOCS / "security.md").read_text(encoding="utf-8")
    return text.split("\n## Server\n", 1)[1].split("\n## ", 1)[0]


def test_server_section_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "stored_tokens"))
    for name in ("HF_TOKEN", "HF_ENDPOINT", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    (block,) = re.findall(r"```python\n(.*?)```", server_section(), re.S)
    exec(compile(block, str(DOCS / "security.md"), "exec"), {})  # noqa: S102 - our own documentation


def test_server_section_token_file_is_valid(tmp_path: Path) -> None:
    (example,) = re.findall(r"```json\n(.*?)```", server_section(), re.S)
    path = tmp_path / "tokens.json"
    path.write_text(re.sub(r"^ {2}", "", example, flags=re.M))
    users = {grant.user: grant for grant in load_token_file(path)}
    assert users["alice"].write == {"alice", "acme"} and users["ci"].admin and users["partner"].read == {"acme/eval-set"}
