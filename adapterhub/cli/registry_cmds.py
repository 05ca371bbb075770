"""Registry and manifest commands: search, info, validate, and the ``index`` group."""

from __future__ import annotations

from pathlib import Path

import click

from ..digits import plain_int
from .app import cli, echo_json, index_option, json_option, print_table
from .args import name_argument, names_argument


@cli.command()
@click.argument("query", nargs=-1)
@click.option("--task", help="Filter by task name, task type or dataset (e.g. sst2, text-classification).")
@click.option("--method", help="Filter by method or variant (e.g. lora, houlsby).")
@click.option("--base", "base_model", metavar="ID",
              help="Adapters for this base model id, then those for a compatible base (same model type, hidden "
                   "size and layers).")
@click.option("--limit", default=50, show_default=True, help="Maximum number of results (0 = all).")
@index_option
@json_option
def search(query: tuple[str, ...], task: str | None, method: str | None, base_model: str | None, limit: int,
           index_location: str | None, as_json: bool) -> None:
    """Search the index by free text, task, method and base model.

    With --json: a JSON array of summary rows, best first (docs/registry.md#search lists the keys).
    """
    from ..registry import SearchQuery, open_index
    from ..registry import search as run_search

    index = open_index(index_location)
    rows = run_search(index, SearchQuery(" ".join(query), task, method, base_model), limit or None)
    if as_json:
        echo_json(rows)
        return
    columns = ["name", "version", "method", "task", "base_model"] + (["base_match"] if base_model else []) + ["description"]
    print_table([{**r, "method": r.get("variant") or r.get("method")} for r in rows], columns)
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
    """Show a release: manifest summary, versions, files, base model (NAME, NAME==1.0, NAME>=1,<2, NAME@1.0,
    or hf:ORG/REPO[@REV][:SUBFOLDER]: the manifest derived when it was pulled, pulling it first if needed)."""
    from ..manifest import manifest_to_dict
    from ..names import is_hub_reference

    if is_hub_reference(requirement):
        _hub_info(requirement, as_json)
        return
    from ..registry import open_index, resolve

    index = open_index(index_location)
    resolved = resolve(index, requirement, base_model=base_model)
    m = resolved.manifest
    versions = [{"version": e.version, "yanked": e.yanked} for e in index.entries(m.name)]
    if as_json:
        echo_json({"manifest": manifest_to_dict(m), "manifest_sha256": resolved.entry.manifest_sha256,
                   "versions": versions, "index": index.location})
        return
    _print_manifest(m, versions)


def _hub_info(requirement: str, as_json: bool) -> None:
    """``info hf:...``: the derived manifest the cache recorded, else the one a (verified) pull derives."""
    from ..manifest import manifest_digest, manifest_to_dict
    from ..names import parse_hub_reference
    from ..store import pull
    from ..store.hub_records import cached_hub_manifest

    ref = parse_hub_reference(requirement)
    m = cached_hub_manifest(ref) or pull(requirement, dependencies=False).manifest
    if as_json:
        echo_json({"manifest": manifest_to_dict(m), "manifest_sha256": manifest_digest(m), "reference": str(ref),
                   "versions": [{"version": m.version, "yanked": False}], "index": None})
        return
    _print_manifest(m, [{"version": m.version, "yanked": False}])


def _print_manifest(m, versions: list[dict]) -> None:
    b = m.base_model
    click.echo(f"{m.name} {m.version}  ({m.license})")
    click.echo(f"  {' '.join(m.description.split())}")
    click.echo(f"  task:       {m.task.type} / {m.task.name}" + (f" ({m.task.dataset})" if m.task.dataset else ""))
    variant = getattr(m.adapter.config, "variant", None)
    click.echo(f"  method:     {m.adapter.method}" + (f" ({variant})" if variant else ""))
    click.echo(f"  base model: {b.id}" + (f" @ {b.revision}" if b.revision else "")
               + f"  [{b.model_type}, hidden {b.hidden_size}, {b.layers_text}]")
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
        pinned = f" (manifest sha256:{dep.manifest_sha256[:16]}…)" if dep.manifest_sha256 else ""
        click.echo(f"  depends on: {dep.name} = {dep.hub}{pinned}" if dep.hub else
                   f"  depends on: {dep.name}{dep.spec or ''}")


@cli.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@json_option
def validate(path: Path, as_json: bool) -> None:
    """Validate a manifest file, or an adapter directory (manifest + every listed file's size and sha256)."""
    from ..manifest.validate import validate_path

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


def keys_option(func):
    """``--keys``: the keyring that re-signs a signed index after the change."""
    return click.option(
        "--keys", "keys", type=click.Path(file_okay=False, path_type=Path), default=None, envvar="ADAPTERHUB_INDEX_KEYS",
        help="Keyring directory to re-sign the index with (required when the index is signed; signs an unsigned "
             "index for the first time).")(func)


def _resign(directory: Path, keyring) -> None:
    if keyring is not None:
        from ..registry.signing import sign_index

        report = sign_index(directory, keyring)
        click.echo(f"signed {directory}: timestamp v{report.versions['timestamp']}, "
                   f"snapshot v{report.versions['snapshot']}, targets v{report.versions['targets']}")


@index_group.command("push")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--to", "to", required=True, metavar="hf:datasets/ORG/NAME",
              help="The Hub dataset repo to hold the index (created if missing).")
@click.option("--endpoint", default=None, metavar="URL", help="Hub endpoint (default: HF_ENDPOINT or huggingface.co).")
@click.option("--token", default=None, help="Hub token (default: the one huggingface_hub finds, e.g. HF_TOKEN).")
@json_option
def index_push(directory: Path, to: str, endpoint: str | None, token: str | None, as_json: bool) -> None:
    """Upload an index directory to a Hub dataset repo: changed files only, in one commit pinned to the head.

    Refused, with nothing committed, when someone else committed to the repo meanwhile. Sign the
    directory first (`index sign`) for readers who pin its root.
    """
    from ..publish.hub_index import push_index

    result = push_index(directory, to, endpoint=endpoint, token=token)
    if as_json:
        echo_json({"location": result.location, "endpoint": result.endpoint, "parent": result.parent,
                   "commit": result.commit, "uploaded": result.uploaded, "deleted": result.deleted})
        return
    if result.commit is None:
        click.echo(f"{result.location} is up to date at {result.parent}")
        return
    click.echo(f"committed {result.commit} to {result.location} ({result.endpoint}): {len(result.uploaded)} "
               f"file(s) uploaded, {len(result.deleted)} deleted")
    click.echo(f"read it with: adapterhub search --index {result.location}")


@index_group.command("add")
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(exists=True, path_type=Path))
@click.option("--index", "index_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@keys_option
def index_add(manifest_path: Path, index_dir: Path, keys: Path | None) -> None:
    """Add a release (a manifest file or adapter directory) to an index directory."""
    from ..manifest import load_manifest
    from ..registry import add_release
    from ..registry.signing import signing_keyring

    manifest = load_manifest(manifest_path)
    keyring = signing_keyring(index_dir, keys)
    add_release(index_dir, manifest)
    click.echo(f"added {manifest.name} {manifest.version} to {index_dir}")
    _resign(index_dir, keyring)


@index_group.command("yank")
@click.argument("name", callback=name_argument("index yank"))
@click.argument("version")
@click.option("--index", "index_dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--reason", default=None, help="Why (shown to users who pin it); required to yank.")
@click.option("--undo", is_flag=True, help="Unyank instead (takes no --reason).")
@keys_option
def index_yank(name: str, version: str, index_dir: Path, reason: str | None, undo: bool, keys: Path | None) -> None:
    """Yank (or --undo) one version; it stays downloadable for exact pins."""
    from ..registry import set_yanked
    from ..registry.signing import signing_keyring

    if undo and reason is not None:
        raise click.UsageError("--undo takes no --reason (unyanking clears the recorded reason)")
    if not undo and not (reason or "").strip():
        raise click.UsageError("yanking needs --reason TEXT: users who pin this version are shown why")
    keyring = signing_keyring(index_dir, keys)
    set_yanked(index_dir, name, version, False if undo else reason)
    click.echo(f"{'unyanked' if undo else 'yanked'} {name} {version}")
    _resign(index_dir, keyring)


@index_group.command("reindex")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@keys_option
def index_reindex(directory: Path, keys: Path | None) -> None:
    """Rebuild the search summary of an index directory."""
    from ..registry import rebuild_search
    from ..registry.signing import signing_keyring

    keyring = signing_keyring(directory, keys)
    click.echo(f"indexed {rebuild_search(directory)} name(s)")
    _resign(directory, keyring)


def _role_values(values: tuple[str, ...], what: str) -> dict[str, int]:
    """``ROLE=N`` options (``all=N`` sets every role) as a dict, with a usage error for bad input."""
    from ..registry.keys import ROLES

    out: dict[str, int] = {}
    for text in values:
        role, _, number = text.partition("=")
        count = plain_int(number)
        if role not in (*ROLES, "all") or count is None or count < 1:
            raise click.BadParameter(f"{text!r}: expected ROLE={what} with ROLE one of {', '.join(ROLES)} or all, "
                                     f"and a positive integer")
        out.update(dict.fromkeys(ROLES if role == "all" else (role,), count))
    return out


@index_group.command("keygen")
@click.argument("keyring", type=click.Path(file_okay=False, path_type=Path))
@click.option("--root-keys", default=1, show_default=True, help="Number of root keys (for a root threshold above 1).")
@json_option
def index_keygen(keyring: Path, root_keys: int, as_json: bool) -> None:
    """Create a keyring: a new ed25519 key per role (root, targets, snapshot, timestamp) in KEYRING."""
    from ..registry.keys import generate_keyring, public_key_summary

    rows = public_key_summary(generate_keyring(keyring, root_keys=root_keys))
    if as_json:
        echo_json({"keyring": str(keyring), "keys": rows})
        return
    print_table(rows, ["role", "keyid"])
    click.echo(f"private keys written to {keyring} (mode 0600): keep the root keys offline, never commit them")


@index_group.command("sign")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--keys", "keys", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              envvar="ADAPTERHUB_INDEX_KEYS", help="Keyring directory (from `index keygen`).")
@click.option("--threshold", "thresholds", multiple=True, metavar="ROLE=N",
              help="Signatures a role needs (only when the index gets its first root; see `index rotate-keys`).")
@click.option("--expires", "expires", multiple=True, metavar="ROLE=DAYS",
              help="Lifetime of re-signed metadata (ROLE or all; default: config.json signing.expires_days, else "
                   "root 365, targets 90, snapshot 30, timestamp 7).")
@click.option("--bins", "bin_bits", type=click.IntRange(0, 14), default=None, metavar="BITS",
              help="Split targets into 2**BITS hash bins (default: keep; new indexes over 2048 files get bins).")
@click.option("--force", is_flag=True, help="Give every role but root a new version even if nothing changed.")
@json_option
def index_sign(directory: Path, keys: Path, thresholds: tuple[str, ...], expires: tuple[str, ...],
               bin_bits: int | None, force: bool, as_json: bool) -> None:
    """Sign an index directory (TUF metadata in DIRECTORY/metadata); re-run after every change."""
    from ..registry.keys import load_keyring
    from ..registry.signing import sign_index

    report = sign_index(directory, load_keyring(keys), expires_days=_role_values(expires, "DAYS"),
                        thresholds=_role_values(thresholds, "N"), bin_bits=bin_bits, force=force)
    if as_json:
        echo_json(report.to_json())
        return
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"signed {report.targets} file(s) of {directory}: " + ", ".join(
        f"{role} v{report.versions[role]}" for role in ("root", "targets", "snapshot", "timestamp"))
        + (f", {report.bins} hash bins" if report.bins else ""))
    click.echo(f"timestamp expires {report.expires['timestamp']}: re-sign before then")


@index_group.command("rotate-keys")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--keys", "keys", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The current keyring (its root keys sign the new root).")
@click.option("--new-keys", "new_keys", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A keyring with the new keys: every role it has keys for gets exactly those keys.")
@click.option("--threshold", "thresholds", multiple=True, metavar="ROLE=N", help="New signature thresholds.")
@json_option
def index_rotate_keys(directory: Path, keys: Path, new_keys: Path, thresholds: tuple[str, ...], as_json: bool) -> None:
    """Replace keys by a new root version signed by the old and the new root keys, then re-sign all."""
    from ..registry.keys import load_keyring
    from ..registry.signing import rotate_keys

    report = rotate_keys(directory, load_keyring(keys), load_keyring(new_keys), thresholds=_role_values(thresholds, "N"))
    if as_json:
        echo_json(report.to_json())
        return
    click.echo(f"rotated keys of {directory}: root v{report.versions['root']}; clients that trust an older root "
               "follow the signed chain")


@index_group.command("verify")
@click.argument("location", required=False, metavar="[DIR|URL|hf:datasets/ORG/NAME]")
@click.option("--root", "root_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Root metadata to trust (default: the pinned root, the package's pin for the bundled index, "
                   "else the index's own root, which checks consistency only).")
@json_option
def index_verify(location: str | None, root_file: Path | None, as_json: bool) -> None:
    """Check every file of an index (default: the bundled one) against its signed metadata."""
    from ..registry.verify import verify_index

    report = verify_index(location, root=root_file.read_bytes() if root_file else None)
    if as_json:
        echo_json(report.to_json())
    else:
        for problem in report.problems:
            click.echo(problem, err=True)
        click.echo(f"root: {report.root_source}")
        if report.versions:
            click.echo("versions: " + ", ".join(f"{k} v{v}" for k, v in report.versions.items()))
            click.echo(f"timestamp expires {report.expires.get('timestamp')}")
        click.echo(f"{'ok' if report.ok else f'{len(report.problems)} problem(s)'}: {report.targets} signed file(s)")
    if not report.ok:
        raise click.exceptions.Exit(1)


@index_group.command("trust")
@click.argument("location", required=False, metavar="DIR|URL|hf:datasets/ORG/NAME")
@click.option("--root", "root_file", default=None, metavar="FILE|bundled",
              help="Root metadata to pin, as published by the index's operator ('bundled': the root pinned in this "
                   "package). Without it, the index's current root is trusted on first use.")
@click.option("--list", "list_all", is_flag=True, help="List the pinned indexes instead.")
@click.option("--remove", is_flag=True, help="Forget LOCATION's pinned root and trusted metadata.")
@json_option
def index_trust(location: str | None, root_file: str | None, list_all: bool, remove: bool, as_json: bool) -> None:
    """Pin an index's root: from then on every read of it is checked against its signed metadata."""
    from ..registry.trust import list_trusted, pin_root, unpin

    if list_all:
        rows = [e.to_json() for e in list_trusted()]
        echo_json(rows) if as_json else print_table(rows, ["location", "root_sha256"])
        return
    if location is None:
        raise click.UsageError("give the index LOCATION (or --list)")
    if remove:
        removed = unpin(location)
        click.echo(f"{'forgot' if removed else 'nothing pinned for'} {location}")
        return
    root = _root_to_pin(location, root_file)
    entry = pin_root(location, root)
    try:
        from ..registry import open_index

        state = open_index(location).trusted_state()
    except Exception:
        unpin(location)
        raise
    if as_json:
        echo_json({**entry.to_json(), "metadata": state.to_json() if state else None})
        return
    assert state is not None  # a pinned index is always read through its signed metadata
    click.echo(f"pinned root of {entry.location} (sha256 {entry.to_json()['root_sha256'][:16]}…); verified "
               f"timestamp v{state.timestamp}, snapshot v{state.snapshot}, targets v{state.targets}")


def _root_to_pin(location: str, root_file: str | None) -> bytes:
    """The root bytes to pin: a file, the package's bundled pin, or (trust on first use) the index's own."""
    from ..registry.index import index_backend
    from ..registry.layout import METADATA_DIR
    from ..registry.trust import MAX_ROOT_BYTES, bundled_root

    if root_file == "bundled":
        return bundled_root()
    if root_file is not None:
        path = Path(root_file)
        if not path.is_file():
            raise click.BadParameter(f"{root_file}: no such file", param_hint="--root")
        return path.read_bytes()
    data = index_backend(location).read(f"{METADATA_DIR}/root.json", max_bytes=MAX_ROOT_BYTES)
    if data is None:
        from ..errors import IndexTrustError

        raise IndexTrustError(f"{location}: serves no {METADATA_DIR}/root.json; it is not a signed index")
    click.echo(f"warning: trusting the root {location} serves now (trust on first use); compare its key ids with "
               "the ones the operator publishes, or pass --root FILE", err=True)
    return data


@cli.command()
@click.argument("requirements", nargs=-1, required=True, callback=names_argument("lock", "NAME"))
@click.option("--base", "base_model", help="Only versions for this base model id.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the lock to this file (default: standard output).")
@index_option
def lock(requirements: tuple[str, ...], base_model: str | None, output: Path | None, index_location: str | None) -> None:
    """Resolve NAME... with dependencies and print a lockfile (versions, manifest and file hashes); an
    hf:ORG/REPO[@REV][:SUBFOLDER] requirement, and every Hub adapter a resolved composition depends on, is
    pulled (verified) and locked at its commit."""
    from ..names import is_hub_reference
    from ..registry import open_index, resolve_closure
    from ..registry.lockfile import build_lock, hub_locked

    index = open_index(index_location)
    hub, hub_deps = [], []
    for req in (r for r in requirements if is_hub_reference(r)):
        from ..store import pull
        from ..store.locked import dependency_locks
        from ..store.registry_deps import IndexForPull

        pulled = pull(req, index=index)  # a composition's registry dependencies resolve in this index
        hub.append((req, hub_locked(pulled.manifest, pulled.reference or req)))
        hub_deps += dependency_locks(pulled.dependencies, IndexForPull(index, False), (pulled.name,))
    names = [r for r in requirements if not is_hub_reference(r)]
    closure = resolve_closure(index, list(names), base_model=base_model) if names else []
    if any(d.hub for r in closure for d in r.manifest.dependencies or ()):
        from ..store.locked import hub_dependency_locks

        hub_deps += hub_dependency_locks(closure, index=index)
    text = build_lock(index, names, base_model=base_model, hub=hub, hub_dependencies=hub_deps).dumps()
    if output is None:
        click.echo(text, nl=False)
        return
    from ..fileio import atomic_write_text

    atomic_write_text(output, text)
    click.echo(f"wrote {output}")


@index_group.command("import-adapterhub")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(path_type=Path), help="Index directory to create or extend.")
@keys_option
@json_option
def index_import_adapterhub(source: Path, out: Path, keys: Path | None, as_json: bool) -> None:
    """Convert the archived AdapterHub index (its adapters/ YAML tree) into manifests and index entries.

    Versions that could never be pulled (a web page instead of a file, no sha256 pin, an architecture
    the runtime cannot represent, a name another adapter holds) are refused and counted by reason.
    A progress bar counts the files on a terminal (stderr); none with --json or when stderr is piped.
    """
    from ..progress import Progress
    from ..registry.archived import import_adapterhub_index
    from ..registry.signing import signing_keyring

    existed = (out / "config.json").exists()
    keyring = signing_keyring(out, keys) if existed else None  # a signed index is not changed without keys
    with Progress(False if as_json else None, 0, "importing", unit="file") as bar:
        report = import_adapterhub_index(source, out, on_file=bar.report)
    if not existed:
        keyring = signing_keyring(out, keys)
    if as_json:
        if keyring is not None:
            from ..registry.signing import sign_index

            sign_index(out, keyring)
        echo_json(report.to_json())
    else:
        click.echo(f"imported {report.entries} entries ({report.versions} versions) into {out}")
        by_reason = report.refused_by_reason()
        if by_reason:
            click.echo(f"refused {len(report.refused)} version(s): "
                       + ", ".join(f"{reason} {count}" for reason, count in by_reason.items()))
        for refusal in report.refused:
            click.echo(f"  refused: {refusal}")
        for note in report.notes:
            click.echo(f"  note: {note}")
        _resign(out, keyring)
    if report.failures:
        for failure in report.failures:
            click.echo(f"failed: {failure}", err=True)
        raise click.exceptions.Exit(1)
