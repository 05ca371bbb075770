"""Store commands: ``pull``, ``verify``, ``verify-signature`` and the ``cache`` group (ls, rm, gc).

Thin: parse, call :mod:`adapterhub.store`, print. ``pull`` of something already cached must stay
fast, so the store is imported inside the commands and nothing here imports requests or torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from .app import cli, echo_json, index_option, json_option, print_table
from .args import name_argument
from .pull_report import how_pulled, human_size, pull_lines


def _not_cached(requirement: str) -> str:
    """What to say about a name nothing in the cache has, with close cached names if any."""
    from ..names import parse_requirement
    from ..registry.suggest import close_names
    from ..store import list_cached

    name = parse_requirement(requirement).name
    near = close_names(name, {c.name for c in list_cached()})
    hint = f"did you mean {', '.join(near)}?" if near else "`adapterhub cache ls` lists what is cached"
    return f"nothing cached matches {requirement} ({hint})"

if TYPE_CHECKING:
    from ..manifest import Manifest
    from ..serve_run import BaseReport
    from ..store.trust import Trust


def _cached_name(name: str | None) -> str | None:
    """The adapter name a ``verify``/``cache ls`` argument means: itself, or for ``hf:ORG/REPO[@REV][:DIR]``
    the name of the manifest derived when it was pulled."""
    from ..names import is_hub_reference, parse_hub_reference

    if name is None or not is_hub_reference(name):
        return name
    from ..errors import NotFoundError
    from ..store.hub_records import cached_hub_manifest

    found = cached_hub_manifest(parse_hub_reference(name))
    if found is None:
        raise NotFoundError(f"nothing cached for {name}", hint=f"`adapterhub pull {name}` fetches and verifies it")
    return found.name


def trust_options(func):
    """``--trust-key`` / ``--trust-cert-chain``: whose OMS adapter signatures are accepted (and required)."""
    pem = click.Path(exists=True, dir_okay=False, path_type=Path)
    func = click.option("--trust-cert-chain", "trust_cert_chains", multiple=True, type=pem,
                        envvar="ADAPTERHUB_TRUST_CERT_CHAINS",
                        help="Require an OMS signature by a certificate issued under this CA chain (PEM; "
                        "repeatable; env ADAPTERHUB_TRUST_CERT_CHAINS, os.pathsep-separated).")(func)
    return click.option("--trust-key", "trust_keys", multiple=True, type=pem, envvar="ADAPTERHUB_TRUST_KEYS",
                        help="Require an OMS signature (model.sig) by this ECDSA public key (PEM; repeatable: "
                        "any one suffices; env ADAPTERHUB_TRUST_KEYS, os.pathsep-separated).")(func)


@cli.command()
@click.argument("requirement", required=False, callback=name_argument("pull", "REQUIREMENT"))
@index_option
@click.option("--offline", is_flag=True, default=False,
              help="Use the cache only (also ADAPTERHUB_OFFLINE=1 or HF_HUB_OFFLINE=1).")
@click.option("--no-deps", is_flag=True, help="Do not pull the adapter's dependencies.")
@click.option("--endpoint", default=None, metavar="URL", help="Hub endpoint for hf sources (default: HF_ENDPOINT).")
@click.option("--token", default=None, help="Hub token for private repos (default: the one huggingface_hub finds, "
              "e.g. HF_TOKEN or `hf auth login`).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars; print only the adapter directory.")
@trust_options
@click.option("--trust-index-signers", is_flag=True, envvar="ADAPTERHUB_TRUST_INDEX_SIGNERS",
              help="Also trust the adapter_signers the index config names (only as trustworthy as whoever "
              "serves the index).")
@click.option("-r", "--requirements", "lock_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Pull exactly the adapters of this lockfile (`adapterhub lock`); REQUIREMENT, if given, picks one "
                   "locked name.")
@click.option("--require-hashes", is_flag=True,
              help="With -r: every adapter must carry locked hashes and every dependency must be locked.")
@click.option("--with-base", is_flag=True,
              help="Also make sure the adapter's base model is on this machine: found locally, or fetched from the "
                   "Hub at the manifest's revision, checked, and its fingerprint compared; print where it is.")
@json_option
def pull(requirement: str | None, with_base: bool, index_location: str | None, offline: bool, no_deps: bool,
         endpoint: str | None,
         token: str | None, quiet: bool, trust_keys: tuple[Path, ...], trust_cert_chains: tuple[Path, ...],
         trust_index_signers: bool, lock_file: Path | None, require_hashes: bool, as_json: bool) -> None:
    """Download, verify and cache an adapter (NAME, NAME==1.0, NAME>=1,<2, or hf:ORG/REPO[@REV][:SUBFOLDER] for a
    Hub repo, verified by the Hub's own hashes); print where it is."""
    from ..store.trust import Trust

    trust = Trust.from_files(trust_keys, trust_cert_chains, index_signers=trust_index_signers)
    if lock_file is not None and with_base:
        raise click.UsageError("--with-base works on one REQUIREMENT, not with -r LOCKFILE")
    if lock_file is not None:
        _pull_locked(lock_file, requirement, require_hashes, index_location, offline, endpoint, token, quiet, as_json,
                     trust)
        return
    if require_hashes:
        raise click.UsageError("--require-hashes needs -r LOCKFILE: only locally pinned hashes count")
    if requirement is None:
        raise click.UsageError("give a REQUIREMENT or -r LOCKFILE")
    from ..store import pull as run_pull

    result = run_pull(requirement, index=index_location, offline=True if offline else None,
                      endpoint=endpoint, token=token, progress=False if (quiet or as_json) else None,
                      dependencies=not no_deps, trust=trust)
    base = _pull_base(result.manifest, offline, endpoint, token, quiet or as_json) if with_base else None
    if as_json:
        echo_json({**result.to_json(), **({"base": base.to_json()} if base else {})})
    elif quiet:
        click.echo(str(result.path))
        if base is not None:
            click.echo(str(base.location.path))
    else:
        for line in pull_lines(result, signed=bool(trust.signers or trust.index_signers)):
            click.echo(line)
        if base is not None:
            click.echo(f"base {result.manifest.base_model.id}  {base.location.path}  ({_base_how(base)})")


def _pull_base(manifest: Manifest, offline: bool, endpoint: str | None, token: str | None, quiet: bool) -> BaseReport:
    """The base of a pulled adapter (``--with-base``); a revision-less manifest's warning goes to stderr."""
    import warnings

    from ..serve_run import pull_base
    from ..store.base_fetch import UnpinnedBaseWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnpinnedBaseWarning)  # said below, as a one-line warning
        base = pull_base(manifest, offline=True if offline else None, endpoint=endpoint, token=token,
                         progress=False if quiet else None)
    if base.fetched is not None and base.fetched.unpinned_warning:
        click.echo(f"warning: {base.fetched.unpinned_warning}", err=True)
    return base


def _base_how(base: BaseReport) -> str:
    """What ``--with-base`` did and checked, truthfully (as :func:`.pull_report.how_pulled` for the adapter)."""
    if base.fetched is None:
        return f"found via {base.location.how}; `adapterhub run` checks its fingerprint when it loads it"
    size = f"downloaded {human_size(base.fetched.downloaded)}" if base.fetched.downloaded else "cached"
    checked = "fingerprint checked" if base.fingerprint_checked else "no fingerprint in the manifest to check"
    return f"{size} at {base.fetched.commit[:12]}, verified, {checked}"


def _pull_locked(lock_file: Path, only: str | None, require_hashes: bool, index_location: str | None, offline: bool,
                 endpoint: str | None, token: str | None, quiet: bool, as_json: bool, trust: Trust) -> None:
    from ..store import pull_locked

    pulled = pull_locked(lock_file, index=index_location, require_hashes=require_hashes, only=[only] if only else (),
                         offline=True if offline else None, endpoint=endpoint, token=token,
                         progress=False if (quiet or as_json) else None, trust=trust)
    if as_json:
        echo_json([p.to_json() for p in pulled])
        return
    for p in pulled:
        if quiet:
            click.echo(str(p.path))
        else:
            click.echo(f"{p.name} {p.version}  {p.path}  ({how_pulled(p)} against {lock_file})")


@cli.command()
@click.argument("name", required=False, callback=name_argument("verify"))
@json_option
def verify(name: str | None, as_json: bool) -> None:
    """Re-hash cached files (of NAME, or everything); evict what does not match."""
    from ..errors import IntegrityError
    from ..store import verify as run_verify

    name = _cached_name(name)
    report = run_verify(name)
    if name is not None and report.views == 0:
        from ..errors import NotFoundError

        raise NotFoundError(_not_cached(name))
    if as_json:
        echo_json(report.to_json())
    else:
        for problem in report.problems:
            click.echo(f"problem: {problem}", err=True)
        click.echo(f"checked {report.checked_files} file(s), {human_size(report.checked_bytes)} in "
                   f"{report.views} view(s): {'ok' if report.ok else f'{len(report.problems)} problem(s)'}")
    if not report.ok:
        raise IntegrityError(f"{len(report.problems)} cache problem(s); corrupted entries were evicted",
                             hint="run `adapterhub pull` again to fetch them")


@cli.command("verify-signature")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@trust_options
@json_option
def verify_signature(directory: Path, trust_keys: tuple[Path, ...], trust_cert_chains: tuple[Path, ...],
                     as_json: bool) -> None:
    """Check the OMS signature (model.sig) of an adapter directory: packaged, or pulled into the cache."""
    from ..manifest import load_manifest
    from ..store.signatures import verify_directory
    from ..store.trust import signers_from_files

    signers = signers_from_files(trust_keys, trust_cert_chains)
    if not signers:
        raise click.UsageError("pass --trust-key PUB.pem or --trust-cert-chain CA.pem: whose signature to accept")
    manifest = load_manifest(directory)
    signer = verify_directory(directory, manifest, signers)
    if as_json:
        echo_json({"directory": str(directory), "name": manifest.name, "version": manifest.version, "ok": True,
                   "signer": signer.label})
        return
    click.echo(f"ok: {manifest.name} {manifest.version} in {directory} is signed by {signer.label} "
               f"({len(manifest.files)} file(s) + adapterhub.json, all match)")


@cli.group("cache")
def cache_group() -> None:
    """Inspect and clean the local cache (ADAPTERHUB_CACHE)."""


@cache_group.command("ls")
@click.argument("name", required=False, callback=name_argument("cache ls"))
@json_option
def cache_ls(name: str | None, as_json: bool) -> None:
    """List cached adapters."""
    from .. import settings
    from ..store import blob_usage, list_cached

    name = _cached_name(name)
    items = list_cached(name)
    if name is not None and not items and not as_json:
        click.echo(_not_cached(name))
        return
    count, total = blob_usage()
    if as_json:
        echo_json({"cache": str(settings.cache_dir()), "adapters": [i.to_json() for i in items],
                   "blobs": count, "blob_bytes": total})
        return
    print_table([{"name": i.name, "version": i.version, "files": i.files, "size": human_size(i.size),
                  "status": "ok" if i.intact else "incomplete", "path": str(i.path)} for i in items],
                ["name", "version", "files", "size", "status", "path"])
    click.echo(f"{count} blob(s), {human_size(total)} in {settings.cache_dir()}")


@cache_group.command("rm")
@click.argument("requirement", callback=name_argument("cache rm", "REQUIREMENT"))
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
        click.echo(_not_cached(requirement))
    if report is not None:
        click.echo(f"freed {human_size(report.freed_bytes)} ({len(report.removed_blobs)} blob(s))")


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
    click.echo(f"removed {len(report.removed_blobs)} blob(s) ({human_size(report.freed_bytes)}) and "
               f"{len(report.removed_temp)} temp file(s); kept {report.kept_blobs} blob(s)")


__all__ = ["pull", "verify", "verify_signature", "cache_group"]
