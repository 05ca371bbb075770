"""``adapterhub run``: classify texts with an adapter (pulled if needed) on its base model.

Thin: read the inputs, call :mod:`adapterhub.serve_run`, print a table or JSON lines. torch and
transformers are imported only when the command runs.
"""

from __future__ import annotations

import json
import sys

import click

from .app import cli, index_option, print_table
from .args import name_argument, text_argument


def _inputs(texts: tuple[str, ...], file: str | None) -> list[str]:
    from ..serve_run import iter_lines

    out: list[str] = []
    for t in texts:
        if t == "-":
            out += iter_lines(sys.stdin)
        else:
            out.append(t)
    if file == "-":
        out += iter_lines(sys.stdin)
    elif file is not None:
        with open(file, encoding="utf-8") as fh:
            out += iter_lines(fh)
    return out


@cli.command("run")
@click.argument("adapter", metavar="NAME_OR_DIR", callback=name_argument("run", "NAME_OR_DIR", dirs_ok=True))
@click.argument("texts", nargs=-1, metavar="TEXT...", callback=text_argument())
@click.option("--file", "-f", "file", default=None, metavar="FILE",
              help="Read inputs from FILE, one per line ('-' = stdin); a TEXT of '-' also reads stdin.")
@click.option("--base", default=None, metavar="PATH",
              help="Base model directory (default: $ADAPTERHUB_BASE_<ID>, bases.json, the Hugging Face cache, "
                   "or a package that ships the base; else it is fetched from the Hub at the manifest's revision "
                   "and checked, unless --offline).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--force", is_flag=True,
              help="Run even if the base's fingerprint differs from the manifest's (its shapes must still fit).")
@click.option("--offline", is_flag=True, default=False,
              help="Use the cache and local files only (also ADAPTERHUB_OFFLINE=1 or HF_HUB_OFFLINE=1).")
@click.option("--token", default=None, help="Hub token for an adapter in a private repo (default: the one "
              "huggingface_hub finds, e.g. HF_TOKEN or `hf auth login`).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per input (JSON Lines); no progress bar.")
@index_option
def run(adapter: str, texts: tuple[str, ...], file: str | None, base: str | None, batch_size: int, force: bool,
        offline: bool, token: str | None, as_json: bool, index_location: str | None) -> None:
    """Classify TEXT... (or lines of --file / stdin) with adapter NAME_OR_DIR on its base model.

    A progress bar counts the texts on a terminal (stderr); none with --json or when stderr is piped.
    """
    import warnings

    from ..errors import AdapterHubError
    from ..store.base_fetch import UnpinnedBaseWarning

    inputs = _inputs(texts, file)
    if not inputs:
        raise click.UsageError("no input: give TEXT arguments, --file FILE, or '-' for stdin")
    from ..progress import Progress
    from ..serve_run import prepare

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnpinnedBaseWarning)  # said below, as a one-line warning
        runner = prepare(adapter, base=base, force=force, index=index_location, offline=True if offline else None,
                         token=token, progress=False if as_json else None)
    if runner.base_fetch is not None and runner.base_fetch.unpinned_warning:
        click.echo(f"warning: {runner.base_fetch.unpinned_warning}", err=True)
    if not runner.fingerprint_checked:
        click.echo(f"warning: the base at {runner.base.path} was not checked against a fingerprint "
                   f"({'--force' if force else 'the manifest has none'})", err=True)
    try:
        with Progress(False if as_json else None, len(inputs), f"{runner.adapter}", unit="text") as bar:
            predictions = runner.classify(inputs, batch_size=batch_size, on_batch=bar.callback)
    except (ValueError, RuntimeError) as exc:  # tokenizer/model failures on odd input
        raise AdapterHubError(f"inference failed: {exc}") from exc
    if as_json:
        for p in predictions:
            click.echo(json.dumps({"adapter": runner.adapter, "version": runner.version, **p.to_json()},
                                  ensure_ascii=False))
        return
    print_table([{"label": p.label, "probability": f"{p.probability:.4f}", "text": p.text} for p in predictions],
                ["label", "probability", "text"])
