"""``adapterhub init``: scaffold a manifest for a saved adapter, deriving everything that can be derived.

Derived: method and config, base-model facts (type, sizes, layer count) and, when the base weights are
at hand, its fingerprint; every file with its size and sha256. Asked (or passed): what only the author
knows — name, version, license, description, authors, task, base model id. A directory in the
``adapters``-library or PEFT format is converted into ours (in a new directory) through the runtime's
``read_adapter_dir``; that needs the base model's structure (``base=`` a model directory, or only its
config.json, in which case the fingerprint is left out and the result says so).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConflictError, IncompatibleBaseError, NotFoundError
from ..jsonio import load_strict
from ..manifest import (
    MANIFEST_FILENAME,
    Manifest,
    load_manifest,
    manifest_problems,
    manifest_to_dict,
    parse_manifest,
    write_manifest,
)
from ..names import normalize_name
from .base import load_base
from .files import file_entries, payload_files
from .pin import pin_hub_dependencies

Check = Callable[[str], "str | None"]
"""``check(answer) -> problem``: what is wrong with an answer for one field (``None``: nothing)."""
Ask = Callable[[str, str, Check], str]
"""``ask(question, default, check) -> answer``: how missing fields are obtained. The asker repeats the
question until ``check`` passes, so one bad answer costs only that answer (click.prompt's ``value_proc``
in the CLI)."""

HEAD_TASKS = {"classification": "text-classification", "multilabel-classification": "text-classification",
              "token-classification": "token-classification", "regression": "regression",
              "question-answering": "question-answering", "multiple-choice": "multiple-choice",
              "lm": "language-modeling"}


@dataclass
class InitOptions:
    """Fields only the author knows; ``None`` means: ask, or take the default."""

    name: str | None = None
    version: str | None = None
    license: str | None = None
    description: str | None = None
    authors: tuple[str, ...] | None = None
    task_type: str | None = None
    task_name: str | None = None
    dataset: str | None = None
    language: str | None = None
    base_id: str | None = None
    base_revision: str | None = None
    metrics: tuple[dict[str, Any], ...] = ()
    """``{"dataset", "split", "name", "value"}`` each (``--metric``)."""


@dataclass
class InitResult:
    directory: Path
    manifest: Manifest
    notes: list[str] = field(default_factory=list)
    converted_from: str | None = None
    """``adapters-library`` or ``peft`` when a foreign directory was converted."""


def _default_author() -> str:
    return os.environ.get("GIT_AUTHOR_NAME") or os.environ.get("USER") or "unknown"


def _default_name(directory: Path) -> str:
    norm = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", normalize_name(directory.resolve().name))).strip("-")[:64]
    return norm if len(norm) >= 2 else "my-adapter"


def _problems_at(candidate: dict[str, Any], pointer: str) -> str | None:
    """The schema's (and the semantic checks') complaints about one field of a manifest in the making."""
    found = [p.message for p in manifest_problems(candidate)
             if p.pointer == pointer or p.pointer.startswith(pointer + "/")]
    return "; ".join(found) or None


class _Fields:
    """Resolves each askable field: explicit option, else the answer to ``ask``, else the default.

    An answer is checked against the manifest schema as soon as it is given (``candidate(answer)`` is the
    manifest so far with that answer in place), so a bad one is asked again on its own; explicit options
    are checked all together when the manifest is parsed.
    """

    def __init__(self, options: InitOptions, ask: Ask | None) -> None:
        self.options = options
        self.ask = ask

    def get(self, key: str, question: str, default: str, pointer: str,
            candidate: Callable[[str], dict[str, Any]]) -> str:
        given = getattr(self.options, key, None)
        if given is not None:
            return given
        return self.answer(question, default, pointer, candidate) if self.ask is not None else default

    def answer(self, question: str, default: str, pointer: str, candidate: Callable[[str], dict[str, Any]]) -> str:
        assert self.ask is not None
        return self.ask(question, default, lambda text: _problems_at(candidate(text.strip()), pointer)).strip()


def _split_authors(text: str) -> list[str]:
    return [a.strip() for a in text.split(",") if a.strip()]


def _apply_fields(doc: dict[str, Any], fields: _Fields, directory: Path) -> None:
    """Fill the author-known fields of ``doc`` in place (existing values become the defaults)."""
    o = fields.options
    method = doc["adapter"]["method"]
    generated = f"{method} adapter {doc.get('name')} for {doc['base_model'].get('id')}"  # write_adapter_dir's default
    if doc.get("description") == generated:
        doc["description"] = None

    def top(key: str):
        return lambda v: {**doc, key: v}

    doc["name"] = fields.get("name", "Adapter name (registry name)", doc.get("name") or _default_name(directory),
                             "/name", top("name"))
    base = doc["base_model"]
    base["id"] = fields.get("base_id", "Base model id (Hub id)", base.get("id") or "unknown", "/base_model/id",
                            lambda v: {**doc, "base_model": {**base, "id": v}})
    if o.base_revision:
        base["revision"] = o.base_revision
    doc["version"] = fields.get("version", "Version (PEP 440)", doc.get("version") or "0.1.0", "/version",
                                top("version"))
    license_default = doc.get("license") or "NOASSERTION"
    doc["license"] = fields.get("license", "License (SPDX id, e.g. apache-2.0)", license_default, "/license",
                                top("license"))
    desc_default = doc.get("description") or f"{method} adapter for {doc['base_model']['id']}"
    doc["description"] = fields.get("description", "Description", desc_default, "/description", top("description"))
    authors = o.authors if o.authors is not None else None
    if authors is None:
        current = [a for a in doc.get("authors") or [] if a != "unknown"]
        answer = fields.get("authors", "Authors (comma-separated)", ", ".join(current) or _default_author(),
                            "/authors", lambda v: {**doc, "authors": _split_authors(v)})
        authors = tuple(_split_authors(answer))
    doc["authors"] = list(authors)
    task = dict(doc.get("task") or {})
    head_type = (doc.get("head") or {}).get("type")

    def in_task(key: str):
        return lambda v: {**doc, "task": {**task, key: v} if v else {k: x for k, x in task.items() if k != key}}

    task["type"] = fields.get("task_type", "Task type", task.get("type") or HEAD_TASKS.get(head_type, "other"),
                              "/task/type", in_task("type"))
    task_name_default = task.get("name") if task.get("name") not in (None, doc["name"]) else doc["name"]
    task["name"] = fields.get("task_name", "Task name (e.g. sst2)", task_name_default, "/task/name", in_task("name"))
    for key, option in (("dataset", o.dataset), ("language", o.language)):
        value = option if option is not None else (
            fields.answer(f"Task {key} (optional)", task.get(key) or "", f"/task/{key}", in_task(key))
            if fields.ask else task.get(key))
        if value:
            task[key] = value
        else:
            task.pop(key, None)
    doc["task"] = task
    if o.metrics:
        doc["metrics"] = [*(doc.get("metrics") or []), *o.metrics]


def _check_base_against(doc: dict[str, Any], base: Any, source: str) -> None:
    from ..runtime import BaseFacts, bind  # deferred: CLI import cost (torch)

    bm = doc["base_model"]
    mine = BaseFacts(bm["model_type"], bm["hidden_size"], bm["num_hidden_layers"],
                     num_decoder_layers=bm.get("num_decoder_layers"))
    theirs = BaseFacts.of(bind(base.model))
    if mine.shape_differs(theirs):
        raise IncompatibleBaseError(f"{source}: the manifest's base is {mine.describe()}, --base {base.path} is "
                                    f"{theirs.describe()}", hint="pass the base model the adapter was trained on")


def _init_ours(directory: Path, base_path: str | Path | None, fields: _Fields) -> InitResult:
    path = directory / MANIFEST_FILENAME
    raw, notes = pin_hub_dependencies(load_strict(path), str(path))  # hf: members: pinned to their commits
    manifest = parse_manifest(raw, str(path))
    doc = manifest_to_dict(manifest)
    if base_path is not None:
        base = load_base(base_path)
        _check_base_against(doc, base, str(directory / MANIFEST_FILENAME))
        fp = base.fingerprint
        stated = doc["base_model"].get("fingerprint")
        if fp is None:
            notes.append(f"{base_path} has no weights: the base fingerprint was not (re)computed")
        elif stated and stated != fp:
            raise IncompatibleBaseError(f"{directory}: the manifest's base fingerprint {stated} differs from "
                                        f"{base_path}'s {fp}", hint="pass the exact base weights the adapter was saved on")
        else:
            doc["base_model"]["fingerprint"] = fp
        if doc["base_model"].get("id") in (None, "unknown") and base.repo_id:
            doc["base_model"]["id"] = base.repo_id
    elif not doc["base_model"].get("fingerprint"):
        notes.append("no base fingerprint in the manifest and no --base given: loading will check shapes only")
    _apply_fields(doc, fields, directory)
    roles = {f.path: f.role for f in manifest.files if f.role}
    doc["files"] = file_entries(directory, payload_files(directory), roles)
    final = parse_manifest(doc, str(directory / MANIFEST_FILENAME))
    write_manifest(final, directory / MANIFEST_FILENAME)
    return InitResult(directory, final, notes)


def _init_foreign(directory: Path, out: Path, base_path: str | Path | None, fields: _Fields) -> InitResult:
    from ..runtime import write_adapter_dir  # deferred: CLI import cost (torch)

    config = load_strict(directory / "adapter_config.json")
    config = config if isinstance(config, dict) else {}
    kind = "peft" if "peft_type" in config else "adapters-library"
    notes: list[str] = []
    if base_path is None:
        stated = config.get("base_model_name_or_path")
        if isinstance(stated, str) and Path(stated).is_dir():
            base_path = stated
            notes.append(f"base model structure and weights taken from adapter_config.json: {stated}")
        else:
            raise NotFoundError(f"{directory}: converting a {kind} directory needs the base model's structure "
                                "(its tensor names are module paths of the model)",
                                hint="pass --base PATH: a model directory (also fills the fingerprint) "
                                     "or only its config.json")
    if out.exists() and any(out.iterdir()):
        raise ConflictError(f"{out} exists and is not empty", hint="pass --out to another directory")
    base, pkg = _read_with_base(directory, base_path, config, kind)
    pkg.base.fingerprint = base.fingerprint
    if base.fingerprint is None:
        notes.append(f"fingerprint left out: {base_path} holds no weights (only the structure was used); "
                     "loading will check shapes only")
    stated = config.get("base_model_name_or_path")
    pkg.base.id = base.repo_id or (stated if isinstance(stated, str) and not Path(stated).exists() else None)
    revision = config.get("revision")
    if isinstance(revision, str) and re.fullmatch(r"[0-9a-f]{40}", revision):
        pkg.base.revision = revision
    doc = {"adapter": {"method": pkg.method}, "base_model": {"id": pkg.base.id or "unknown"},
           "head": {"type": pkg.head_type} if pkg.head_type else None}
    _apply_fields(doc, fields, directory)
    pkg.base.id = doc["base_model"]["id"]
    if doc["base_model"].get("revision"):
        pkg.base.revision = doc["base_model"]["revision"]
    write_adapter_dir(pkg, out, name=doc["name"], version=doc["version"], description=doc["description"],
                      license=doc["license"], authors=tuple(doc["authors"]), task=doc["task"],
                      extra={"metrics": doc["metrics"]} if doc.get("metrics") else None)
    return InitResult(out, load_manifest(out), notes, kind)


def _read_with_base(directory: Path, base_path: str | Path, config: dict[str, Any], kind: str) -> tuple[Any, Any]:
    """The base model (as the task class the adapter's head needs) and the adapter read against it.

    The class comes from the head: an ``adapters``-library ``head_config.json`` (its static
    ``model_class`` or the task class its flex head is), PEFT's ``task_type``, else the checkpoint's
    ``architectures``. A classification head trained with another label count than the base's config
    states gets a base with that count. The head must then fit the model, else nothing is written.
    """
    from ..runtime import bind, read_adapter_dir  # deferred: CLI import cost (torch)
    from ..runtime.heads import check_head, head_info, head_num_labels  # deferred: CLI import cost (torch)

    task_class, num_labels = None, None
    if kind == "adapters-library":
        from ..runtime.formats.adapters_heads import (  # deferred: CLI import cost (torch)
            head_meta,
            task_class_of,
        )

        meta = head_meta(directory)
        if meta is not None:
            task_class, num_labels = task_class_of(meta, directory)
    peft_config = config if kind == "peft" else None
    base = load_base(base_path, peft_config, task_class=task_class, num_labels=num_labels)
    pkg = read_adapter_dir(directory, bind(base.model))
    relabel = head_num_labels(base.model, pkg.head) if pkg.head else None
    if relabel:
        base = load_base(base_path, peft_config, task_class=task_class, num_labels=relabel)
        pkg = read_adapter_dir(directory, bind(base.model))
    if pkg.head:
        check_head(base.model, pkg.head, str(directory))
        info = head_info(base.model)  # PEFT's modules_to_save: the head type comes from the model class
        pkg.head_type, pkg.num_labels = pkg.head_type or info.type, pkg.num_labels or info.num_labels
    return base, pkg


def init_adapter(directory: str | Path, *, out: str | Path | None = None, base: str | Path | None = None,
                 options: InitOptions | None = None, ask: Ask | None = None) -> InitResult:
    """Scaffold (or complete) ``adapterhub.json`` for the adapter saved in ``directory``.

    An adapterhub directory (``AdapterModel.save`` output) is completed in place. An ``adapters``-library
    or PEFT directory is converted into ``out`` (default: ``<directory>-adapterhub`` next to it).
    """
    d = Path(directory)
    if not d.is_dir():
        raise NotFoundError(f"{d}: not a directory")
    fields = _Fields(options or InitOptions(), ask)
    if (d / MANIFEST_FILENAME).is_file():
        if out is not None and Path(out).resolve() != d.resolve():
            raise ConflictError(f"{d} is already in adapterhub format; it is completed in place",
                                hint="drop --out, or copy the directory first")
        return _init_ours(d, base, fields)
    if not (d / "adapter_config.json").is_file():
        raise NotFoundError(f"{d}: neither adapterhub.json nor adapter_config.json; not a saved adapter",
                            hint="save one with AdapterModel.save, PEFT save_pretrained or adapters save_adapter")
    target = Path(out) if out is not None else d.parent / f"{d.name}-adapterhub"
    return _init_foreign(d, target, base, fields)
