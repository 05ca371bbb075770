"""The families x methods table of ``docs/runtime.md``, generated from the architecture table.

``python -m adapterhub.runtime.family_table`` rewrites the part of docs/runtime.md between the two marker
lines; ``tests/runtime/test_families_doc.py`` fails when it is stale, so a family added to
``runtime/arch.py`` (or a refusal or note changed there) cannot ship with a wrong table.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from .arch import FAMILIES, Family

BEGIN = "<!-- BEGIN GENERATED FAMILY TABLE (python -m adapterhub.runtime.family_table; do not edit below) -->"
END = "<!-- END GENERATED FAMILY TABLE -->"
DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "runtime.md"

COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("bottleneck", ("bottleneck",)),
    ("compacter", ("compacter",)),
    ("lora / dora / ia3 / loha / bitdelta", ("lora", "dora", "ia3", "loha", "bitdelta")),
    ("prefix_tuning", ("prefix_tuning",)),
    ("coda", ("coda",)),
)


def _cell(fam: Family, methods: tuple[str, ...], notes: list[str]) -> str:
    if all(m in fam.refuses for m in methods):
        notes.append(f"{fam.name}, {methods[0]}: refused, {fam.refuses[methods[0]]}")
        return "refused"
    if methods == ("coda",) and not fam.token_routing:
        return "refused"
    mark = "yes"
    for m in methods:
        if m in fam.notes:
            notes.append(f"{fam.name}, {m}: {fam.notes[m]}")
            mark = "yes*"
    return mark


def render_table(families: Iterable[Family] = FAMILIES) -> str:
    """The markdown table (and its footnotes) for ``families``."""
    lines = ["| family | model_type | " + " | ".join(c for c, _ in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    notes: list[str] = []
    for fam in families:
        cells = [_cell(fam, methods, notes) for _, methods in COLUMNS]
        lines.append(f"| {fam.name} | {', '.join(fam.model_types)} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("`refused` raises `UnsupportedArchitectureError` naming the family and the reason "
                 "(CoDA: families whose layers cannot run on a routed sub-sequence). Notes (`yes*`) and refusals:")
    lines.append("")
    lines += [f"* {n}" for n in notes]
    return "\n".join(lines) + "\n"


def render_doc(current: str) -> str:
    """``current`` with the text between the markers replaced by the generated table."""
    head, rest = current.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n\n{render_table()}\n{END}{tail}"


def main() -> int:
    DOC_PATH.write_text(render_doc(DOC_PATH.read_text(encoding="utf-8")), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
