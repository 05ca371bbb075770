"""Streaming generated text as tokens arrive, never releasing text a later token could still change.

A tokenizer's decode of a token prefix is not always a prefix of the decode of the whole: a multi-byte
character split across byte-level tokens decodes to ``\\ufffd`` until its last byte arrives, and the
tokenizer's clean-up removes a space before punctuation or a contraction (``"do n't"`` -> ``"don't"``)
once the next token shows it. So each row's tokens are decoded whole (as transformers' ``TextStreamer``
does) and only the text before the last ASCII space and before a trailing run of ``\\ufffd`` is released;
the end of generation releases the rest. Concatenating a row's pieces gives exactly its final text.
Torch-free: token batches are read through ``tolist()``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

REPLACEMENT = "\ufffd"


def stable_length(text: str) -> int:
    """How much of ``text`` no later token can change: up to its last space and any trailing ``\\ufffd``."""
    end = len(text)
    space = text.rfind(" ")
    if space >= 0:
        end = space
    while end > 0 and text[end - 1] == REPLACEMENT:
        end -= 1
    return end


class IncrementalText:
    """One sequence's decoded text, released piece by piece as its tokens grow."""

    def __init__(self, decode: Callable[[list[int]], str]) -> None:
        self.decode = decode
        self.ids: list[int] = []
        self.released = ""

    def add(self, ids: Sequence[int]) -> str:
        """Take new tokens; the text that became final (possibly empty)."""
        self.ids.extend(ids)
        text = self.decode(self.ids)
        if not text.startswith(self.released):  # a decode that rewrote released text: wait for the end
            return ""
        return self.release(text[:max(len(self.released), stable_length(text))])

    def finish(self) -> str:
        """The rest of the text, now that no token follows."""
        return self.release(self.decode(self.ids))

    def release(self, text: str) -> str:
        piece = text[len(self.released):] if text.startswith(self.released) else ""
        self.released += piece
        return piece


class TokenStreamer:
    """A ``generate(streamer=...)`` object: ``on_text(row, piece)`` for each row's newly final text.

    transformers first puts the prompt ids (skipped here), then each step's new token per row. A row's
    tokens after its first stop token are padding and are ignored; stop tokens themselves are not decoded.
    ``row`` is the row's index plus ``offset`` (the batch's first input).
    """

    def __init__(self, decode: Callable[[list[int]], str], on_text: Callable[[int, str], None], rows: int,
                 stop_ids: Collection[int], offset: int = 0) -> None:
        self.texts = [IncrementalText(decode) for _ in range(rows)]
        self.done = [False] * rows
        self.on_text = on_text
        self.stop_ids = frozenset(stop_ids)
        self.offset = offset
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        tokens = value.tolist() if hasattr(value, "tolist") else value
        rows = [[t] if isinstance(t, int) else list(t) for t in tokens]
        for i, ids in enumerate(rows):
            if self.done[i]:
                continue
            stop = next((n for n, t in enumerate(ids) if t in self.stop_ids), None)
            if stop is not None:
                ids, self.done[i] = ids[:stop], True
            self.emit(i, self.texts[i].add(ids))

    def end(self) -> None:
        for i, text in enumerate(self.texts):
            self.emit(i, text.finish())

    def emit(self, row: int, piece: str) -> None:
        if piece:
            self.on_text(self.offset + row, piece)
