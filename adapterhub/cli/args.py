"""Positional arguments that take a name or a text, checked against the files they might mean.

``adapterhub run NAME reviews.txt`` used to classify the string "reviews.txt", and ``adapterhub pull
./my-adapter`` failed with "cannot parse requirement". An argument that names an existing file (or, for
names, a directory) where a text or an index name goes gets an :class:`~adapterhub.errors.ArgumentKindError`
that says which form the command wants. A plain index name (``sst2-houlsby``) is taken as a name even
when a file of that name happens to exist: names are what these commands take.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import click

from ..errors import ArgumentKindError

_PLAIN_REQUIREMENT = re.compile(r"^[a-z0-9][a-z0-9-]*(\s*(@|[<>=!~]).*)?$")
_NAME_FORMS = "NAME, NAME==1.0, NAME>=1,<2 or NAME@1.0"


def _kind(path: Path) -> str:
    """What a local path is, in the words a message uses."""
    if (path / "config.json").is_file() and (path / "search-index.jsonl").is_file():
        return "registry index"
    if (path / "adapterhub.json").is_file():
        return "adapter directory"
    if (path / "adapter_config.json").is_file():
        return "PEFT or adapters-library directory"
    return "directory" if path.is_dir() else "file"


def _what_instead(command: str, value: str, kind: str) -> str:
    if kind == "registry index":
        return f"pass a registry index with --index {value}"
    if kind == "adapter directory":
        local = f"`adapterhub run {value} TEXT` uses it directly" if command != "info" else \
            f"`adapterhub validate {value}` checks it"
        return (f"{local}; to make it pullable, `adapterhub publish {value} --to REGISTRY`, then "
                f"`adapterhub pull NAME --index REGISTRY`")
    if kind == "PEFT or adapters-library directory":
        return f"convert it first: `adapterhub init {value} --base BASE`"
    if command == "run":
        return f"to classify the lines of a file, pass it with --file: `adapterhub run NAME --file {value}`"
    return f"give an adapter name from the index ({_NAME_FORMS}); `adapterhub search` lists them"


def refuse_path_as_name(command: str, value: str | None, what: str = "NAME", *, dirs_ok: bool = False) -> str | None:
    """``value`` unless it names an existing local path and is not a plain index name.

    ``dirs_ok``: the command also takes an adapter directory (``run``), so only files are refused.
    """
    if not value or _PLAIN_REQUIREMENT.match(value.strip()) or not os.path.lexists(value):
        return value
    path = Path(value)
    if dirs_ok and path.is_dir():
        return value
    if dirs_ok and path.name == "adapterhub.json":
        raise ArgumentKindError(f"{value!r} is a manifest file; `adapterhub {command}` takes its directory",
                                hint=f"pass {str(path.parent)!r}")
    kind = _kind(path)
    takes = "an index name or an adapter directory" if dirs_ok else "an adapter name from the index"
    raise ArgumentKindError(f"`adapterhub {command}` takes {takes} as {what}, but {value!r} is a local {kind}",
                            hint=_what_instead(command, value, kind))


def name_argument(command: str, what: str = "NAME", *, dirs_ok: bool = False):
    """A click callback for a NAME/REQUIREMENT positional of ``command`` (see :func:`refuse_path_as_name`)."""
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        return refuse_path_as_name(command, value, what, dirs_ok=dirs_ok)

    callback.checks_paths = True  # type: ignore[attr-defined]  # tests find unchecked positionals by this
    return callback


def names_argument(command: str, what: str = "NAME"):
    """A click callback for a NAME... positional (``nargs=-1``): each value as :func:`name_argument` checks it."""
    def callback(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(refuse_path_as_name(command, v, what) or v for v in values)

    callback.checks_paths = True  # type: ignore[attr-defined]
    return callback


def text_argument():
    """A click callback for TEXT... positionals (see :func:`refuse_file_as_text`)."""
    def callback(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
        return refuse_file_as_text(value)

    callback.checks_paths = True  # type: ignore[attr-defined]
    return callback


def refuse_file_as_text(texts: tuple[str, ...]) -> tuple[str, ...]:
    """``texts`` unless one of them names an existing file: that user wanted ``--file``."""
    for text in texts:
        if text != "-" and os.path.isfile(text):
            raise ArgumentKindError(
                f"TEXT {text!r} is the name of a file here; `adapterhub run` would classify those words",
                hint=f"to classify the file's lines pass --file {text}; to classify the words themselves, "
                     f"send them on stdin: `echo {text} | adapterhub run NAME -`")
    return texts
