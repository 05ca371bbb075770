"""Run the Python code blocks of a docs page in order, in one namespace, as a reader would paste them."""

from __future__ import annotations

import re

from support.paths import DOCS


def python_blocks(page: str, section: str | None = None) -> list[str]:
    """The ```python blocks of ``docs/<page>`` (only those under the heading ``section``, when given)."""
    text = (DOCS / page).read_text(encoding="utf-8")
    if section is not None:
        start = re.search(rf"^(#+) {re.escape(section)}\n", text, re.M)
        assert start, f"docs/{page}: no heading {section!r}"
        end = re.compile(rf"^#{{1,{len(start.group(1))}}} ", re.M).search(text, start.end())
        text = text[start.end(): end.start() if end else len(text)]
    return re.findall(r"```python\n(.*?)```", text, re.S)


def run_doc_examples(page: str, *, min_blocks: int = 1, section: str | None = None) -> dict:
    """Execute every block of ``docs/<page>`` (or of its ``section``; our own documentation); return the
    namespace they built."""
    blocks = python_blocks(page, section)
    assert len(blocks) >= min_blocks, f"docs/{page}: expected at least {min_blocks} python block(s)"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOCS / page), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace
