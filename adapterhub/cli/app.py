"""The root click group and helpers shared by command modules (JSON output, common options)."""

from __future__ import annotations

import json
from typing import Any

import click

from .._version import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="adapterhub")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def cli(debug: bool) -> None:
    """adapterhub: find, pull, verify and use adapters on frozen transformers models."""


def json_option(func):
    """``--json``: print machine-readable output instead of a table."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(func)


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=False))


def index_option(func):
    """``--index``: which registry index to use (bundled by default)."""
    return click.option(
        "--index", "index_location", envvar="ADAPTERHUB_INDEX", default=None, metavar="DIR|URL|hf:datasets/ORG/NAME",
        help="Registry index: a local directory, an http(s) base URL or a Hub dataset repo "
        "(hf:datasets/ORG/NAME[@REV]) (default: the bundled index; env ADAPTERHUB_INDEX).",
    )(func)


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain aligned text table (no dependency; fast to import)."""
    if not rows:
        click.echo("(no results)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    widths[columns[-1]] = min(widths[columns[-1]], 80)
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        cells = []
        for c in columns:
            text = str(r.get(c, ""))
            if len(text) > widths[c]:
                text = text[: widths[c] - 1] + "…"
            cells.append(text.ljust(widths[c]))
        click.echo("  ".join(cells).rstrip())
