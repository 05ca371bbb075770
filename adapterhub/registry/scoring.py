"""What a search means: which summary rows match a query and in which order.

One definition, used by both engines (the linear scan here and the SQLite database of
:mod:`adapterhub.registry.search_db`), so their answers are the same by construction:

- every filter must hold: ``task`` equals the row's task, task type or dataset; ``method`` equals its
  method or variant; ``base_model`` equals its base id, or the row is *compatible* with that base (same
  ``model_type``, ``hidden_size`` and ``num_hidden_layers`` as an index row whose base id it is);
- every free-text term (lower-cased, split on whitespace) must be a substring of one of the row's text
  fields; a term scores 10 when it is the whole name, 5 when it is inside the name, else 1;
- order: highest score first, then exact base before compatible base, then name, then summary order.
All comparisons are on ``str.lower()`` of the field, exact and case-insensitive.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from ..jsonio import iter_json_lines

log = logging.getLogger(__name__)

TEXT_FIELDS = ("name", "description", "task", "task_type", "dataset", "method", "variant", "base_model")
SHAPE_FIELDS = ("model_type", "hidden_size", "num_hidden_layers")
Shape = tuple[str, int, int]
LOWER_TO_ASCII = ("\u0130", "\u212a")
"""The non-ASCII characters whose ``str.lower()`` holds ASCII (İ → i̇, Kelvin sign → k): a line with one
may match an ASCII term its bytes do not spell, so the scan's byte pre-filter keeps it."""
_PREFILTER_KEEP = (b"\\", *(c.encode() for c in LOWER_TO_ASCII))


def lowered(value: Any) -> str:
    """The form every comparison uses: ``str(value or "").lower()``."""
    return str(value or "").lower()


def haystack(row: dict[str, Any]) -> str:
    """The text fields of a row, lower-cased and space-joined (a term has no spaces, so it matches in one field)."""
    return " ".join(lowered(row.get(k)) for k in TEXT_FIELDS)


def shape_of(row: dict[str, Any]) -> Shape | None:
    """(model_type, hidden_size, num_hidden_layers) of a row's base, or None when the summary lacks them."""
    model_type, hidden, layers = (row.get(k) for k in SHAPE_FIELDS)
    if not (isinstance(model_type, str) and model_type) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in (hidden, layers)):
        return None
    return model_type.lower(), hidden, layers


def summary_rows(data: bytes, where: str) -> Iterator[dict[str, Any]]:
    """The rows of a search summary; a line that is not an object with a string ``name`` is skipped."""
    for number, row in iter_json_lines(data, where):
        if isinstance(row, dict) and isinstance(row.get("name"), str):
            yield row
        else:
            log.debug("%s:%d: not a summary row (an object with a string name); skipped", where, number)


@dataclass(frozen=True)
class SearchQuery:
    text: str = ""
    task: str | None = None
    method: str | None = None
    base_model: str | None = None

    def terms(self) -> list[str]:
        return self.text.lower().split()

    def needles(self, *, base: bool = False) -> list[str]:
        """Lower-case ASCII substrings every matching line's bytes contain (for the scan's pre-filter).

        The base id is one only with ``base`` (finding the base's own rows): a compatible row names another."""
        values = self.terms() + [v.lower() for v in (self.task, self.method, self.base_model if base else None) if v]
        return [v for v in values if v.isascii() and "\"" not in v and "\\" not in v]

    def filters_match(self, row: dict[str, Any]) -> bool:
        """The task and method filters (the base filter needs the index: see :meth:`base_rank`)."""
        if self.task and self.task.lower() not in (lowered(row.get("task")), lowered(row.get("task_type")),
                                                   lowered(row.get("dataset"))):
            return False
        return not (self.method and self.method.lower() not in (lowered(row.get("method")), lowered(row.get("variant"))))

    def base_rank(self, row: dict[str, Any], shapes: frozenset[Shape]) -> int | None:
        """0: no base filter or the same base id; 1: a compatible base (shape in ``shapes``); None: no match."""
        if not self.base_model or self.base_model.lower() == lowered(row.get("base_model")):
            return 0
        return 1 if shape_of(row) in shapes else None

    def text_score(self, row: dict[str, Any]) -> int:
        """0 = a term is missing; 1 with no terms; else the sum over terms (10 = the name, 5 = in the name, 1)."""
        terms = self.terms()
        if not terms:
            return 1
        name, hay = lowered(row.get("name")), haystack(row)
        score = 0
        for term in terms:
            if term not in hay:
                return 0
            score += 10 if term == name else 5 if term in name else 1
        return score

    def score(self, row: dict[str, Any], shapes: frozenset[Shape] = frozenset()) -> int:
        """0 = no match; higher = better (the base's exact-before-compatible order is not in it)."""
        if not self.filters_match(row) or self.base_rank(row, shapes) is None:
            return 0
        return self.text_score(row)


def compatible_shapes(rows: Iterable[dict[str, Any]], base_model: str | None) -> frozenset[Shape]:
    """The base shapes index rows list for ``base_model`` (what a compatible row must match)."""
    if not base_model:
        return frozenset()
    wanted = base_model.lower()
    return frozenset(s for r in rows if lowered(r.get("base_model")) == wanted and (s := shape_of(r)) is not None)


def rank(rows: Iterable[dict[str, Any]], query: SearchQuery, shapes: frozenset[Shape],
         limit: int | None) -> list[dict[str, Any]]:
    """Matching rows, best first; with a base filter each carries ``base_match`` (``exact``/``compatible``)."""
    scored = []
    for position, row in enumerate(rows):
        base = query.base_rank(row, shapes)
        score = query.text_score(row) if base is not None and query.filters_match(row) else 0
        if score:
            scored.append(((-score, base, row["name"], position), row))
    scored.sort(key=lambda t: t[0])
    out = [with_base_match(row, key[1], query) for key, row in scored]
    return out if limit is None else out[:limit]


def with_base_match(row: dict[str, Any], base: int, query: SearchQuery) -> dict[str, Any]:
    return {**row, "base_match": "compatible" if base else "exact"} if query.base_model else row


def scan(data: bytes | None, where: str, query: SearchQuery, limit: int | None) -> list[dict[str, Any]]:
    """The linear engine: parse the summary (a cheap byte pre-filter first) and rank every row."""
    if not data:
        return []
    lines = data.split(b"\n")
    shapes: frozenset[Shape] = frozenset()
    if query.base_model:
        base_lines = prefiltered(lines, SearchQuery(base_model=query.base_model).needles(base=True))
        shapes = compatible_shapes(summary_rows(b"\n".join(base_lines), where), query.base_model)
    return rank(summary_rows(b"\n".join(prefiltered(lines, query.needles())), where), query, shapes, limit)


def prefiltered(lines: list[bytes], needles: list[str]) -> list[bytes]:
    """Lines whose bytes hold every needle (or may spell one otherwise: JSON escapes, İ, K); others blanked,
    so line numbers in errors stay right.

    The needles are looked up in the whole lower-cased summary at once and mapped to lines, so the cost
    grows with the matches, not with one Python step per line (a bundled catalogue of a few hundred
    names then costs what four did)."""
    if not needles:
        return lines
    encoded = [n.encode() for n in needles]
    if any(b"\n" in n for n in encoded):  # lines hold no newline: only the escape-holding lines can match
        return [line if any(k in line for k in _PREFILTER_KEEP) else b"" for line in lines]
    starts = list(accumulate((len(line) + 1 for line in lines), initial=0))
    data = b"\n".join(lines)
    keep = _lines_holding(data.lower(), encoded[0], starts)
    for needle in encoded[1:]:
        keep = {i for i in keep if needle in lines[i].lower()}
    for marker in _PREFILTER_KEEP if not data.isascii() else _PREFILTER_KEEP[:1]:  # İ and K are not ASCII
        keep |= _lines_holding(data, marker, starts)
    return [line if i in keep else b"" for i, line in enumerate(lines)]


def _lines_holding(data: bytes, needle: bytes, starts: list[int]) -> set[int]:
    """Indexes of the lines (``starts``: each line's offset in ``data``) that contain ``needle``."""
    found: set[int] = set()
    pos = data.find(needle)
    while pos != -1:
        line = bisect_right(starts, pos) - 1
        found.add(line)
        pos = data.find(needle, starts[line + 1])  # the next line: one hit per line is enough
    return found
