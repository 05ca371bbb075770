"""docs/cli.md is generated from the click command tree; this fails when it is stale."""

from __future__ import annotations

import click
from support.paths import DOCS

from adapterhub.cli import cli
from adapterhub.cli.docgen import MARKER, render_doc, render_reference

DOC = DOCS / "cli.md"


def _all_paths(group: click.Group, prefix: tuple[str, ...] = ("adapterhub",)):
    for name, cmd in group.commands.items():
        yield (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _all_paths(cmd, (*prefix, name))


def test_docs_cli_md_is_up_to_date() -> None:
    current = DOC.read_text(encoding="utf-8")
    assert MARKER in current
    assert current == render_doc(current), (
        "docs/cli.md is stale: run `python -m adapterhub.cli.docgen` and commit docs/cli.md")


def test_every_command_and_option_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    for path in _all_paths(cli):
        assert f"### `{' '.join(path)}`" in text, path
    for opt in ("--repo", "--to", "--create-pr", "--dry-run", "--base", "--metric", "--yes", "--index-url"):
        assert f"`{opt}`" in text, opt


def test_the_reference_does_not_depend_on_the_terminal(monkeypatch) -> None:
    first = render_reference(cli)
    monkeypatch.setenv("COLUMNS", "40")
    assert render_reference(cli) == first


def test_a_new_command_changes_the_reference() -> None:
    @click.group()
    def root() -> None:
        """Root."""

    before = render_reference(root)

    @root.command()
    @click.argument("thing")
    @click.option("--mode", type=click.Choice(["a", "b"]), default="a", show_default=True, help="How | why.")
    @click.option("--tag", multiple=True, envvar="TAGS", help="A tag.")
    def frob(thing: str, mode: str, tag: tuple[str, ...]) -> None:
        """Frobnicate THING."""

    after = render_reference(root)
    assert after != before
    assert "### `adapterhub frob`" in after and "adapterhub frob [OPTIONS] THING" in after
    assert "| `--mode` `a\\|b` | How \\| why. (default `a`) |" in after
    assert "| `--tag` `TEXT` | A tag. (repeatable; env `TAGS`) |" in after
