"""Input records from files and streams: plain lines, TSV with a header, or JSON Lines.

A record is a string (a plain line: the task's main text) or a mapping of fields (``text``,
``text_pair``, ``question``, ``context``...); the task checks the fields it needs
(:attr:`~adapterhub.tasks.types.Task.coerce`). Torch-free: the CLI reads inputs before loading a model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..errors import SchemaError, SchemaProblem

FORMATS = ("lines", "tsv", "jsonl")


def format_of(path: str, given: str | None = None) -> str:
    """``given``, else from the file name: ``.jsonl``/``.ndjson`` -> jsonl, ``.tsv`` -> tsv, else lines."""
    if given is not None:
        return given
    lower = path.lower()
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return "tsv" if lower.endswith(".tsv") else "lines"


def read_records(stream: Iterable[str], fmt: str, where: str) -> list[str | dict[str, Any]]:
    """The records of a stream in format ``fmt`` (blank lines skipped); ``where`` names it in errors."""
    lines = [(n, line.rstrip("\r\n")) for n, line in enumerate(stream, start=1)]
    lines = [(n, line) for n, line in lines if line.strip()]
    if fmt == "lines":
        return [line for _, line in lines]
    if fmt == "jsonl":
        out: list[str | dict[str, Any]] = []
        for n, line in lines:
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SchemaError(where, [SchemaProblem(f"/{n}", f"line {n} is not JSON: {exc.msg}")]) from exc
            if not isinstance(doc, dict):
                raise SchemaError(where, [SchemaProblem(f"/{n}", f"line {n} is not a JSON object")])
            out.append(doc)
        return out
    if fmt == "tsv":
        if not lines:
            return []
        header = lines[0][1].split("\t")
        rows: list[str | dict[str, Any]] = []
        for n, line in lines[1:]:
            cells = line.split("\t")
            if len(cells) != len(header):
                raise SchemaError(where, [SchemaProblem(
                    f"/{n}", f"line {n} has {len(cells)} tab-separated cells; the header names {len(header)}")])
            rows.append(dict(zip(header, cells, strict=True)))
        return rows
    raise SchemaError(where, [SchemaProblem("/", f"unknown input format {fmt!r}; known: {', '.join(FORMATS)}")])
