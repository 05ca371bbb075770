"""Regular expressions a stranger wrote (PEFT's ``target_modules``, ``rank_pattern``...), matched with a time limit.

PEFT reads a string ``target_modules`` as a regular expression and matches it against every module name;
Python's ``re`` backtracks without bound, so ``(.|.)*Z`` takes longer than the universe has left on a
40-character name, and ``pull hf:`` would hang on a hostile ``adapter_config.json``. Patterns are compiled
with the ``regex`` package (``re``-compatible syntax, a ``transformers`` dependency) whose matcher takes a
timeout: a pattern that exceeds it, on one name or summed over every slow match, is refused with a typed error.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import SchemaError, SchemaProblem

MAX_PATTERN = 4096
"""Longest pattern compiled (PEFT's own module patterns are tens of characters)."""
BUDGET = 1.0
"""Seconds one pattern may spend matching, summed over its slow matches (a module name never needs a
millisecond; only slow matches are counted, so a long-running process never exhausts it legitimately)."""
SLOW = 0.001


@dataclass
class UntrustedPattern:
    """A compiled pattern with the budget it has left."""

    pattern: str
    compiled: Any
    pointer: str
    source: str
    spent: float = field(default=0.0)

    def _run(self, method: str, text: str) -> Any:
        started = time.monotonic()
        try:
            found = getattr(self.compiled, method)(text, timeout=max(0.001, BUDGET - self.spent))
        except TimeoutError:
            self.spent = BUDGET
            raise SchemaError(self.source, [SchemaProblem(self.pointer, (
                f"{self.pattern[:200]!r} takes more than {BUDGET:g} s to match module names like {text!r} "
                "(catastrophic backtracking); PEFT would hang on it too: save the adapter with a list of "
                "module names"))]) from None
        elapsed = time.monotonic() - started
        if elapsed > SLOW:
            self.spent += elapsed
        return found

    def fullmatch(self, text: str) -> bool:
        return self._run("fullmatch", text) is not None

    def match(self, text: str) -> bool:
        return self._run("match", text) is not None

    def match_at_start(self, text: str) -> Any:
        """The match object of :meth:`match` (its groups), or None."""
        return self._run("match", text)


def untrusted_pattern(pattern: Any, pointer: str, source: str) -> UntrustedPattern:
    """``pattern`` compiled for :class:`UntrustedPattern` matching, else a :class:`SchemaError` at ``pointer``."""
    if not isinstance(pattern, str) or len(pattern) > MAX_PATTERN:
        shown = pattern[:80] + "..." if isinstance(pattern, str) else repr(pattern)
        raise SchemaError(source, [SchemaProblem(pointer, f"{shown!r} is not a regular expression of at most "
                                                          f"{MAX_PATTERN} characters")])
    return _compiled(pattern, pointer, source)


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str, pointer: str, source: str) -> UntrustedPattern:
    """One object per pattern, so its budget is shared by every lookup (``rank_pattern`` is matched per module)."""
    import regex  # deferred: only a config with a pattern pays for it

    try:
        return UntrustedPattern(pattern, regex.compile(pattern), pointer, source)
    except (regex.error, RecursionError, OverflowError, ValueError) as exc:
        raise SchemaError(source, [SchemaProblem(pointer, f"{pattern[:200]!r} is not a regular expression: "
                                                          f"{exc}")]) from None
