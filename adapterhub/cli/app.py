"""The root click group and helpers shared by command modules (JSON output, common options)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import click

from .._version import __version__
from .pull_report import json_text

COMMAND_MODULES: Mapping[str, str] = {
    **dict.fromkeys(("search", "info", "validate", "index", "lock"), ".registry_cmds"),
    **dict.fromkeys(("pull", "verify", "verify-signature", "cache"), ".store_cmds"),
    **dict.fromkeys(("init", "package", "publish", "sign"), ".publish_cmds"),
    "run": ".run_cmd",
}
"""Which module (relative to :mod:`adapterhub.cli`) defines each top-level command. Importing a module
registers its commands on :data:`cli`; a test checks this map against what the modules register."""


class LazyGroup(click.Group):
    """The root group: a command's module is imported when that command is looked up.

    Start-up cost is what a user waits for on every call (a warm ``adapterhub pull`` must stay near
    0.15 s), and the command modules together cost more than the pull itself. ``commands`` (click's
    mapping, read by help, completion and docgen) imports every module first, so it is always whole.
    """

    def __init__(self, *args: Any, modules: Mapping[str, str], **kwargs: Any) -> None:
        self.registered: dict[str, click.Command] = {}
        self.modules = dict(modules)
        super().__init__(*args, **kwargs)

    @property
    def commands(self) -> dict[str, click.Command]:  # type: ignore[override]
        for module in sorted(set(self.modules.values())):
            importlib.import_module(module, __package__)
        return self.registered

    @commands.setter
    def commands(self, value: Mapping[str, click.Command]) -> None:
        self.registered = dict(value)

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        name = name or cmd.name
        if name is None:
            raise TypeError("Command has no name.")
        self.registered[name] = cmd

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = self.modules.get(cmd_name)
        if module is not None and cmd_name not in self.registered:
            importlib.import_module(module, __package__)
        return self.registered.get(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.commands)


@click.group(cls=LazyGroup, modules=COMMAND_MODULES, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="adapterhub")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def cli(debug: bool) -> None:
    """adapterhub: find, pull, verify and use adapters on frozen transformers models."""


def json_option(func):
    """``--json``: print machine-readable output instead of a table."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(func)


def echo_json(data: Any) -> None:
    click.echo(json_text(data))


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
