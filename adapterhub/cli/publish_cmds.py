"""Publishing commands: ``init`` (scaffold a manifest), ``package`` (card, hashes), ``sign`` (OMS signature),
``publish`` (Hub or directory).

Thin: parse, call :mod:`adapterhub.publish`, print. torch is imported only when ``init`` has to read a
foreign format or a base model; ``model_signing`` only when signing.
"""

from __future__ import annotations

import re
from pathlib import Path

import click

from .app import cli, echo_json, json_option

TASK_TYPES = ("text-classification", "token-classification", "question-answering", "multiple-choice", "regression",
              "summarization", "translation", "language-modeling", "text-generation", "feature-extraction", "other")
METRIC_RE = re.compile(r"^(?P<dataset>[^:]+):(?P<split>[^:]+):(?P<name>[^=]+)=(?P<value>.+)$")


def _metric(text: str) -> dict:
    match = METRIC_RE.match(text)
    if not match:
        raise click.BadParameter(f"{text!r}: expected DATASET:SPLIT:NAME=VALUE, e.g. glue/sst2:validation:accuracy=0.91")
    try:
        value = float(match["value"])
    except ValueError:
        raise click.BadParameter(f"{text!r}: {match['value']!r} is not a number") from None
    return {"dataset": match["dataset"], "split": match["split"], "name": match["name"], "value": value}


def _prompt(question: str, default: str, check) -> str:
    """Ask until ``check`` accepts the answer: a bad answer is reported and asked again, alone."""
    def value_proc(text: str) -> str:
        problem = check(text)
        if problem:
            raise click.BadParameter(problem)
        return text

    return click.prompt(question, default=default, show_default=bool(default), value_proc=value_proc)


@cli.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where a converted adapters-library/PEFT directory goes (default: DIR-adapterhub).")
@click.option("--base", "base", type=click.Path(exists=True, path_type=Path), default=None,
              help="Local base model directory (fills facts and fingerprint), or only its config.json.")
@click.option("--name", default=None, help="Registry name ([a-z0-9-], 2-64 characters).")
@click.option("--version", "version", default=None, help="PEP 440 version (default 0.1.0).")
@click.option("--license", "license_", default=None, help="SPDX license id (default NOASSERTION).")
@click.option("--description", default=None, help="One-paragraph description.")
@click.option("--author", "authors", multiple=True, help="An author (repeatable).")
@click.option("--task-type", type=click.Choice(TASK_TYPES), default=None, help="Task type.")
@click.option("--task-name", default=None, help="Task name, e.g. sst2.")
@click.option("--dataset", default=None, help="Dataset id, e.g. glue/sst2.")
@click.option("--language", default=None, help="BCP 47 language code, e.g. en.")
@click.option("--base-id", default=None, help="Hub id of the base model.")
@click.option("--base-revision", default=None, help="40-hex commit of the base model.")
@click.option("--metric", "metrics", multiple=True, metavar="DATASET:SPLIT:NAME=VALUE",
              help="An evaluation result (repeatable), e.g. glue/sst2:validation:accuracy=0.91.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask: take defaults for everything not passed.")
@json_option
def init(directory: Path, out: Path | None, base: Path | None, name: str | None, version: str | None,
         license_: str | None, description: str | None, authors: tuple[str, ...], task_type: str | None,
         task_name: str | None, dataset: str | None, language: str | None, base_id: str | None,
         base_revision: str | None, metrics: tuple[str, ...], yes: bool, as_json: bool) -> None:
    """Scaffold adapterhub.json for a saved adapter (adapterhub, adapters-library or PEFT directory)."""
    from ..manifest import manifest_to_dict
    from ..publish import InitOptions, init_adapter

    options = InitOptions(name=name, version=version, license=license_, description=description,
                          authors=authors or None, task_type=task_type, task_name=task_name, dataset=dataset,
                          language=language, base_id=base_id, base_revision=base_revision,
                          metrics=tuple(_metric(m) for m in metrics))
    result = init_adapter(directory, out=out, base=base, options=options, ask=None if (yes or as_json) else _prompt)
    if as_json:
        echo_json({"directory": str(result.directory), "converted_from": result.converted_from, "notes": result.notes,
                   "manifest": manifest_to_dict(result.manifest)})
        return
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    m = result.manifest
    how = f" (converted from {result.converted_from})" if result.converted_from else ""
    click.echo(f"wrote {result.directory / 'adapterhub.json'}{how}: {m.name} {m.version}, {len(m.files)} file(s)")
    click.echo(f"next: adapterhub package {result.directory}")


def signing_key_options(func):
    """``--key``, ``--cert``, ``--cert-chain``: the OMS key or certificate method (both offline)."""
    func = click.option("--cert-chain", "cert_chain", multiple=True,
                        type=click.Path(exists=True, dir_okay=False, path_type=Path),
                        help="CA certificates above --cert (PEM; repeatable).")(func)
    func = click.option("--cert", "cert", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                        default=None, help="Signing certificate of --key (PEM): the OMS certificate method.")(func)
    return click.option("--key", "key", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
                        help="ECDSA private key (PEM) to sign with; an encrypted key reads its password from "
                        "ADAPTERHUB_SIGNING_KEY_PASSWORD.")(func)


def _signing_key(key: Path | None, cert: Path | None, cert_chain: tuple[Path, ...]):
    import os

    from ..publish.sign import PASSWORD_ENV, SigningKey

    if key is None:
        raise click.UsageError("signing needs --key KEY.pem (an ECDSA private key in PEM)")
    if cert_chain and cert is None:
        raise click.UsageError("--cert-chain goes with --cert")
    return SigningKey(key, cert, tuple(cert_chain), os.environ.get(PASSWORD_ENV) or None)


def _signed_line(signed) -> str:
    return f"signed {len(signed.signed_files)} file(s) into {signed.signature}"


@cli.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--index-url", default=None, metavar="DIR|URL",
              help="Registry to name in the model card's usage example.")
@click.option("--no-card", is_flag=True, help="Do not write README.md.")
@click.option("--sign", "sign", is_flag=True, help="Also write model.sig, an OMS signature (needs --key).")
@signing_key_options
@json_option
def package(directory: Path, index_url: str | None, no_card: bool, sign: bool, key: Path | None, cert: Path | None,
            cert_chain: tuple[Path, ...], as_json: bool) -> None:
    """Validate, convert pickle weights to safetensors, hash, and write the model card (README.md)."""
    from ..manifest import manifest_to_dict
    from ..publish import package_adapter

    if not sign and (key or cert or cert_chain):
        raise click.UsageError("--key/--cert/--cert-chain go with --sign")
    signing = _signing_key(key, cert, cert_chain) if sign else None
    result = package_adapter(directory, index_hint=index_url, card=not no_card, sign=signing)
    if as_json:
        echo_json({"directory": str(result.directory), "converted": result.converted,
                   "manifest": manifest_to_dict(result.manifest),
                   "signature": str(result.signed.signature) if result.signed else None,
                   "dropped_signature": result.dropped_signature})
        return
    for old, new in result.converted.items():
        click.echo(f"converted {old} -> {new}")
    if result.dropped_signature:
        click.echo("removed model.sig: it no longer covered the packaged files (sign again with --sign)", err=True)
    m = result.manifest
    click.echo(f"packaged {m.name} {m.version}: {len(m.files)} file(s), {m.total_size:,} bytes, all hashed")
    if result.signed:
        click.echo(_signed_line(result.signed))


@cli.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@signing_key_options
@json_option
def sign(directory: Path, key: Path | None, cert: Path | None, cert_chain: tuple[Path, ...], as_json: bool) -> None:
    """Sign a packaged adapter: write model.sig, an OpenSSF Model Signing (OMS) signature of its files."""
    from ..publish.sign import sign_package

    result = sign_package(directory, _signing_key(key, cert, cert_chain))
    if as_json:
        echo_json({"directory": str(result.directory), "signature": str(result.signature),
                   "signed_files": result.signed_files})
        return
    click.echo(_signed_line(result))


@cli.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--repo", "repo_id", default=None, metavar="ORG/NAME", help="Hub repository to commit to.")
@click.option("--to", "to", default=None, metavar="PATH|hf:datasets/ORG/NAME",
              help="Publish into a directory registry instead (created if missing; files in its mirror/), or into "
                   "the index in a Hub dataset repo (files in its mirror/, entry and files in one commit).")
@click.option("--endpoint", default=None, metavar="URL", help="Hub endpoint (default: HF_ENDPOINT or huggingface.co).")
@click.option("--token", default=None, help="Hub token (default: the one huggingface_hub finds, e.g. HF_TOKEN).")
@click.option("--private", is_flag=True, help="Create the repository as private.")
@click.option("--create-pr", is_flag=True, help="Commit as a pull request instead of to main.")
@click.option("--dry-run", is_flag=True, help="Check everything and show the plan; upload and write nothing.")
@click.option("--index", "index_dir", default=None, metavar="DIR|hf:datasets/ORG/NAME",
              help="Registry index to add the entry to: a directory, or a Hub dataset repo (one commit pinned to "
                   "its head) (default: print the entry).")
@click.option("--keys", "keys", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="ADAPTERHUB_INDEX_KEYS",
              help="Keyring to re-sign the registry with (required when it is signed; see `index keygen`).")
@json_option
def publish(directory: Path, repo_id: str | None, to: str | None, endpoint: str | None, token: str | None,
            private: bool, create_pr: bool, dry_run: bool, index_dir: str | None, keys: Path | None,
            as_json: bool) -> None:
    """Publish a packaged adapter: one Hub commit + an index entry, or into a directory or Hub-hosted registry."""
    if (repo_id is None) == (to is None):
        raise click.UsageError("pass exactly one of --repo ORG/NAME or --to PATH")
    if to is not None and index_dir is not None:
        raise click.UsageError("--index goes with --repo; with --to the index is PATH itself")
    hub_index = to if to is not None and to.startswith("hf:") else \
        index_dir if index_dir is not None and index_dir.startswith("hf:") else None
    for given, option in ((to, "--to"), (index_dir, "--index")):
        if given is not None and given is not hub_index and Path(given).is_file():
            raise click.BadParameter(f"{given!r} is a file, not a directory", param_hint=option)
    if hub_index is not None:
        _publish_hub_index(directory, hub_index, repo_id, endpoint, token, private, create_pr, dry_run, keys, as_json)
        return
    if to is not None:
        from ..publish import publish_local

        local = publish_local(directory, Path(to), dry_run=dry_run, keys=keys)
        if as_json:
            echo_json({"registry": str(local.root), "dry_run": local.dry_run, "copied": local.copied,
                       "already_published": local.already_published, "entry": local.entry})
            return
        m = local.manifest
        if local.dry_run:
            click.echo(f"dry run: would publish {m.name} {m.version} into {local.root} ({len(m.files)} file(s))")
        elif local.already_published:
            fixed = f"; restored {len(local.copied)} missing or damaged blob(s)" if local.copied else "; nothing to do"
            click.echo(f"{m.name} {m.version} is already in {local.root} (identical){fixed}")
        else:
            click.echo(f"published {m.name} {m.version} into {local.root}: {len(local.copied)} new blob(s)")
            click.echo(f"pull it with: adapterhub pull {m.name}=={m.version} --index {local.root}")
        return
    from ..publish import publish_to_hub

    result = publish_to_hub(directory, repo_id, endpoint=endpoint, token=token, private=private,  # type: ignore[arg-type]
                            create_pr=create_pr, dry_run=dry_run, index=Path(index_dir) if index_dir else None,
                            keys=keys)
    if as_json:
        echo_json({"repo_id": result.repo_id, "endpoint": result.endpoint, "commit": result.commit,
                   "dry_run": result.dry_run, "reused_commit": result.reused_commit, "pull_request": result.pull_request,
                   "files": result.operations, "index": str(result.index) if result.index else None,
                   "entry": result.entry})
        return
    m = result.manifest
    if result.dry_run:
        click.echo(f"dry run: would commit {len(result.operations)} file(s) of {m.name} {m.version} to "
                   f"{result.endpoint}/{repo_id} in one commit: {', '.join(result.operations)}")
        return
    verb = "reused existing commit" if result.reused_commit else "committed"
    click.echo(f"{verb} {result.commit} to {result.endpoint}/{repo_id}" +
               (f" (pull request {result.pull_request})" if result.pull_request else ""))
    if result.index is not None:
        click.echo(f"indexed {m.name} {m.version} in {result.index}")
    else:
        from ..jsonio import dumps_canonical

        click.echo("index entry (to index it, run the same command with --index DIR: the commit is reused):")
        click.echo(dumps_canonical(result.entry))


def _publish_hub_index(directory: Path, index: str, repo_id: str | None, endpoint: str | None, token: str | None,
                       private: bool, create_pr: bool, dry_run: bool, keys: Path | None, as_json: bool) -> None:
    """``publish --index hf:…`` (files to ``repo_id``) or ``publish --to hf:…`` (files in the index's mirror/)."""
    from ..publish import publish_to_hub_index

    result = publish_to_hub_index(directory, index, repo_id=repo_id, endpoint=endpoint, token=token,
                                  private=private, create_pr=create_pr, dry_run=dry_run, keys=keys)
    published, push = result.published, result.push
    if as_json:
        echo_json({"index": result.location, "repo_id": repo_id, "commit": getattr(published, "commit", None),
                   "dry_run": dry_run, "index_commit": push.commit if push else None,
                   "uploaded": push.uploaded if push else [], "entry": published.entry})
        return
    m = published.manifest
    if dry_run:
        click.echo(f"dry run: would publish {m.name} {m.version} into {result.location}"
                   + (f" with its files in {repo_id}" if repo_id else " with its files in its mirror/"))
        return
    if repo_id is not None:
        verb = "reused existing commit" if published.reused_commit else "committed"
        click.echo(f"{verb} {published.commit} to {published.endpoint}/{repo_id}")
    if push is None or push.commit is None:
        click.echo(f"{m.name} {m.version} is already in {result.location} (identical); nothing to do")
        return
    click.echo(f"indexed {m.name} {m.version} in {result.location} (commit {push.commit}, "
               f"{len(push.uploaded)} file(s) uploaded)")
    click.echo(f"pull it with: adapterhub pull {m.name}=={m.version} --index {result.location}")


__all__ = ["init", "package", "publish", "sign"]
