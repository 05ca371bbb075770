"""Whole numbers written as text in untrusted input: format versions, header values, tensor names, labels.

``str.isdigit`` is true for characters ``int`` refuses (``'²'``), and ``int`` raises past 4,300 digits, so
a check with one and a conversion with the other turn hostile text into an exception nobody typed. One
function does both, and callers say what a ``None`` means where they are.
"""

from __future__ import annotations

MAX_DIGITS = 19
"""Up to 19 digits: every value fits a signed 64-bit integer (file sizes, byte offsets, layer indices)."""


def plain_int(text: object, *, max_digits: int = MAX_DIGITS) -> int | None:
    """``text`` as a non-negative integer when it is 1 to ``max_digits`` ASCII digits and nothing else
    (no sign, space or underscore), else None."""
    if not isinstance(text, str) or not 0 < len(text) <= max_digits or not text.isascii() or not text.isdigit():
        return None
    return int(text)
