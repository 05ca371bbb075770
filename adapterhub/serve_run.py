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

from .errors import AdapterHubError, IncompatibleBaseError, NotFoundError, SchemaError, SchemaProblem
from .manifest import MANIFEST_FILENAME, Manifest, load_manifest
from .names import HUB_REPO_ID_RE, hub_repo_id_hint, is_hub_reference
from .progress import quiet_hf_loading
from .store import pull
from .store.base_fetch import FetchedBase, obtain_base
from .store.base_locator import BaseLocation, check_shape_facts

DEFAULT_BATCH_SIZE = 32
MAX_LENGTH = 512  # BERT-family position limit; longer inputs are truncated


@dataclass(frozen=True)
class Prediction:
    """One input's result: the label with the highest probability, and every label's probability."""

    text: str
    label: str
    label_id: int
    probability: float
    probabilities: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "label": self.label, "label_id": self.label_id,
                "probability": round(self.probability, 6),
                "probabilities": {k: round(v, 6) for k, v in self.probabilities.items()}}


def label_names(manifest: Manifest | None, num_labels: int) -> list[str]:
    """Label names from the manifest (head labels, else task labels), else ``LABEL_<i>``."""
    for labels in (manifest and manifest.head and manifest.head.labels, manifest and manifest.task.labels):
        if labels and len(labels) == num_labels:
            return list(labels)
    return [f"LABEL_{i}" for i in range(num_labels)]


def classify(model: Any, tokenizer: Any, texts: Sequence[str], labels: Sequence[str], *,
             batch_size: int = DEFAULT_BATCH_SIZE, max_length: int = MAX_LENGTH,
             on_batch: Callable[[int], None] | None = None) -> list[Prediction]:
    """Softmax predictions of a sequence-classification model, in input order.

    Batches are taken in input order and padded to their longest member (dynamic padding), so the
    same texts and batch size always give the same numbers. ``on_batch(n)`` is called after each batch
    of ``n`` texts (a progress bar).
    """
    import torch

    if batch_size < 1:
        raise AdapterHubError(f"batch size must be at least 1, got {batch_size}")
    out: list[Prediction] = []
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                chunk = list(texts[start:start + batch_size])
                enc = tokenizer(chunk, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
                logits = model(**enc).logits.float()
                probs = torch.softmax(logits, dim=-1)
                for text, row in zip(chunk, probs.tolist(), strict=True):
                    best = max(range(len(row)), key=row.__getitem__)
                    out.append(Prediction(text, labels[best], best, row[best], dict(zip(labels, row, strict=True))))
                if on_batch is not None:
                    on_batch(len(chunk))
    finally:
        model.train(was_training)
    return out


def accuracy(predictions: Sequence[Prediction], gold: Sequence[int]) -> float:
    """Fraction of predictions whose label id equals the gold label id."""
    if len(predictions) != len(gold) or not gold:
        raise AdapterHubError(f"{len(predictions)} predictions for {len(gold)} gold labels")
    return sum(p.label_id == g for p, g in zip(predictions, gold, strict=True)) / len(gold)


def load_classifier(base_dir: str | Path, num_labels: int, *, dtype: Any = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a local base directory, as a sequence classifier with ``num_labels``.

    The base's own task head (if any) is ignored on purpose: the adapter brings its head. Only local
    files are read, and transformers' own progress bars stay off (they would land in piped output).
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    with quiet_hf_loading():  # "newly initialized classifier" is expected: the adapter brings it
        tokenizer = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            str(base_dir), num_labels=num_labels, local_files_only=True,
            **({"dtype": dtype} if dtype is not None else {}))
    model.eval()
    if dtype is None and next(model.parameters()).dtype != torch.float32:
        model = model.float()
    return model, tokenizer


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
            if not label.strip().isdigit():
                raise SchemaError(str(path), [SchemaProblem(f"/{n}", f"label {label!r} is not an integer")])
            texts.append(text.strip())
            gold.append(int(label))
    return texts, gold


def iter_lines(stream: Iterable[str]) -> list[str]:
    """Non-empty lines of a text stream, stripped of their line endings."""
    return [line.rstrip("\r\n") for line in stream if line.strip()]


@dataclass
class Runner:
    """A base model with one adapter attached, ready to classify texts."""

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

    def classify(self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE,
                 on_batch: Callable[[int], None] | None = None) -> list[Prediction]:
        return classify(self.model, self.tokenizer, texts, self.labels, batch_size=batch_size, on_batch=on_batch)


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
    head = manifest.head
    if head is None or head.type != "classification" or not head.num_labels:
        raise SchemaError(str(directory), [SchemaProblem(
            "/head", f"`run` needs a classification head; this adapter has {head.type if head else 'none'}")])
    bm = manifest.base_model
    location, fetched = obtain_base(bm.id, bm.revision, explicit=base, offline=offline, endpoint=endpoint,
                                    token=token, progress=progress)
    _check_shapes(manifest, location, fetched)
    model, tokenizer = load_classifier(location.path, head.num_labels)

    from .runtime import wrap  # deferred: CLI import cost (torch)

    handle = wrap(model)
    fingerprint = handle.fingerprint  # of the bare base
    _judge_fetched(fetched, manifest, fingerprint)
    handle.load(directory, name="adapter", force=True)  # shapes of every tensor and the head; not the fingerprint
    if bm.fingerprint and bm.fingerprint != fingerprint and not force:
        raise _fingerprint_mismatch(manifest, location, fingerprint)
    return Runner(model, tokenizer, label_names(manifest, head.num_labels), manifest.name, manifest.version,
                  directory, location, fingerprint, bm.fingerprint == fingerprint, fetched)


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

    The weights are loaded as ``run`` loads them for an adapter with a classification head (the
    fingerprint covers the backbone of that model), else as the checkpoint's own architecture.
    """
    bm = manifest.base_model
    location, fetched = obtain_base(bm.id, bm.revision, offline=offline, endpoint=endpoint, token=token,
                                    progress=progress)
    if fetched is None:
        return BaseReport(location, None, None)
    _check_shapes(manifest, location, fetched)
    head = manifest.head
    if head is not None and head.type == "classification" and head.num_labels:
        model = load_classifier(location.path, head.num_labels)[0]
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
