"""The scan's byte pre-filter, found over the whole summary at once, keeps exactly the lines of its rule."""

from __future__ import annotations

import random

from adapterhub.registry import open_index
from adapterhub.registry.scoring import LOWER_TO_ASCII, prefiltered

KEEP = (b"\\", *(c.encode() for c in LOWER_TO_ASCII))


def rule(lines: list[bytes], needles: list[str]) -> list[bytes]:
    """The definition: a line stays when its lower-cased bytes hold every needle, or it may spell one otherwise."""
    encoded = [n.encode() for n in needles]
    return [line if all(n in line.lower() for n in encoded) or any(k in line for k in KEEP) else b""
            for line in lines]


def test_prefilter_keeps_the_lines_its_rule_keeps():
    lines = open_index().search_lines().split(b"\n")
    lines += [b'{"name": "a\\u0041"}', "{\"name\": \"\u212aelvin \u0130\"}".encode(), b"", b'{"name": "SST2 x"}']
    words = sorted({w for line in lines for w in line.lower().decode().replace('"', " ").split() if w.isascii()})
    rnd = random.Random(3)
    cases = [["sst2"], ["ner", "pfeiffer"], ["a\nb"], ["k"], ["zzz-not-there"], ["sst2", "sst2"]]
    cases += [[rnd.choice(words)[rnd.randint(0, 2):] or "x" for _ in range(rnd.randint(1, 3))] for _ in range(300)]
    for needles in cases:
        assert prefiltered(lines, needles) == rule(lines, needles), needles
