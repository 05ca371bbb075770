"""Close names for a name that is not in the index ("did you mean sst2-houlsby?").

Distance is the optimal-string-alignment edit distance (insert, delete, substitute, swap two neighbours),
the mistakes people make when typing a name. It has to stay fast on an index of 100,000 names and runs
only on the error path, in two tiers:

1. every string one edit away from the typed name is generated (about 75 per character) and looked up
   in the set of names: complete for one typo, and independent of the index size;
2. only when that finds nothing, names within two edits: a name that close keeps all but ``2 * q`` of
   the typed name's q-grams, so names missing more are skipped with cheap substring tests before the
   alignment is computed on the few that remain (at most :data:`MAX_ALIGNED`, fewest missing first).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import AdapterHubError
from ..names import normalize_name

if TYPE_CHECKING:  # pragma: no cover
    from .index import Index

ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-"
MAX_ALIGNED = 500
_SUMMARY_NAME = re.compile(rb'"name"\s*:\s*"([a-z0-9][a-z0-9-]{1,63})"')


def summary_names(data: bytes | None) -> list[str]:
    """Every name in a search summary (``search-index.jsonl``), without parsing its JSON lines.

    Each summary line is a flat object with one ``"name"`` key; inside a JSON string a quote is always
    escaped, so the pattern cannot match text within a description.
    """
    return [m.decode() for m in _SUMMARY_NAME.findall(data)] if data else []


def _edits1(word: str) -> set[str]:
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    out = {a + b[1:] for a, b in splits if b}
    out |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    out |= {a + c + b[1:] for a, b in splits if b for c in ALPHABET}
    out |= {a + c + b for a, b in splits for c in ALPHABET}
    out.discard(word)
    return out


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance of ``a`` and ``b``, or ``limit + 1`` as soon as it exceeds ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [limit + 1] * len(b)
        for j in range(max(1, i - limit), min(len(b), i + limit) + 1):
            v = min(prev[j - 1] + (a[i - 1] != b[j - 1]), prev[j] + 1, cur[j - 1] + 1)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                v = min(v, before[j - 2] + 1)
            cur[j] = v
        if min(cur) > limit:
            return limit + 1
        before, prev = prev, cur
    return prev[len(b)]


def _within_two(word: str, names: Iterable[str]) -> list[str]:
    q = 3 if len(word) >= 9 else 2
    grams = list(dict.fromkeys(word[i:i + q] for i in range(len(word) - q + 1)))
    allowed = 2 * q  # one edit breaks at most q of the q-grams that contain its position
    kept: list[tuple[int, str]] = []
    for name in names:
        if abs(len(name) - len(word)) > 2:
            continue
        missing = 0
        for gram in grams:
            if gram not in name:
                missing += 1
                if missing > allowed:
                    break
        else:
            kept.append((missing, name))
    kept.sort()
    scored = [(d, name) for _, name in kept[:MAX_ALIGNED] if (d := edit_distance(word, name, 2)) <= 2]
    return [name for _, name in sorted(scored)]


def close_names(word: str, names: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` names within one edit of ``word`` (else two, for words of 5+ characters), closest first."""
    word = normalize_name(word.strip())
    pool = names if isinstance(names, (set, frozenset)) else set(names)
    if not word or not pool:
        return []
    near = sorted(_edits1(word) & pool)
    if near:
        return near[:n]
    if len(word) < 5:
        return []
    return [name for name in _within_two(word, pool) if name != word][:n]


def did_you_mean(index: Index, name: str) -> str:
    """The hint for a name the index does not have: close names from its search summary, if any."""
    try:
        names = summary_names(index.search_lines())
    except (AdapterHubError, OSError):  # a summary we cannot read must not hide the not-found error
        names = []
    near = close_names(name, names)
    if near:
        return f"did you mean {', '.join(near)}? `adapterhub search` lists names"
    return "try `adapterhub search`"
