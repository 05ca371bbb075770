"""Store commands: ``pull``, ``verify`` and the ``cache`` group (ls, rm, gc).

Thin: parse, call :mod:`adapterhub.store`, print. ``pull`` of something already cached must stay
fast, so the store is imported inside the commands and nothing here imports requests or torch.
"""

from __future__ import annotations

import click

from .app import cli, echo_json, index_option, json_option, print_table


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


@cli.command()
@click.argument("requirement")
@index_option
@click.option("--offline", is_flag=True, default=False,
              help="Use the cache only (also ADAPTERHUB_OFFLINE=1 or HF_HUB_OFFLINE=1).")
@click.option("--no-deps", is_flag=True, help="Do not pull the adapter's dependencies.")
@click.option("--endpoint", default=None, metavar="URL", help="Hub endpoint for hf sources (default: HF_ENDPOINT).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars; print only the adapter directory.")
@json_option
def pull(requirement: str, index_location: str | None, offline: bool, no_deps: bool, endpoint: str | None,
         quiet: bool, as_json: bool) -> None:
    """Download, verify and cache an adapter (NAME, NAME==1.0, NAME>=1,<2); print where it is."""
    from ..store import pull as run_pull

    result = run_pull(requirement, index=index_location, offline=True if offline else None,
                      endpoint=endpoint, progress=False if (quiet or as_json) else None,
                      dependencies=not no_deps)
    if as_json:
        echo_json(result.to_json())
    elif quiet:
        click.echo(str(result.path))
    else:
        for dep in result.dependencies:
            click.echo(f"{dep.name} {dep.version}  {dep.path}  (dependency)")
        click.echo(f"{result.name} {result.version}  {result.path}  ({_how(result)})")


def _how(result) -> str:
    """What this pull did and checked, truthfully: "verified" only when every file was hashed now."""
    if result.downloaded:
        return f"downloaded {_size(result.downloaded)}, verified"
    if result.fully_hashed:
        return "cached, verified"
    trusted = len(result.files) - result.hashed
    return (f"cached; {result.hashed} of {len(result.files)} file(s) re-hashed, {trusted} unchanged since "
            "verified (`adapterhub verify` re-hashes all)")


@cli.command()
@click.argument("name", required=False)
@json_option
def verify(name: str | None, as_json: bool) -> None:
    """Re-hash cached files (of NAME, or everything); evict what does not match."""
    from ..errors import IntegrityError
    from ..store import verify as run_verify

    report = run_verify(name)
    if as_json:
        echo_json(report.to_json())
    else:
        for problem in report.problems:
            click.echo(f"problem: {problem}", err=True)
        click.echo(f"checked {report.checked_files} file(s), {_size(report.checked_bytes)} in "
                   f"{report.views} view(s): {'ok' if report.ok else f'{len(report.problems)} problem(s)'}")
    if not report.ok:
        raise IntegrityError(f"{len(report.problems)} cache problem(s); corrupted entries were evicted",
                             hint="run `adapterhub pull` again to fetch them")


@cli.group("cache")
def cache_group() -> None:
    """Inspect and clean the local cache (ADAPTERHUB_CACHE)."""


@cache_group.command("ls")
@click.argument("name", required=False)
@json_option
def cache_ls(name: str | None, as_json: bool) -> None:
    """List cached adapters."""
    from .. import settings
    from ..store import blob_usage, list_cached

    items = list_cached(name)
    count, total = blob_usage()
    if as_json:
        echo_json({"cache": str(settings.cache_dir()), "adapters": [i.to_json() for i in items],
                   "blobs": count, "blob_bytes": total})
        return
    print_table([{"name": i.name, "version": i.version, "files": i.files, "size": _size(i.size),
                  "status": "ok" if i.intact else "incomplete", "path": str(i.path)} for i in items],
                ["name", "version", "files", "size", "status", "path"])
    click.echo(f"{count} blob(s), {_size(total)} in {settings.cache_dir()}")


@cache_group.command("rm")
@click.argument("requirement")
@click.option("--no-gc", is_flag=True, help="Keep the blobs (only remove the views).")
@json_option
def cache_rm(requirement: str, no_gc: bool, as_json: bool) -> None:
    """Remove cached versions matching NAME[SPEC], then collect their unreferenced blobs."""
    from ..store import gc, remove_cached

    removed = remove_cached(requirement)
    report = None if no_gc else gc()
    if as_json:
        echo_json({"removed": [r.to_json() for r in removed], "gc": report.to_json() if report else None})
        return
    for r in removed:
        click.echo(f"removed {r.name} {r.version}")
    if not removed:
        click.echo(f"nothing cached matches {requirement}")
    if report is not None:
        click.echo(f"freed {_size(report.freed_bytes)} ({len(report.removed_blobs)} blob(s))")


@cache_group.command("gc")
@click.option("--max-age", type=float, default=None, metavar="SECONDS",
              help="Treat temp files untouched this long as abandoned even if their process looks alive "
                   "(default 6 h).")
@json_option
def cache_gc(max_age: float | None, as_json: bool) -> None:
    """Remove unreferenced blobs and abandoned temp files (safe while other pulls run)."""
    from ..store import gc

    report = gc() if max_age is None else gc(max_age=max_age)
    if as_json:
        echo_json(report.to_json())
        return
    click.echo(f"removed {len(report.removed_blobs)} blob(s) ({_size(report.freed_bytes)}) and "
               f"{len(report.removed_temp)} temp file(s); kept {report.kept_blobs} blob(s)")


__all__ = ["pull", "verify", "cache_group"]
