"""Registry and manifest commands: search, info, validate, and the ``index`` group."""

from __future__ import annotations

from pathlib import Path

import click

from .app import cli, echo_json, index_option, json_option, print_table
from .args import name_argument


@cli.command()
@click.argument("query", nargs=-1)
@click.option("--task", help="Filter by task name, task type or dataset (e.g. sst2, text-classification).")
@click.option("--method", help="Filter by method or variant (e.g. lora, houlsby).")
@click.option("--base", "base_model", help="Filter by base model id.")
@click.option("--limit", default=50, show_default=True, help="Maximum number of results (0 = all).")
@index_option
@json_option
def search(query: tuple[str, ...], task: str | None, method: str | None, base_model: str | None, limit: int,
           index_location: str | None, as_json: bool) -> None:
    """Search the index by free text, task, method and base model."""
    from ..registry import SearchQuery, open_index
    from ..registry import search as run_search

    index = open_index(index_location)
    rows = run_search(index, SearchQuery(" ".join(query), task, method, base_model), limit or None)
    if as_json:
        echo_json(rows)
        return
    print_table([{**r, "method": r["variant"] or r["method"]} for r in rows],
                ["name", "version", "method", "task", "base_model", "description"])
    if not rows and len(query) == 1:  # one word that finds nothing may be a mistyped name
        from ..registry.suggest import close_names, summary_names

        near = close_names(query[0], summary_names(index.search_lines()))
        if near:
            click.echo(f"did you mean {', '.join(near)}?")


@cli.command()
@click.argument("requirement", callback=name_argument("info", "REQUIREMENT"))
@click.option("--base", "base_model", help="Only versions for this base model id.")
@index_option
@json_option
def info(requirement: str, base_model: str | None, index_location: str | None, as_json: bool) -> None:
    """Show a release: manifest summary, versions, files, base model (NAME, NAME==1.0, NAME>=1,<2, NAME@1.0)."""
    from ..manifest import manifest_to_dict
    from ..registry import open_index, resolve

    index = open_index(index_location)
    resolved = resolve(index, requirement, base_model=base_model)
    m = resolved.manifest
    versions = [{"version": e.version, "yanked": e.yanked} for e in index.entries(m.name)]
    if as_json:
        echo_json({"manifest": manifest_to_dict(m), "manifest_sha256": resolved.entry.manifest_sha256,
                   "versions": versions, "index": index.location})
        return
    b = m.base_model
    click.echo(f"{m.name} {m.version}  ({m.license})")
    click.echo(f"  {' '.join(m.description.split())}")
    click.echo(f"  task:       {m.task.type} / {m.task.name}" + (f" ({m.task.dataset})" if m.task.dataset else ""))
    variant = getattr(m.adapter.config, "variant", None)
    click.echo(f"  method:     {m.adapter.method}" + (f" ({variant})" if variant else ""))
    click.echo(f"  base model: {b.id}" + (f" @ {b.revision}" if b.revision else "")
               + f"  [{b.model_type}, hidden {b.hidden_size}, {b.num_hidden_layers} layers]")
    if b.fingerprint:
        click.echo(f"              {b.fingerprint}")
    if m.head:
        click.echo(f"  head:       {m.head.type}" + (f", labels {list(m.head.labels)}" if m.head.labels else ""))
    click.echo("  versions:   " + ", ".join(v["version"] + (" [yanked]" if v["yanked"] else "") for v in versions))
    if m.files:
        click.echo("  files:")
        for f in m.files:
            click.echo(f"    {f.path}  {f.size:,} bytes  sha256:{f.sha256}")
    for s in m.sources or ():
        detail = {"hf": lambda s: f"{s.repo_id}@{s.revision}", "https": lambda s: s.base_url,
                  "archive": lambda s: f"{s.url} (sha256:{s.sha256[:16]}…)", "bundled": lambda s: "bundled mirror"}
        click.echo(f"  source:     {s.type}: {detail[s.type](s)}")
    for met in m.metrics or ():
        click.echo(f"  metric:     {met.name} = {met.value} on {met.dataset} {met.split}")
    for dep in m.dependencies or ():
        click.echo(f"  depends on: {dep.name}{dep.spec or ''}")


@cli.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@json_option
def validate(path: Path, as_json: bool) -> None:
    """Validate a manifest file, or an adapter directory (manifest + every listed file's size and sha256)."""
    from ..validate import validate_path

    report = validate_path(path)
    if as_json:
        echo_json({"path": str(path), "ok": report.ok, "problems": report.problems, "checked_files": report.checked_files})
    else:
        for problem in report.problems:
            click.echo(f"{problem}", err=True)
        if report.ok:
            click.echo(f"ok: {path} ({report.checked_files} file(s) checked)")
    if not report.ok:
        raise click.exceptions.Exit(1)


@cli.group("index")
def index_group() -> None:
    """Create, check and change a registry index directory."""


@index_group.command("init")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--name", required=True, help="Index name (lower case).")
@click.option("--description", default="")
def index_init(directory: Path, name: str, description: str) -> None:
    """Create an empty index at DIRECTORY."""
    from ..registry import init_index

    init_index(directory, name, description)
    click.echo(f"created index {name!r} at {directory}")


@index_group.command("check")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--mirror", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Also check that entries with a bundled source have their blobs in this mirror.")
@json_option
def index_check(directory: Path, mirror: Path | None, as_json: bool) -> None:
    """Validate every file of an index directory."""
    from ..registry import check_index

    if mirror is None and (directory / "mirror").is_dir():
        mirror = directory / "mirror"
    report = check_index(directory, mirror=mirror)
    if as_json:
        echo_json({"index": report.root, "ok": report.ok, "names": report.names, "versions": report.versions,
                   "yanked": report.yanked, "problems": report.problems})
    else:
        for problem in report.problems:
            click.echo(problem, err=True)
        status = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        click.echo(f"{status}: {report.names} name(s), {report.versions} version(s), {report.yanked} yanked")
    if not report.ok:
        raise click.exceptions.Exit(1)


@index_group.command("add")
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(exists=True, path_type=Path))
@click.option("--index", "index_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
def index_add(manifest_path: Path, index_dir: Path) -> None:
    """Add a release (a manifest file or adapter directory) to an index directory."""
    from ..manifest import load_manifest
    from ..registry import add_release

    manifest = load_manifest(manifest_path)
    add_release(index_dir, manifest)
    click.echo(f"added {manifest.name} {manifest.version} to {index_dir}")


@index_group.command("yank")
@click.argument("name", callback=name_argument("index yank"))
@click.argument("version")
@click.option("--index", "index_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--reason", default=None, help="Why (shown to users who pin it); required to yank.")
@click.option("--undo", is_flag=True, help="Unyank instead (takes no --reason).")
def index_yank(name: str, version: str, index_dir: Path, reason: str | None, undo: bool) -> None:
    """Yank (or --undo) one version; it stays downloadable for exact pins."""
    from ..registry import set_yanked

    if undo and reason is not None:
        raise click.UsageError("--undo takes no --reason (unyanking clears the recorded reason)")
    if not undo and not (reason or "").strip():
        raise click.UsageError("yanking needs --reason TEXT: users who pin this version are shown why")

    set_yanked(index_dir, name, version, False if undo else reason)
    click.echo(f"{'unyanked' if undo else 'yanked'} {name} {version}")


@index_group.command("reindex")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def index_reindex(directory: Path) -> None:
    """Rebuild the search summary of an index directory."""
    from ..registry import rebuild_search

    click.echo(f"indexed {rebuild_search(directory)} name(s)")


@index_group.command("import-adapterhub")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Index directory to create or extend.")
@json_option
def index_import_adapterhub(source: Path, out: Path, as_json: bool) -> None:
    """Convert the archived AdapterHub index (its adapters/ YAML tree) into manifests and index entries.

    A progress bar counts the files on a terminal (stderr); none with --json or when stderr is piped.
    """
    from ..interop.adapterhub_index import import_adapterhub_index
    from ..progress import Progress

    with Progress(False if as_json else None, 0, "importing", unit="file") as bar:
        report = import_adapterhub_index(source, out, on_file=bar.report)
    if as_json:
        echo_json(report.to_json())
    else:
        click.echo(f"imported {report.entries} entries ({report.versions} versions) into {out}")
        for note in report.notes:
            click.echo(f"  note: {note}")
    if report.failures:
        for failure in report.failures:
            click.echo(f"failed: {failure}", err=True)
        raise click.exceptions.Exit(1)
