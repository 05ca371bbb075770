"""Generate the command reference in docs/cli.md from the click command tree.

``python -m adapterhub.cli.docgen`` rewrites the part of docs/cli.md after the marker line; the
prose above it is kept. ``tests/project/test_docs_cli.py`` fails when the file is stale, so a new command or
option cannot ship undocumented. The output depends only on the command definitions (no terminal
width), so it is the same on every machine.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

MARKER = "<!-- BEGIN GENERATED COMMAND REFERENCE (python -m adapterhub.cli.docgen; do not edit below) -->"
DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _option_row(param: click.Parameter, ctx: click.Context) -> tuple[str, str]:
    assert isinstance(param, click.Option)
    names = ", ".join(f"`{n}`" for n in (*param.opts, *param.secondary_opts))
    if not param.is_flag:
        if isinstance(param.type, click.Choice):
            names += f" `{'|'.join(str(c) for c in param.type.choices)}`"
        else:
            names += f" `{param.metavar or param.type.name.upper()}`"
    help_text = param.help or ""
    extras = []
    if param.multiple:
        extras.append("repeatable")
    if param.envvar and str(param.envvar) not in help_text:
        extras.append(f"env `{param.envvar}`")
    if param.show_default and param.default not in (None, False, ()):
        extras.append(f"default `{param.default}`")
    if extras:
        help_text = f"{help_text} ({'; '.join(extras)})" if help_text else "; ".join(extras)
    return names.replace("|", "\\|"), _cell(help_text)


def _command_section(path: list[str], cmd: click.Command, parent: click.Context | None) -> list[str]:
    ctx = click.Context(cmd, info_name=path[-1], parent=parent)
    usage = " ".join([*path, *cmd.collect_usage_pieces(ctx)])
    lines = [f"### `{' '.join(path)}`", ""]
    if cmd.help:
        lines += [" ".join(cmd.help.split("\b")[0].split()), ""]
    lines += ["```text", usage, "```", ""]
    rows = [_option_row(p, ctx) for p in cmd.params if isinstance(p, click.Option) and not p.hidden]
    rows.append(("`-h`, `--help`", "Show the help and exit."))
    if rows:
        lines += ["| option | meaning |", "| --- | --- |", *(f"| {a} | {b} |" for a, b in rows), ""]
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            sub = cmd.commands[name]
            if not sub.hidden:
                lines += _command_section([*path, name], sub, ctx)
    return lines


def render_reference(root: click.Group | None = None) -> str:
    """The generated reference: a command list, then one section per command (groups recursively)."""
    if root is None:
        from . import cli as root
    ctx = click.Context(root, info_name="adapterhub")
    lines = ["## Commands", ""]
    for name in sorted(root.commands):
        cmd = root.commands[name]
        lines.append(f"- [`adapterhub {name}`](#adapterhub-{name}) — {_cell(cmd.get_short_help_str(limit=200))}")
    lines.append("")
    lines += ["## Global options", "", "| option | meaning |", "| --- | --- |"]
    lines += [f"| {a} | {b} |" for a, b in (_option_row(p, ctx) for p in root.params if isinstance(p, click.Option))]
    lines += ["| `-h`, `--help` | Show the help and exit. |", "", "## Reference", ""]
    for name in sorted(root.commands):
        lines += _command_section(["adapterhub", name], root.commands[name], ctx)
    return "\n".join(lines).rstrip() + "\n"


def render_doc(current: str, root: click.Group | None = None) -> str:
    """``current`` (docs/cli.md) with everything after the marker replaced by a fresh reference."""
    head = current.split(MARKER, 1)[0].rstrip() + "\n\n" if MARKER in current else current.rstrip() + "\n\n"
    return head + MARKER + "\n\n" + render_reference(root)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DOC_PATH
    text = render_doc(path.read_text(encoding="utf-8") if path.exists() else "# Command line\n")
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
