"""The ``adapterhub`` command line: thin click commands over the library.

Commands parse arguments, call the library and print. Errors from the library are typed
(:mod:`adapterhub.errors`); :func:`main` turns them into one line on stderr and exit code 1 (usage
errors exit 2), or a traceback with ``--debug``. Nothing here imports torch or transformers at module
level: commands that need them import them inside the command.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .._version import __version__
from .warm_pull import answer_warm_pull

if TYPE_CHECKING:
    from .app import cli

__all__ = ["cli", "main"]


def __getattr__(name: str) -> Any:
    """``cli`` (the click group) is imported on first use: a warm ``pull`` never needs click (:mod:`.warm_pull`)."""
    if name == "cli":
        from .app import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: a warm ``pull`` is answered at once (:mod:`.warm_pull`), the rest by click."""
    args = sys.argv[1:] if argv is None else argv
    try:
        answered = answer_warm_pull(args)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    return answered if answered is not None else run_click(args)


def run_click(args: list[str]) -> int:
    """Run the command line through click; library errors become one line on stderr (tracebacks with --debug)."""
    import click

    from ..errors import AdapterHubError
    from .app import cli  # command modules are imported when their command is looked up (app.LazyGroup)

    debug = "--debug" in args
    try:
        result = cli.main(args=args, prog_name="adapterhub", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 1
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except AdapterHubError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return result if isinstance(result, int) else 0


def _entry() -> None:  # pragma: no cover - used by ``python -m adapterhub``
    sys.exit(main())


__version__ = __version__
