"""``adapterhub run``: run an adapter's head (pulled if needed) on its base model over inputs.

Thin: read the input records, call :mod:`adapterhub.serve_run`, print a table or JSON lines. The
runner's task kind (from the manifest's head type) decides what the inputs mean and how results look.
torch and transformers are imported only when the command runs.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from .app import cli, index_option, print_table
from .args import name_argument, text_argument

FIELD_OPTIONS = {"pair": "text_pair", "context": "context"}
"""Options that add a field to input records -> the field (the task must read it)."""


def _file_records(file: str | None, fmt: str | None) -> list[Any]:
    from ..tasks.inputs import format_of, read_records

    if file is None:
        return []
    if file == "-":
        return read_records(sys.stdin, fmt or "lines", "stdin")
    with open(file, encoding="utf-8") as fh:
        return read_records(fh, format_of(file, fmt), file)


def _inputs(texts: tuple[str, ...], file: str | None, fmt: str | None = None) -> list[Any]:
    """Records of TEXT arguments ('-' reads stdin), then of --file, in order."""
    from ..tasks.inputs import read_records

    out: list[Any] = []
    for t in texts:
        out += read_records(sys.stdin, fmt or "lines", "stdin") if t == "-" else [t]
    return out + _file_records(file, fmt)


def _add_field(records: list[Any], option: str, values: tuple[str, ...], n_texts: int) -> list[Any]:
    """One value: added to every record that lacks the field; several: one per TEXT argument, in order."""
    field = FIELD_OPTIONS[option]
    if not values:
        return records
    if len(values) > 1 and len(values) != n_texts:
        raise click.UsageError(f"{len(values)} --{option} values for {n_texts} TEXT arguments: give one "
                               f"(for every input) or one per TEXT")
    out = []
    for i, record in enumerate(records):
        rec = {"text": record} if isinstance(record, str) else dict(record)
        if rec.get(field) is None:
            rec[field] = values[0] if len(values) == 1 else values[i] if i < n_texts else None
        out.append(rec if rec[field] is not None else record)
    return out


@cli.command("run")
@click.argument("adapter", metavar="NAME_OR_DIR", callback=name_argument("run", "NAME_OR_DIR", dirs_ok=True))
@click.argument("texts", nargs=-1, metavar="TEXT...", callback=text_argument())
@click.option("--file", "-f", "file", default=None, metavar="FILE",
              help="Read inputs from FILE ('-' = stdin): one text per line, a .tsv with a header row naming the "
                   "fields, or .jsonl objects (see --format); a TEXT of '-' also reads stdin.")
@click.option("--format", "fmt", type=click.Choice(["lines", "tsv", "jsonl"]), default=None,
              help="Format of --file and stdin (default: from FILE's suffix; lines for stdin).")
@click.option("--pair", "pair", multiple=True, metavar="TEXT",
              help="Second text of a pair-classification input (NLI hypothesis); once for every input, or once "
                   "per TEXT.")
@click.option("--context", "context", multiple=True, metavar="TEXT",
              help="Question answering: the passage each TEXT (a question) is answered from; once for every "
                   "question, or once per TEXT.")
@click.option("--choice", "choices", multiple=True, metavar="TEXT",
              help="Multiple choice: a candidate for every input (repeat: at least two).")
@click.option("--context-file", default=None, metavar="FILE",
              help="Question answering: read the passage from FILE (whole file).")
@click.option("--base", default=None, metavar="PATH",
              help="Base model directory (default: $ADAPTERHUB_BASE_<ID>, bases.json, the Hugging Face cache, "
                   "or a package that ships the base; else it is fetched from the Hub at the manifest's revision "
                   "and checked, unless --offline).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Multilabel heads: report every label whose probability reaches this (default 0.5).")
@click.option("--aggregation", type=click.Choice(["simple", "first"]), default=None,
              help="Token classification: group sub-token labels into entities ('simple', default), or label each "
                   "word by its first sub-token first ('first').")
@click.option("--doc-stride", type=click.IntRange(min=0), default=None,
              help="Question answering: tokens shared by neighbouring windows of a long context "
                   "(default: min(128, max length / 4)).")
@click.option("--max-answer-length", type=click.IntRange(min=1), default=None,
              help="Question answering: longest answer in tokens (default 30).")
@click.option("--max-length", type=click.IntRange(min=8), default=None,
              help="Question answering: window length in tokens (default: min(384, the base's limit)).")
@click.option("--max-new-tokens", type=click.IntRange(min=1), default=None,
              help="Language-model adapters: most tokens to generate per input (default 64).")
@click.option("--sample", "do_sample", is_flag=True, default=False,
              help="Language-model adapters: sample the next token (default: greedy, the most likely one).")
@click.option("--temperature", type=float, default=None,
              help="With --sample: divide the logits by this (> 0; default: the base's generation config).")
@click.option("--top-p", type=float, default=None,
              help="With --sample: sample from the most likely tokens whose probabilities sum to this (0 < p <= 1).")
@click.option("--top-k", type=click.IntRange(min=0), default=None,
              help="With --sample: sample from the K most likely tokens (0: no limit).")
@click.option("--seed", type=int, default=None,
              help="With --sample: seed the sampler (same inputs, batch size and seed give the same text).")
@click.option("--chat/--no-chat", "chat", default=None,
              help="Causal language models: format each input as a user message with the tokenizer's chat "
                   "template (default: when the tokenizer has one).")
@click.option("--force", is_flag=True,
              help="Run even if the base's fingerprint differs from the manifest's (its shapes must still fit).")
@click.option("--offline", is_flag=True, default=False,
              help="Use the cache and local files only (also ADAPTERHUB_OFFLINE=1 or HF_HUB_OFFLINE=1).")
@click.option("--token", default=None, help="Hub token for an adapter in a private repo (default: the one "
              "huggingface_hub finds, e.g. HF_TOKEN or `hf auth login`).")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per input (JSON Lines); no progress bar, except while a language model "
                   "generates (on a terminal's stderr).")
@index_option
@click.pass_context
def run(ctx: click.Context, adapter: str, texts: tuple[str, ...], file: str | None, fmt: str | None,
        pair: tuple[str, ...], context: tuple[str, ...], choices: tuple[str, ...], context_file: str | None,
        base: str | None,
        batch_size: int, force: bool, offline: bool, token: str | None, as_json: bool,
        index_location: str | None, **task_options: Any) -> None:
    """Run adapter NAME_OR_DIR's head on TEXT... (or records of --file / stdin) on its base model; the head
    type in its manifest picks the task (docs/run.md).

    A progress bar counts the inputs on a terminal (stderr); none when stderr is piped, nor with --json
    (except while a language model generates).

    \b
    classification, multilabel-classification, regression   TEXT (--pair for text pairs)
    token-classification                                      TEXT: token labels and entities
    question-answering                                        TEXT is the question; --context
    multiple-choice                                           TEXT; --choice (repeated)
    lm (language model: causal or seq2seq)                    TEXT is the prompt: generated text
    A language model's text is streamed as it is produced when stdout is a terminal (one input at a
    time, no progress bar; docs/generate.md).
    """
    import warnings

    from ..errors import AdapterHubError, InvalidArgumentError
    from ..store.base_fetch import UnpinnedBaseWarning

    if context_file is not None:
        with open(context_file, encoding="utf-8") as fh:
            context += (fh.read(),)
    records = _add_field(_add_field(_inputs(texts, file, fmt), "pair", pair, len(texts)), "context", context,
                         len(texts))
    if choices:
        records = [{"text": r, "choices": list(choices)} if isinstance(r, str) else {"choices": list(choices), **r}
                   for r in records]
    if not records:
        raise click.UsageError("no input: give TEXT arguments, --file FILE, or '-' for stdin")
    options = {k: v for k, v in task_options.items()
               if ctx.get_parameter_source(k) is not click.core.ParameterSource.DEFAULT}
    from ..tasks.generate import check_generation_options

    check_generation_options(options)  # bad decoding settings fail before any model is fetched or loaded
    from ..progress import Progress
    from ..serve_run import prepare

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnpinnedBaseWarning)  # said below, as a one-line warning
        runner = prepare(adapter, base=base, force=force, index=index_location, offline=True if offline else None,
                         token=token, progress=False if as_json else None)
    for option, field, given in (("pair", "text_pair", pair), ("context", "context", context),
                                 ("choice", "choices", choices)):
        if given and field not in runner.task.fields:
            raise InvalidArgumentError(f"--{option} does not apply to {runner.adapter}: it has a {runner.head_type} "
                                       f"head (inputs with {', '.join(runner.task.fields)})")
    if runner.base_fetch is not None and runner.base_fetch.unpinned_warning:
        click.echo(f"warning: {runner.base_fetch.unpinned_warning}", err=True)
    if not runner.fingerprint_checked:
        click.echo(f"warning: the base at {runner.base.path} was not checked against a fingerprint "
                   f"({'--force' if force else 'the manifest has none'})", err=True)
    generates = "stream" in runner.task.options
    streaming = generates and not as_json and stdout_is_terminal()
    try:
        if streaming:
            results = _stream_generations(runner, records, options)
        else:
            show_bar = None if generates else False if as_json else None  # generation: slow, count it always
            with Progress(show_bar, len(records), f"{runner.adapter}", unit="text") as bar:
                results = runner.run(records, batch_size=batch_size, on_batch=bar.callback, **options)
    except AdapterHubError:
        raise
    except (ValueError, RuntimeError) as exc:  # tokenizer/model failures on odd input
        raise AdapterHubError(f"inference failed: {exc}") from exc
    if streaming:
        return
    if generates and not as_json:
        _print_generations(results)
        return
    if as_json:
        for r in results:
            click.echo(json.dumps({"adapter": runner.adapter, "version": runner.version, **r.to_json()},
                                  ensure_ascii=False))
        return
    print_table([row for r in results for row in r.table_rows()], list(runner.columns))


def stdout_is_terminal() -> bool:
    """Whether standard output is a terminal (generated text is then streamed)."""
    return sys.stdout.isatty()


def _header(prompt: str, n: int, total: int) -> str:
    first = prompt.splitlines()[0] if prompt.strip() else prompt
    return f"[{n}/{total}] {first}"


def _print_generations(results: list[Any]) -> None:
    """Each input's generated text; with several inputs, each after a ``[n/N] prompt`` line."""
    for n, r in enumerate(results, start=1):
        if len(results) > 1:
            click.secho(_header(r.prompt, n, len(results)), dim=True)
        click.echo(r.text)


def _stream_generations(runner: Any, records: list[Any], options: dict[str, Any]) -> list[Any]:
    """Generate one input at a time, writing its text to stdout as it becomes final."""
    prompts = [runner.task.coerce(r).text for r in records]
    done = [0]

    def piece(index: int, text: str) -> None:
        click.echo(text, nl=False)
        sys.stdout.flush()

    def header(index: int) -> None:
        if len(prompts) > 1:
            click.secho(_header(prompts[index], index + 1, len(prompts)), dim=True)

    def finished(n: int) -> None:
        click.echo()
        done[0] += n
        if done[0] < len(prompts):
            header(done[0])

    header(0)
    return runner.run(records, batch_size=1, on_batch=finished, stream=piece, **options)
