"""A manifest for an adapter repo on the Hub that has none: derived from what the repo itself says.

``pull hf:ORG/REPO`` reaches PEFT and ``adapters``-library repos, which carry a foreign config
(``adapter_config.json``) instead of an ``adapterhub.json``. :func:`derive_manifest` turns that config,
the repo's file listing (every file with its sha256 and size, as the Hub states them) and where it came
from (:class:`HubOrigin`: repo, pinned commit, subfolder, model-card data) into a regular manifest, so
``info``, ``verify``, ``cache ls``, ``run``, ``lock`` and composition treat the adapter like any
registry adapter. The payload stays in its foreign layout (the files are the repo's, byte for byte);
the runtime recognises it by the foreign config the manifest lists and reads the tensors through the
matching format reader, checking that they are what the manifest states.

Derived, never guessed: method and config (:mod:`.peft_config`, :mod:`.peft_targets`,
:mod:`.adapters_config`), base id and revision (the foreign config, else the card's ``base_model``),
the base's shape facts (its ``config.json``, which the caller fetches: :func:`base_reference` says
which), task and head (PEFT's ``task_type``, the card's ``pipeline_tag``, the library's head config),
license (the card), files with roles, and the source pinned to the commit. Name and version are
stable functions of the origin: ``<org>-<repo>[-<subfolder>]`` and ``0+g<first 12 hex of the commit>``
(so two commits are two versions). A repo that already carries an ``adapterhub.json`` is described by
it, unchanged, once its files match the listing. Torch-free, like the rest of the manifest layer.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import IntegrityError, NotFoundError, SchemaError, SchemaProblem
from ..families import HIDDEN_SIZE_KEYS, LAYER_COUNT_KEYS, config_int, find_family
from ..names import HubReference, is_repo_id, manifest_name
from .adapters_config import bottleneck_config, flat_config, fusion_config, lora_config, prefix_config
from .io import CURRENT_SCHEMA_VERSION, MANIFEST_FILENAME, SIGNATURE_FILENAME, parse_manifest
from .peft_config import check_peft_config, lora_ranks, peft_method, peft_scalars, peft_unsupported
from .peft_targets import TensorNames, family_of, peft_placement
from .roles import CARD_FILE, guess_role
from .types import FileEntry, HfSource, Manifest

FOREIGN_CONFIG = "adapter_config.json"
FUSION_CONFIG = "adapter_fusion_config.json"
HEAD_CONFIG = "head_config.json"
REPO_FILES = (".gitattributes", CARD_FILE, SIGNATURE_FILENAME)
"""Files a repo may hold beside an ``adapterhub.json`` release's payload without its manifest listing them
(git's attributes, the card, the signature); when the manifest lists one, it is checked like any file."""
LAYOUT_WEIGHTS = {
    "peft": ("adapter_model.safetensors", "adapter_model.bin"),
    "adapters-library": ("adapter.safetensors", "pytorch_adapter.bin"),
}
LAYOUT_HEADS = ("head.safetensors", "model_head.safetensors", "pytorch_model_head.bin")
FUSION_WEIGHTS = ("model_adapter_fusion.safetensors", "pytorch_model_adapter_fusion.bin")
PEFT_TASKS = {"SEQ_CLS": "text-classification", "TOKEN_CLS": "token-classification",
              "QUESTION_ANS": "question-answering", "CAUSAL_LM": "text-generation",
              "SEQ_2_SEQ_LM": "text-generation", "FEATURE_EXTRACTION": "feature-extraction"}
PEFT_HEADS = {"SEQ_CLS": "classification", "TOKEN_CLS": "token-classification",
              "QUESTION_ANS": "question-answering", "CAUSAL_LM": "lm", "SEQ_2_SEQ_LM": "lm"}
PIPELINE_TASKS = {"text-classification": "text-classification", "token-classification": "token-classification",
                  "question-answering": "question-answering", "multiple-choice": "multiple-choice",
                  "summarization": "summarization", "translation": "translation",
                  "text-generation": "text-generation", "text2text-generation": "text-generation",
                  "fill-mask": "language-modeling", "feature-extraction": "feature-extraction",
                  "sentence-similarity": "feature-extraction"}
LIBRARY_HEADS = {"classification": "classification", "multilabel_classification": "multilabel-classification",
                 "tagging": "token-classification", "question_answering": "question-answering",
                 "multiple_choice": "multiple-choice", "causal_lm": "lm", "masked_lm": "lm", "seq2seq_lm": "lm"}
HEAD_TASKS = {"classification": "text-classification", "multilabel-classification": "text-classification",
              "token-classification": "token-classification", "question-answering": "question-answering",
              "multiple-choice": "multiple-choice", "lm": "language-modeling"}
LICENSE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+-]*( (AND|OR|WITH) [A-Za-z0-9][A-Za-z0-9.+-]*)*")
COMMIT_RE = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class HubOrigin:
    """Where a derived manifest's files come from: a Hub repo at a pinned commit (and subfolder)."""

    repo_id: str
    commit: str
    subfolder: str | None = None
    endpoint: str | None = None
    card_data: Mapping[str, Any] | None = None
    """The repo's model-card metadata (``model_info().card_data``), when known."""

    def __str__(self) -> str:
        return f"hf:{self.repo_id}@{self.commit}" + (f":{self.subfolder}" if self.subfolder else "")


def derived_name(origin: HubOrigin) -> str:
    """``<org>-<repo>[-<subfolder>]`` as a registry name; one longer than 64 is cut and ends with a hash of
    the whole, so two long repo names never share a derived name."""
    text = origin.repo_id.replace("/", "-") + (f"-{origin.subfolder.replace('/', '-')}" if origin.subfolder else "")
    full = manifest_name(text, limit=1 << 16)
    if len(full) <= 64:
        return full
    digest = hashlib.sha256(f"{origin.repo_id}:{origin.subfolder or ''}".encode()).hexdigest()[:8]
    return f"{manifest_name(text, limit=55)}-{digest}"


def derived_version(origin: HubOrigin) -> str:
    """``0+g<12 hex>``: a PEP 440 local version naming the commit (two commits, two versions)."""
    return f"0+g{origin.commit[:12]}"


def base_reference(config_files: Mapping[str, Any], origin: HubOrigin) -> tuple[str | None, str | None]:
    """``(base id, base revision)`` the adapter states: what to fetch the base's ``config.json`` from.

    The foreign config's ``base_model_name_or_path`` (PEFT) or ``model_name`` (``adapters``), else the
    card's ``base_model``; the revision only when PEFT recorded a 40-hex commit.
    """
    cfg = config_files.get(FOREIGN_CONFIG)
    if not isinstance(cfg, dict):
        fusion = config_files.get(FUSION_CONFIG)
        cfg = fusion if isinstance(fusion, dict) else {}
    stated = cfg.get("base_model_name_or_path") or cfg.get("model_name")
    base_id = stated if isinstance(stated, str) and is_repo_id(stated) else None
    if base_id is None and origin.card_data:
        card = origin.card_data.get("base_model")
        card = card[0] if isinstance(card, list) and len(card) == 1 else card
        base_id = card if isinstance(card, str) and is_repo_id(card) else None
    revision = cfg.get("revision")
    return base_id, revision if isinstance(revision, str) and COMMIT_RE.fullmatch(revision) else None


def derive_manifest(config_files: Mapping[str, Any], files: Sequence[FileEntry], origin: HubOrigin,
                    base_config: Mapping[str, Any] | None = None, tensor_names: TensorNames | None = None) -> Manifest:
    """The manifest of the repo described by its parsed config files (paths relative to the subfolder),
    every file it holds (``files``) and ``origin``; ``base_config`` is the base's parsed ``config.json``;
    ``tensor_names`` returns the tensor names of the weights file, called only when the config alone does not
    settle the placement (a PEFT target that also matches BERT's ``pooler.dense``: see
    :func:`~adapterhub.manifest.peft_targets.peft_placement`).

    Raises :class:`SchemaError` (naming the key) for a config adapterhub cannot describe,
    :class:`IntegrityError` when a stated ``adapterhub.json`` lists other files than the repo holds,
    :class:`NotFoundError` when there is nothing to derive from or the base's config is needed.
    """
    where = str(origin)
    if not COMMIT_RE.fullmatch(origin.commit):
        raise SchemaError(where, [SchemaProblem("/revision", f"{origin.commit!r} is not a 40-hex commit; "
                                                             "resolve the revision before deriving")])
    if MANIFEST_FILENAME in config_files:
        return _stated_manifest(config_files[MANIFEST_FILENAME], files, where)
    if FUSION_CONFIG in config_files:
        return _fusion_manifest(config_files[FUSION_CONFIG], files, origin, base_config)
    if FOREIGN_CONFIG not in config_files:
        raise NotFoundError(f"{where}: neither {MANIFEST_FILENAME} nor {FOREIGN_CONFIG}; not an adapter repo "
                            "adapterhub can describe", hint="pass the subfolder that holds the adapter (hf:ORG/REPO:DIR)")
    cfg = config_files[FOREIGN_CONFIG]
    if not isinstance(cfg, dict):
        raise SchemaError(f"{where}: {FOREIGN_CONFIG}", [SchemaProblem(
            "/", f"adapter_config.json is a JSON {type(cfg).__name__}, not an object")])
    layout = "peft" if "peft_type" in cfg else "adapters-library"
    base_id, base_revision = base_reference(config_files, origin)
    base = _base_facts(_need_base(base_config, base_id, base_revision, where), base_id, base_revision, where)
    if layout == "peft":
        method, config, head_type = _from_peft(cfg, base, base_config, tensor_names)
        task_type = PEFT_TASKS.get(str(cfg.get("task_type")))
    else:
        method, config, head_type = _from_library(cfg, config_files.get(HEAD_CONFIG), base, where)
        task_type = None
    names = {f.path for f in files}
    weights = [w for w in LAYOUT_WEIGHTS[layout] if w in names]
    if not weights:
        raise NotFoundError(f"{where}: no weights file ({' or '.join(LAYOUT_WEIGHTS[layout])}) next to "
                            f"{FOREIGN_CONFIG}")
    if head_type is not None and layout == "adapters-library" and not names & set(LAYOUT_HEADS):
        raise NotFoundError(f"{where}: {HEAD_CONFIG} names a head but no head weights are listed")
    task = _task(origin.card_data or {}, task_type or HEAD_TASKS.get(head_type or ""), origin)
    doc = _document(origin, method, config, base, files, weights[0], task, layout)
    if head_type is not None:
        doc["head"] = {"type": head_type}
    return parse_manifest(doc, f"{where} (derived manifest)")


def derived_reference(manifest: Manifest) -> str | None:
    """``hf:ORG/REPO@<commit>[:SUBFOLDER]`` of a manifest derived from a Hub repo, None for any other: how a
    composition over it names it (a derived manifest is in no index, so only the reference finds it again)."""
    derived = manifest.extensions.get("x-adapterhub-derived")
    if not isinstance(derived, dict) or derived.get("from") != "hf":
        return None
    source = next((s for s in manifest.sources or () if isinstance(s, HfSource)), None)
    if source is None:
        return None
    return str(HubReference(source.repo_id, source.revision, source.subfolder))


def member_origin(origin: HubOrigin, member: str) -> HubOrigin:
    """Where a fusion layer's member lives: the folder beside the fusion's named as the library names the
    member (``save_all_adapters`` writes ``<dir>/<name>``, ``save_all_adapter_fusions`` ``<dir>/<a,b>``)."""
    parent = origin.subfolder.rsplit("/", 1)[0] if origin.subfolder and "/" in origin.subfolder else None
    return HubOrigin(origin.repo_id, origin.commit, f"{parent}/{member}" if parent else member, origin.endpoint)


def _fusion_manifest(meta: Any, files: Sequence[FileEntry], origin: HubOrigin,
                     base_config: Mapping[str, Any] | None) -> Manifest:
    """An ``adapters``-library fusion layer; its members are the adapters in the sibling folders it names, at
    the same commit (dependencies pinned to their derived versions)."""
    where = f"{origin}: {FUSION_CONFIG}"
    names = meta.get("adapter_names") if isinstance(meta, dict) else None
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise SchemaError(where, [SchemaProblem("/adapter_names", "missing, empty or not a list of adapter names")])
    cfg = meta.get("config") or {}
    if not isinstance(cfg, dict):
        raise SchemaError(where, [SchemaProblem("/config", "not an object")])
    base_id, base_revision = base_reference({FUSION_CONFIG: meta}, origin)
    base = _base_facts(_need_base(base_config, base_id, base_revision, str(origin)), base_id, base_revision, str(origin))
    if isinstance(meta.get("model_type"), str) and meta["model_type"] != base["model_type"]:
        raise SchemaError(where, [SchemaProblem(
            "/model_type", f"{meta['model_type']!r}, but the base's config.json says {base['model_type']!r}")])
    weights = [w for w in FUSION_WEIGHTS if w in {f.path for f in files}]
    if not weights:
        raise NotFoundError(f"{origin}: no fusion weights ({' or '.join(FUSION_WEIGHTS)}) next to {FUSION_CONFIG}")
    members = {derived_name(member_origin(origin, n)): member_origin(origin, n).subfolder for n in names}
    if len(members) != len(names):
        raise SchemaError(where, [SchemaProblem("/adapter_names", f"{names} name one member twice")])
    doc = _document(origin, "fusion", fusion_config(cfg, list(members)), base, files, weights[0],
                    _task(origin.card_data or {}, None, origin), layout="adapters-library")
    doc["dependencies"] = [{"name": m, "spec": f"=={derived_version(origin)}", "role": "member"} for m in members]
    doc["x-adapterhub-derived"]["members"] = members
    return parse_manifest(doc, f"{origin} (derived manifest)")


def _need_base(base_config: Mapping[str, Any] | None, base_id: str | None, base_revision: str | None,
               where: str) -> Mapping[str, Any]:
    if base_config is None:
        raise NotFoundError(f"{where}: deriving a manifest needs the base model's config.json "
                            f"({base_id or 'base id unknown'}{'@' + base_revision if base_revision else ''}) for its "
                            "shape facts", hint="fetch the base's config.json and pass it as base_config")
    if not isinstance(base_config, Mapping):
        raise SchemaError(f"{where}: base config.json", [SchemaProblem("/", "not a JSON object")])
    return base_config


def _document(origin: HubOrigin, method: str, config: dict[str, Any], base: dict[str, Any],
              files: Sequence[FileEntry], weights: str, task: dict[str, Any], layout: str) -> dict[str, Any]:
    """The derived manifest document (no head, no dependencies: the caller adds those)."""
    card = origin.card_data or {}
    return {
        "schema_version": CURRENT_SCHEMA_VERSION, "name": derived_name(origin), "version": derived_version(origin),
        "description": f"{method} adapter for {base['id']}, derived from the Hub repo {origin.repo_id} "
                       f"at commit {origin.commit}" + (f" (folder {origin.subfolder})" if origin.subfolder else ""),
        "license": _license(card.get("license")), "authors": [origin.repo_id.split("/")[0]],
        "task": task, "base_model": base, "adapter": {"method": method, "config": config},
        "files": [_entry(f, weights) for f in sorted(files, key=lambda f: f.path)],
        "sources": [{"type": "hf", "repo_id": origin.repo_id, "revision": origin.commit,
                     **({"subfolder": origin.subfolder} if origin.subfolder else {}),
                     **({"endpoint": origin.endpoint} if origin.endpoint else {})}],
        "x-adapterhub-derived": {"from": "hf", "layout": layout},
    }


def _stated_manifest(data: Any, files: Sequence[FileEntry], where: str) -> Manifest:
    """The repo's own ``adapterhub.json``, once its files are exactly the ones the repo holds."""
    manifest = parse_manifest(data, f"{where}: {MANIFEST_FILENAME}")
    stated = {f.path: f for f in manifest.files}
    listed = {f.path: f for f in files if f.path != MANIFEST_FILENAME and (f.path not in REPO_FILES or f.path in stated)}
    for path in sorted(set(stated) | set(listed)):
        mine, theirs = stated.get(path), listed.get(path)
        if mine is None:
            raise IntegrityError(f"{where}: {path} is in the repo but not in its {MANIFEST_FILENAME}",
                                 hint="the manifest and the repo disagree; publish them together")
        if theirs is None:
            raise IntegrityError(f"{where}: {MANIFEST_FILENAME} lists {path}, which the repo does not hold")
        if (mine.sha256, mine.size) != (theirs.sha256, theirs.size):
            raise IntegrityError(f"{where}: {path} is {theirs.size} bytes with sha256 {theirs.sha256} in the repo, "
                                 f"but {MANIFEST_FILENAME} says {mine.size} bytes with sha256 {mine.sha256}")
    return manifest


def _base_facts(config: Mapping[str, Any], base_id: str | None, revision: str | None, where: str) -> dict[str, Any]:
    model_type = config.get("model_type")
    hidden = config_int(config, *HIDDEN_SIZE_KEYS)
    # encoder_layers: BART-style configs saved by transformers 5 state no num_hidden_layers (an alias there)
    layers = config_int(config, *LAYER_COUNT_KEYS, "encoder_layers")
    fam = find_family(model_type) if isinstance(model_type, str) else None
    towers = fam.tower_counts(config) if fam is not None else None
    if fam is not None and towers is not None:  # CLIP: the first tower's width, every tower's layers
        hidden, layers = config_int(fam.tower_config(config, fam.stacks[0]), *HIDDEN_SIZE_KEYS), sum(towers)
    if not isinstance(model_type, str) or hidden is None or layers is None:
        raise SchemaError(f"{where}: base config.json", [SchemaProblem(
            "/", "needs model_type, a hidden size (hidden_size, d_model, n_embd or dim) and a layer count "
                 "(num_hidden_layers, num_layers, n_layer, n_layers or encoder_layers); a model of several towers "
                 "states them per tower (CLIP: text_config, vision_config)")])
    base: dict[str, Any] = {"id": base_id or "unknown", "model_type": model_type, "hidden_size": hidden,
                            "num_hidden_layers": layers}
    if config.get("is_encoder_decoder") or "num_decoder_layers" in config or "decoder_layers" in config:
        base["num_decoder_layers"] = config_int(config, "num_decoder_layers", "decoder_layers") or layers
    if revision:
        base["revision"] = revision
    return base


def _from_peft(cfg: dict[str, Any], base: dict[str, Any], base_config: Mapping[str, Any],
               tensor_names: TensorNames | None) -> tuple[str, dict[str, Any], str | None]:
    method = peft_method(cfg)
    check_peft_config(cfg)
    counts = family_of(base["model_type"]).tower_counts(base_config) or (
        base["num_hidden_layers"], *((base["num_decoder_layers"],) if base.get("num_decoder_layers") else ()))
    targets, leave_out, feedforward, scalars = peft_placement(cfg, base["model_type"], base_config, counts,
                                                              tensor_names)
    config = {**peft_scalars(cfg), "target_modules": targets}
    if scalars:
        ranks, folded = lora_ranks(cfg, scalars)
        config.update(ranks)
        if folded:
            config.pop("use_rslora", None)
    if method == "ia3":
        config["feedforward_modules"] = feedforward
    if leave_out:
        config["leave_out"] = leave_out
    head = None
    if cfg.get("modules_to_save"):
        head = PEFT_HEADS.get(str(cfg.get("task_type")))
        if head is None:
            raise peft_unsupported("/modules_to_save", f"modules {cfg['modules_to_save']!r} are saved whole, but "
                                   f"task_type {cfg.get('task_type')!r} does not say which head they are")
    return method, config, head


def _from_library(meta: dict[str, Any], head_meta: Any, base: dict[str, Any], where: str
                  ) -> tuple[str, dict[str, Any], str | None]:
    cfg = meta.get("config")
    if not isinstance(cfg, dict):
        raise SchemaError(f"{where}: {FOREIGN_CONFIG}", [SchemaProblem("/config", "missing or not an object")])
    stated_type = meta.get("model_type")
    if isinstance(stated_type, str) and stated_type != base["model_type"]:
        raise SchemaError(f"{where}: {FOREIGN_CONFIG}", [SchemaProblem(
            "/model_type", f"{stated_type!r}, but the base's config.json says {base['model_type']!r}")])
    arch = cfg.get("architecture") or "bottleneck"
    source = f"{where}: {FOREIGN_CONFIG}"
    if arch == "bottleneck":
        method, config = bottleneck_config(cfg, "version" in meta, source)
    elif arch == "lora":
        method, config = lora_config(cfg, meta, family_of(base["model_type"], source, "/model_type").library_lora_locations)
    elif arch == "prefix_tuning":
        method, config = "prefix_tuning", flat_config(prefix_config(cfg))
    else:
        raise SchemaError(source, [SchemaProblem("/config/architecture", f"{arch!r} adapters of the adapters "
                                                 "library are not supported (bottleneck, Compacter, LoRA, IA3 and "
                                                 "prefix tuning are)")])
    head = None
    if head_meta is not None:
        head_cfg = head_meta.get("config") if isinstance(head_meta, dict) else None
        kind = head_cfg.get("head_type") if isinstance(head_cfg, dict) else None
        head = LIBRARY_HEADS.get(str(kind)) if kind else None
        if head is None:
            raise SchemaError(f"{where}: {HEAD_CONFIG}", [SchemaProblem(
                "/config/head_type", f"head {kind!r} cannot be derived; convert the directory with `adapterhub init`")])
    return method, config, head


def _entry(f: FileEntry, weights: str) -> dict[str, Any]:
    name = f.path.rsplit("/", 1)[-1]
    if f.path == weights:
        role = "weights"
    elif name in LAYOUT_HEADS:
        role = "head"
    else:
        role = guess_role(f.path)
        role = "other" if role in ("weights", "head") else role  # optimizer states, a second weights format
    return {"path": f.path, "size": f.size, "sha256": f.sha256, "role": role}


def _task(card: Mapping[str, Any], fallback: str | None, origin: HubOrigin) -> dict[str, Any]:
    task_type = PIPELINE_TASKS.get(str(card.get("pipeline_tag"))) or fallback or "other"
    task: dict[str, Any] = {"type": task_type, "name": origin.repo_id.split("/")[-1][:200]}
    datasets = card.get("datasets")
    if isinstance(datasets, list) and len(datasets) == 1 and isinstance(datasets[0], str) and datasets[0]:
        task["dataset"] = datasets[0][:300]
    language = card.get("language")
    language = language[0] if isinstance(language, list) and len(language) == 1 else language
    if isinstance(language, str) and re.fullmatch(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*", language):
        task["language"] = language
    return task


def _license(value: Any) -> str:
    """The card's license when it is an SPDX-like id (``other``/``unknown`` say nothing: NOASSERTION)."""
    if isinstance(value, str) and value not in ("other", "unknown") and len(value) <= 200 \
            and LICENSE_RE.fullmatch(value):
        return value
    return "NOASSERTION"
