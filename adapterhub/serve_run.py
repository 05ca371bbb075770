"""Run a text-classification adapter on texts: load the base, check it, attach, tokenize, predict.

``adapterhub run`` is a thin wrapper over :func:`run_adapter`; the sample-training script
(``examples/train_sst2.py``) measures the dev accuracy it records in each manifest with
:func:`classify`, so the recorded metric is exactly what ``adapterhub run`` computes. This module
imports torch and transformers (and the runtime, which needs torch) only inside the functions that need
them, so ``adapterhub run``'s usage errors and ``import adapterhub.serve_run`` stay torch-free.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .digits import plain_int
from .errors import (
    AdapterHubError,
    IncompatibleBaseError,
    InvalidArgumentError,
    NotFoundError,
    SchemaError,
    SchemaProblem,
)
from .jsonio import load_strict
from .manifest import MANIFEST_FILENAME, Manifest, load_manifest
from .names import HUB_REPO_ID_RE, hub_repo_id_hint, is_hub_reference
from .store import pull
from .store.base_fetch import FetchedBase, obtain_base
from .store.base_locator import BaseLocation, check_shape_facts
from .tasks.classify import DEFAULT_BATCH_SIZE, MAX_LENGTH, Prediction, TextInput, classify
from .tasks.dispatch import check_served, task_for, task_kind
from .tasks.generate import Generation
from .tasks.loading import is_encoder_decoder, load_task_model
from .tasks.types import Task, TaskResult, TaskSpec, check_options

__all__ = ["DEFAULT_BATCH_SIZE", "MAX_LENGTH", "BaseReport", "Generation", "Prediction", "Runner", "TextInput", "accuracy",
           "classify", "iter_lines", "label_names", "load_classifier", "prepare", "pull_base", "read_tsv"]

GENERATION_KINDS = frozenset({"causal", "seq2seq"})
"""Task kinds that generate text (:meth:`Runner.generate`)."""
GENERATION_TASKS = frozenset({"language-modeling", "text-generation", "summarization", "translation"})
"""Manifest task types whose adapters without a head run as language models (head type ``lm``)."""


def label_names(manifest: Manifest | None, num_labels: int, directory: str | Path | None = None) -> list[str]:
    """Label names from the manifest (head labels, else task labels), else the adapter's
    ``head_config.json`` (``adapters``-library ``label2id``), else ``LABEL_<i>``."""
    for labels in (manifest and manifest.head and manifest.head.labels, manifest and manifest.task.labels,
                   head_config_labels(directory) if directory is not None else None):
        if labels and len(labels) == num_labels:
            return list(labels)
    return [f"LABEL_{i}" for i in range(num_labels)]


def head_config_labels(directory: str | Path) -> list[str] | None:
    """Label names of an ``adapters``-library ``head_config.json`` (its ``label2id``), None without them."""
    path = Path(directory) / "head_config.json"
    if not path.is_file():
        return None
    doc = load_strict(path)
    label2id = doc.get("label2id") or (doc.get("config") or {}).get("label2id") if isinstance(doc, dict) else None
    if not isinstance(label2id, dict) or not all(isinstance(v, int) for v in label2id.values()):
        return None
    by_id = {v: str(k) for k, v in label2id.items()}
    return [by_id[i] for i in range(len(by_id))] if sorted(by_id) == list(range(len(by_id))) else None


def accuracy(predictions: Sequence[Prediction], gold: Sequence[int]) -> float:
    """Fraction of predictions whose label id equals the gold label id."""
    if len(predictions) != len(gold) or not gold:
        raise AdapterHubError(f"{len(predictions)} predictions for {len(gold)} gold labels")
    return sum(p.label_id == g for p, g in zip(predictions, gold, strict=True)) / len(gold)


def load_classifier(base_dir: str | Path, num_labels: int, *, dtype: Any = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a local base directory, as a sequence classifier with ``num_labels``
    (see :func:`adapterhub.tasks.loading.load_task_model`)."""
    return load_task_model(base_dir, "classification", num_labels, dtype=dtype)


def read_tsv(path: str | Path) -> tuple[list[str], list[int]]:
    """GLUE-style ``sentence<TAB>label`` file with a header (no quoting: sentences contain quotes)."""
    texts: list[str] = []
    gold: list[int] = []
    with open(path, encoding="utf-8", newline="") as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
        if header[:2] != ["sentence", "label"]:
            raise SchemaError(str(path), [SchemaProblem("/0", f"expected header 'sentence<TAB>label', got {header}")])
        for n, line in enumerate(fh, start=2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            text, _, label = line.rpartition("\t")
            value = plain_int(label.strip())
            if value is None:
                raise SchemaError(str(path), [SchemaProblem(f"/{n}", f"label {label[:40]!r} is not an integer")])
            texts.append(text.strip())
            gold.append(value)
    return texts, gold


def iter_lines(stream: Iterable[str]) -> list[str]:
    """Non-empty lines of a text stream, stripped of their line endings."""
    return [line.rstrip("\r\n") for line in stream if line.strip()]


@dataclass
class Runner:
    """A base model with one adapter attached, ready to run its head on inputs (:meth:`run`)."""

    model: Any
    tokenizer: Any
    labels: list[str]
    adapter: str
    version: str | None
    adapter_dir: Path
    base: Any  # BaseLocation
    fingerprint: str
    fingerprint_checked: bool
    base_fetch: FetchedBase | None = None
    """How the base was fetched from the Hub by this call (None: it was found on this machine)."""
    head_type: str = "classification"
    """The manifest's head type (``lm`` for a language-model adapter without a head of its own)."""
    kind: str = "classify"
    """The task kind running it (see :mod:`adapterhub.tasks.dispatch`)."""
    max_length: int | None = None
    """The base's longest input in tokens (None: no limit known)."""

    @property
    def task(self) -> Task:
        return task_for(self.kind, str(self.adapter_dir))

    @property
    def columns(self) -> tuple[str, ...]:
        """The CLI table's columns for this adapter's results."""
        return self.task.columns(self.head_type)

    def run(self, inputs: Sequence[Any], *, batch_size: int | None = None,
            on_batch: Callable[[int], None] | None = None, **options: Any) -> list[TaskResult]:
        """Run the head on ``inputs`` (strings, or mappings with the task's fields: ``text``/``text_pair``,
        ``question``/``context``, ``prompt`` for language models), in input order; each result has ``to_json()``.

        ``options`` are the task's (``threshold`` for multilabel heads, ``aggregation`` for token
        classification, ``doc_stride``/``max_answer_length``/``max_length`` for question answering,
        :class:`~adapterhub.tasks.generate.Settings` fields and ``stream`` for language models); an
        input or option the task cannot use raises :class:`~adapterhub.errors.InvalidArgumentError`
        before anything runs.
        """
        task = self.task
        check_options(task, options)
        items = [task.coerce(x) for x in inputs]
        spec = TaskSpec(self.head_type, tuple(self.labels), self.adapter, self.max_length)
        return task.run(self.model, self.tokenizer, items, spec, on_batch=on_batch,
                        **({"batch_size": batch_size} if batch_size is not None else {}), **options)

    def generate(self, prompts: Sequence[str], *, batch_size: int | None = None,
                 on_batch: Callable[[int], None] | None = None,
                 stream: Callable[[int, str], None] | None = None, **settings: Any) -> list[Generation]:
        """Generated text for each prompt (a language-model adapter: head type ``lm``); ``settings`` are
        :class:`~adapterhub.tasks.generate.Settings` fields, ``stream(index, piece)`` gets text as it is final."""
        if self.kind not in GENERATION_KINDS:
            raise InvalidArgumentError(f"{self.adapter} has a {self.head_type} head; only language-model adapters "
                                       "(head type lm) generate text", hint="use Runner.run() for this adapter")
        return self.run(prompts, batch_size=batch_size, on_batch=on_batch,
                        **({"stream": stream} if stream is not None else {}), **settings)

    def classify(self, texts: Sequence[str | TextInput], *, batch_size: int = DEFAULT_BATCH_SIZE,
                 on_batch: Callable[[int], None] | None = None) -> list[Prediction]:
        """Softmax predictions of a classification head (:meth:`run` serves every head type)."""
        if self.head_type != "classification":
            raise InvalidArgumentError(f"{self.adapter} has a {self.head_type} head; classify() needs a "
                                       "classification head", hint="use Runner.run(), which serves every head type")
        return classify(self.model, self.tokenizer, texts, self.labels, batch_size=batch_size, on_batch=on_batch,
                        max_length=min(MAX_LENGTH, self.max_length or MAX_LENGTH))


def _adapter_dir(name_or_dir: str, *, index: Any, offline: bool | None,
                 token: str | bool | None = None) -> tuple[Path, Manifest]:
    """An adapterhub directory as given, else the verified cache view of a pulled requirement."""
    path = Path(name_or_dir)
    if path.is_dir():
        if not (path / MANIFEST_FILENAME).is_file():
            raise NotFoundError(f"{path}: no {MANIFEST_FILENAME}; `adapterhub run` takes adapterhub directories",
                                hint=f"convert a PEFT or adapters-library directory first: `adapterhub init {path} "
                                     "--base BASE`")
        return path, load_manifest(path)
    if is_hub_reference(name_or_dir):  # hf:ORG/REPO[@REV][:SUBFOLDER], verified by the Hub's hashes
        pulled = pull(name_or_dir, offline=offline, dependencies=False, token=token)
        return pulled.path, pulled.manifest
    if "/" in name_or_dir or "\\" in name_or_dir:
        hub_id = HUB_REPO_ID_RE.fullmatch(name_or_dir) is not None and not name_or_dir.startswith(".")
        raise NotFoundError(f"{name_or_dir}: no such adapter directory" + (
            ", and as a name it is a Hugging Face Hub repository id, not an index name" if hub_id else ""),
            hint=hub_repo_id_hint(name_or_dir) if hub_id else "check the path")
    # Offline with an empty cache still works for adapters whose bytes ship on this disk (the bundled
    # mirror, a directory registry): the store's offline pull reads on-disk sources.
    pulled = pull(name_or_dir, index=index, offline=offline, dependencies=False, token=token)
    return pulled.path, pulled.manifest


FORCE_HINT = ("use the exact base weights the adapter was trained on (same revision and dtype), "
              "or --force to run anyway (every shape fits; the outputs may be off)")


def _fingerprint_mismatch(manifest: Manifest, location: BaseLocation, fingerprint: str,
                          hint: str = FORCE_HINT) -> IncompatibleBaseError:
    bm = manifest.base_model
    return IncompatibleBaseError(
        f"{manifest.name} {manifest.version} was trained on {bm.id} with fingerprint {bm.fingerprint}, but the "
        f"base at {location.path} (found via {location.how}) has fingerprint {fingerprint}", hint=hint)


def _check_shapes(manifest: Manifest, location: BaseLocation, fetched: FetchedBase | None) -> None:
    """The base's shape facts against the manifest's, before any weight is loaded; a fetched base that
    does not fit is kept out of later lookups."""
    bm = manifest.base_model
    try:
        check_shape_facts(location, bm.model_type, bm.hidden_size, bm.num_hidden_layers,
                          f"{manifest.name} {manifest.version}")
    except IncompatibleBaseError as exc:
        if fetched is not None:
            fetched.reject(exc.message)
        raise


def _judge_fetched(fetched: FetchedBase | None, manifest: Manifest, fingerprint: str) -> None:
    """Confirm a base this call fetched when its weights are the manifest's (or it pins none); else keep
    it out of later lookups, saying why."""
    if fetched is None:
        return
    expected = manifest.base_model.fingerprint
    if not expected or expected == fingerprint:
        fetched.confirm()
    else:
        fetched.reject(f"fingerprint {fingerprint} differs from {expected}, which "
                       f"{manifest.name} {manifest.version} was trained on")


def prepare(name_or_dir: str, *, base: str | Path | None = None, force: bool = False, index: Any = None,
            offline: bool | None = None, token: str | bool | None = None, endpoint: str | None = None,
            progress: bool | None = None) -> Runner:
    """Resolve and pull (or open) the adapter, find its base (fetching it when it is nowhere on this
    machine, unless offline or ``base`` is given), check it, attach.

    Checks go from what no flag can fix to what ``force`` may skip, so an error offers ``--force`` only
    when it would work: the base's shape facts (its config.json, before any weight is loaded), then every
    tensor and head shape (attaching, which checks them all), and last the fingerprint. A mismatch is an
    :class:`~adapterhub.errors.IncompatibleBaseError` naming both sides. A fetched base is used by later
    calls only once its fingerprint matched (see :mod:`adapterhub.store.base_fetch`); ``endpoint`` and
    ``progress`` are for that fetch.
    """
    directory, manifest = _adapter_dir(name_or_dir, index=index, offline=offline, token=token)
    head_type = runnable_head_type(manifest, str(directory))
    num_labels = manifest.head.num_labels if manifest.head else None
    check_served(head_type, str(directory))  # refuse a head no task serves before fetching anything
    bm = manifest.base_model
    location, fetched = obtain_base(bm.id, bm.revision, explicit=base, offline=offline, endpoint=endpoint,
                                    token=token, progress=progress)
    _check_shapes(manifest, location, fetched)
    kind = task_kind(head_type, is_encoder_decoder=head_type == "lm" and is_encoder_decoder(location.path))
    task_for(kind, str(directory))
    model, tokenizer = load_task_model(location.path, head_type, num_labels)

    from .runtime import wrap  # deferred: CLI import cost (torch)

    handle = wrap(model)
    fingerprint = handle.fingerprint  # of the bare base
    _judge_fetched(fetched, manifest, fingerprint)
    handle.load(directory, name="adapter", force=True)  # shapes of every tensor and the head; not the fingerprint
    if bm.fingerprint and bm.fingerprint != fingerprint and not force:
        raise _fingerprint_mismatch(manifest, location, fingerprint)
    labels = label_names(manifest, num_labels, directory) if num_labels and head_type != "regression" else []
    return Runner(model, tokenizer, labels, manifest.name, manifest.version, directory, location, fingerprint,
                  bm.fingerprint == fingerprint, fetched, head_type, kind, input_limit(model, tokenizer))


def runnable_head_type(manifest: Manifest, where: str) -> str:
    """The head type ``run`` loads the base for: the manifest's head, else ``lm`` for a generation task
    (a language-model adapter uses the base's own LM head); a labelled head must state its label count."""
    head = manifest.head
    if head is None:
        if manifest.task.type in GENERATION_TASKS:
            return "lm"
        raise SchemaError(where, [SchemaProblem("/head", f"`run` needs a head to run; {manifest.name} has none "
                                                f"(task type {manifest.task.type})")])
    if head.type in ("classification", "multilabel-classification", "token-classification") and not head.num_labels:
        raise SchemaError(where, [SchemaProblem("/head/num_labels", f"a {head.type} head needs num_labels")])
    return head.type


def input_limit(model: Any, tokenizer: Any) -> int | None:
    """The longest input the base takes: its position table, or the tokenizer's stated limit if smaller."""
    limits = [n for n in (getattr(model.config, "max_position_embeddings", None),
                          getattr(tokenizer, "model_max_length", None)) if isinstance(n, int) and 0 < n < 10**6]
    return min(limits) if limits else None


@dataclass(frozen=True)
class BaseReport:
    """Where an adapter's base is, and whether this call fetched it and checked its weights."""

    location: BaseLocation
    fetched: FetchedBase | None
    fingerprint: str | None
    """The fetched weights' fingerprint (None: found locally, not loaded; ``run`` checks it when it loads)."""
    fingerprint_checked: bool = False
    """The fetched weights matched the manifest's fingerprint (False: not fetched, or the manifest has none)."""

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.location.path), "how": self.location.how, "fingerprint": self.fingerprint,
                "fingerprint_checked": self.fingerprint_checked,
                "commit": self.fetched.commit if self.fetched else None,
                "downloaded_bytes": self.fetched.downloaded if self.fetched else 0}


def pull_base(manifest: Manifest, *, offline: bool | None = None, endpoint: str | None = None,
              token: str | bool | None = None, progress: bool | None = None) -> BaseReport:
    """``adapterhub pull --with-base``: find the adapter's base, or fetch it and check its fingerprint.

    The weights are loaded as ``run`` loads them: as the task model of the adapter's head (the
    fingerprint covers the backbone of that model), else as the checkpoint's own architecture.
    """
    bm = manifest.base_model
    location, fetched = obtain_base(bm.id, bm.revision, offline=offline, endpoint=endpoint, token=token,
                                    progress=progress)
    if fetched is None:
        return BaseReport(location, None, None)
    _check_shapes(manifest, location, fetched)
    head = manifest.head
    if head is not None and (head.num_labels or head.type not in ("classification", "multilabel-classification",
                                                                   "token-classification")):
        model = load_task_model(location.path, head.type, head.num_labels)[0]
    else:
        from .publish.base import load_base  # deferred: CLI import cost (torch)

        model = load_base(location.path).model
    from .runtime import base_fingerprint  # deferred: CLI import cost (torch)

    fingerprint = base_fingerprint(model)
    _judge_fetched(fetched, manifest, fingerprint)
    if bm.fingerprint and bm.fingerprint != fingerprint:
        raise _fingerprint_mismatch(manifest, location, fingerprint, hint=(
            "the base at the manifest's revision is not the one the adapter was trained on, so later lookups "
            "skip it; ask the adapter's publisher, or `adapterhub run --force` to run on it anyway"))
    return BaseReport(location, fetched, fingerprint, bool(bm.fingerprint))
