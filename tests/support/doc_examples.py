"""Run the Python code blocks of a docs page in order, in one namespace, as a reader would paste them."""

from __future__ import annotations

import re

from support.paths import DOCS


def python_blocks(page: str) -> list[str]:
    """The ```python blocks of ``docs/<page>``."""
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(encoding="utf-8"), re.S)


def run_doc_examples(page: str, *, min_blocks: int = 1) -> dict:
    """Execute every block of ``docs/<page>`` (our own documentation); return the namespace they built."""
    blocks = python_blocks(page)
    assert len(blocks) >= min_blocks, f"docs/{page}: expected at least {min_blocks} python block(s)"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOCS / page), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace
