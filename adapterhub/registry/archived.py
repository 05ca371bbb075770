"""Import the archived AdapterHub index (``adapters/<org>/*.yaml``) into manifests and index entries.

Every entry and every one of its versions becomes a release; nothing is dropped silently: fields with
no home in the manifest go into ``x-adapterhub-v1``, and every lossy decision is listed in the report.
The legacy artifacts are zip archives of pickle weights, so each release's bytes are described by an
``archive`` source (url + the sha256 the archive pinned); ``files`` stays empty until a pull converts
the archive into safetensors (see docs/manifest.md).

Decisions, documented here because users will ask:
- Names: the file stem, PEP 503-normalised; entries from orgs other than ``ukp`` get the org as a
  prefix. Stems longer than 64 characters are cut and suffixed with 8 hex of their sha256.
- Versions: PEP 440 versions ("1", "2") are kept. Labels that are not PEP 440 ("nd", "wd",
  "AdapterFusion", site names) become local versions: the entry's default ``1+<label>``, the others
  ``0+<label>``, so a bare name resolves to the archived default. The original label is kept.
- Dependencies written ``<task>/<subtask>@<org>`` resolve to the entry of that org, task, subtask and
  base model, preferring the Pfeiffer architecture (the archived index's own default rule), among the
  entries that are listed (a refused entry is never a dependency).
- Nothing is listed that cannot be pulled: a version whose link is a web page is rewritten to the file
  URL or refused (:mod:`.archived_urls`), one without a sha256 pin is refused, an entry whose
  architecture our runtime cannot represent is refused, and a name already held by another adapter in
  the target index (the bundled samples, say) is refused rather than merged into it. Every refusal is
  in the report with its reason.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.version import InvalidVersion, Version

from ..errors import AdapterHubError, SchemaError
from ..manifest import CURRENT_SCHEMA_VERSION, Manifest, parse_manifest
from ..manifest.adapters_config import bottleneck_config
from ..names import normalize_name
from .archived_urls import Refused, download_url, sha256_pin
from .entries import parse_entry_file
from .layout import entry_path
from .writer import add_releases, init_index, rebuild_search

KNOWN_BASES: dict[str, tuple[int, int, int | None]] = {
    # model name -> (hidden_size, num_hidden_layers, num_decoder_layers), from each model's published config.json
    # (encoder-decoder models: encoder_layers and decoder_layers; layer indices are global, decoder after encoder)
    "bert-base-uncased": (768, 12, None), "bert-base-multilingual-cased": (768, 12, None),
    "bert-base-multilingual-uncased": (768, 12, None), "aubmindlab/bert-base-arabert": (768, 12, None),
    "distilbert-base-uncased": (768, 6, None), "roberta-base": (768, 12, None), "roberta-large": (1024, 24, None),
    "xlm-roberta-base": (768, 12, None), "xlm-roberta-large": (1024, 24, None), "gpt2": (768, 12, None),
    "facebook/bart-base": (768, 6, 6), "facebook/bart-large": (1024, 12, 12),
    "facebook/mbart-large-cc25": (1024, 12, 12),
}
PRESET_ARCHITECTURES = ("pfeiffer", "houlsby")
"""``config.using`` values that are our bottleneck variants; any other names ``architectures/<using>.yaml``."""

TASK_TYPES: dict[str, str] = {
    "nli": "text-classification", "sts": "text-classification", "sentiment": "text-classification",
    "lingaccept": "text-classification", "argument": "text-classification", "dialect": "text-classification",
    "formality_classify": "text-classification", "qa": "question-answering", "rc": "multiple-choice",
    "comsense": "multiple-choice", "sum": "summarization", "mt": "translation", "lm": "language-modeling",
    "ner": "token-classification", "pos": "token-classification", "chunk": "token-classification",
    "wikiann": "token-classification",
}

HEAD_TYPES: dict[str, str] = {
    "text-classification": "classification", "token-classification": "token-classification",
    "question-answering": "question-answering", "multiple-choice": "multiple-choice",
    "summarization": "lm", "translation": "lm", "language-modeling": "lm",
}

MAPPED_FIELDS = {"type", "task", "subtask", "model_type", "model_name", "author", "config", "default_version",
                 "files", "description", "citation", "dependencies", "hidden_size", "prediction_head"}


@dataclass(frozen=True)
class Refusal:
    """One archived version (``version`` = its label) or whole entry (``version`` None) left out, and why."""

    key: str
    version: str | None
    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.key}{'' if self.version is None else ' ' + repr(self.version)}: {self.reason}: {self.detail}"

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "version": self.version, "reason": self.reason, "detail": self.detail}


@dataclass
class ImportReport:
    """What an import listed (``entries``, ``versions``), refused (by reason) and could not read (``failures``)."""

    entries: int = 0
    versions: int = 0
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)

    def refused_by_reason(self) -> dict[str, int]:
        """Refused versions per reason (an entry refused as a whole counts each of its versions)."""
        counts: dict[str, int] = {}
        for r in self.refused:
            counts[r.reason] = counts.get(r.reason, 0) + 1
        return dict(sorted(counts.items()))

    def to_json(self) -> dict[str, Any]:
        return {"entries": self.entries, "versions": self.versions, "notes": self.notes, "failures": self.failures,
                "refused": [r.to_json() for r in self.refused], "refused_by_reason": self.refused_by_reason()}


def legacy_name(org: str, stem: str) -> str:
    """Our name for an archived entry ``<org>/<stem>``."""
    base = normalize_name(stem if org == "ukp" else f"{org}-{stem}").strip("-")
    base = re.sub(r"-{2,}", "-", base)
    if len(base) > 64:
        digest = hashlib.sha256(f"{org}/{stem}".encode()).hexdigest()[:8]
        base = base[:55].rstrip("-") + "-" + digest
    return base


def _local_label(label: str) -> str:
    text = re.sub(r"[^a-z0-9]+", ".", label.lower()).strip(".")
    return text or "x"


def map_versions(labels: list[str], default: str) -> dict[str, str]:
    """Legacy version labels → PEP 440 versions (see module docstring)."""
    out: dict[str, str] = {}
    for label in labels:
        try:
            Version(label)
            out[label] = label
            continue
        except InvalidVersion:
            pass
        out[label] = f"{1 if label == default else 0}+{_local_label(label)}"
    if len({Version(v) for v in out.values()}) != len(out):
        raise AdapterHubError(f"version labels {labels} collide after mapping to PEP 440")
    return out


def _load_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping, strictly: safe types only, no duplicate keys, no aliases (an alias bomb expands
    exponentially once the data is walked), and every parser failure a typed error."""
    import yaml

    class _NoDupLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
            if self.check_event(yaml.AliasEvent):
                raise AdapterHubError(f"{path}: YAML aliases (*name) are not accepted in index files")
            return super().compose_node(parent, index)

    def construct_mapping(loader, node, deep=False):
        keys = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in keys:
                raise AdapterHubError(f"{path}: duplicate key {key!r}")
            keys.add(key)
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    _NoDupLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    try:
        with path.open(encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=_NoDupLoader)  # noqa: S506 - SafeLoader subclass
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise AdapterHubError(f"{path}: not valid UTF-8 YAML ({' '.join(str(exc).split())[:200]})") from None
    except RecursionError:  # PyYAML composes recursively; nesting this deep is never an index file
        raise AdapterHubError(f"{path}: YAML nested too deeply") from None
    if not isinstance(data, dict):
        raise AdapterHubError(f"{path}: not a YAML mapping")
    return data


def _language(code: str) -> str | None:
    tag = code.strip().replace("_", "-").lower()
    return tag if re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]{2,8})*", tag) else None


def _subtask_dataset(source: Path, kind: str, task: str, subtask: str) -> str | None:
    path = source / "subtasks" / kind / f"{task}_{subtask}.yaml"
    if path.exists():
        data = _load_yaml(path)
        if data.get("hf_datasets_id"):
            return str(data["hf_datasets_id"])
    return None


@dataclass
class _Legacy:
    org: str
    stem: str
    path: Path
    data: dict[str, Any]
    name: str
    files: list[dict[str, Any]] = field(default_factory=list)
    """The versions that can be pulled (url rewritten to a file URL, sha256 lower-case), set by screening."""
    adapter: tuple[str, dict[str, Any], dict[str, Any] | None] | None = None

    @property
    def key(self) -> str:
        return f"{self.org}/{self.stem}"


def _pick_dependency(key: str, entry: _Legacy, by_name: dict[str, _Legacy], report: ImportReport) -> str | None:
    match = re.fullmatch(r"(?P<task>[^/@]+)/(?P<subtask>[^/@]+)@(?P<org>[^/@]+)", key.strip())
    if not match:
        report.notes.append(f"{entry.org}/{entry.stem}: dependency {key!r} has an unknown form; kept in x-adapterhub-v1")
        return None
    candidates = [c for c in by_name.values()
                  if c.org == match["org"] and str(c.data["task"]).strip() == match["task"]
                  and str(c.data["subtask"]).strip() == match["subtask"]
                  and c.data["model_name"] == entry.data["model_name"]]
    if not candidates:
        report.notes.append(f"{entry.org}/{entry.stem}: dependency {key!r} matches no archived entry for "
                            f"{entry.data['model_name']}; kept in x-adapterhub-v1")
        return None
    candidates.sort(key=lambda c: (c.data["config"].get("using") != "pfeiffer", len(c.data["config"]), c.name))
    if len(candidates) > 1:
        report.notes.append(f"{entry.org}/{entry.stem}: dependency {key!r} is ambiguous "
                            f"({', '.join(c.name for c in candidates)}); chose {candidates[0].name} (Pfeiffer first)")
    return candidates[0].name


def _adapter_config(cfg: dict[str, Any], source: Path, entry: _Legacy,
                    report: ImportReport) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
    """``(method, config, architecture config or None)`` of an entry's ``config`` block.

    ``using`` is a preset (our variant of the same name, with the entry's overrides) or names an
    architecture file whose BnConfig dict is converted like an ``adapters``-library config (its
    ``leave_out`` included, in the library's global numbering).
    """
    using = str(cfg["using"])
    overrides = {k: cfg[k] for k in ("non_linearity", "reduction_factor") if k in cfg}
    if using in PRESET_ARCHITECTURES:
        return "bottleneck", {"variant": using, **overrides}, None
    path = source / "architectures" / f"{using}.yaml"
    if not path.is_file():
        raise AdapterHubError(f"config.using {using!r} is neither a preset ({', '.join(PRESET_ARCHITECTURES)}) "
                              f"nor an architecture file ({path.relative_to(source).as_posix()})")
    architecture = _load_yaml(path).get("config")
    if not isinstance(architecture, dict):
        raise AdapterHubError(f"{path}: no 'config' mapping")
    method, config = bottleneck_config({**architecture, **overrides}, versioned=False,
                                       where=f"{path.relative_to(source).as_posix()}")
    if architecture.get("adapter_residual_before_ln"):
        report.notes.append(f"{entry.org}/{entry.stem}: architecture {using!r} sets adapter_residual_before_ln "
                            "without ln_after, where it changes nothing; not carried into the config")
    return method, config, architecture


def _manifests_for(entry: _Legacy, source: Path, by_name: dict[str, _Legacy], report: ImportReport) -> list[dict]:
    d = entry.data
    kind = str(d["type"])
    task = str(d["task"])
    if task != task.strip():
        report.notes.append(f"{entry.org}/{entry.stem}: task {task!r} has surrounding whitespace; stripped")
        task = task.strip()
    subtask = str(d["subtask"]).strip()
    model_name = str(d["model_name"])
    hidden, layers, decoder_layers = KNOWN_BASES.get(model_name, (d.get("hidden_size"), None, None))
    if d.get("hidden_size") is not None and hidden != d["hidden_size"]:
        raise AdapterHubError(f"hidden_size {d['hidden_size']} disagrees with {model_name}'s config ({hidden})")
    if layers is None:
        raise AdapterHubError(f"unknown base model {model_name!r}: add its shape to KNOWN_BASES")
    labels = [str(f["version"]) for f in d["files"]]
    default = str(d["default_version"])
    if default not in labels:
        raise AdapterHubError(f"default_version {default!r} is not one of its files' versions")
    versions = map_versions(labels, default)  # over every label, so a refused version never renumbers the rest
    listed = [versions[str(f["version"])] for f in entry.files]
    highest = max(listed, key=Version)
    if default not in {str(f["version"]) for f in entry.files}:
        report.notes.append(f"{entry.key}: archived default {default!r} is refused; a bare name resolves to {highest}")
    elif versions[default] != highest:
        report.notes.append(f"{entry.org}/{entry.stem}: archived default is {default!r} but the highest version "
                            f"is {highest}; a bare name resolves to the highest")
    if kind == "text_lang":
        task_obj = {"type": "language-modeling", "name": f"{task}/{subtask}"}
        lang = _language(task)
        if lang:
            task_obj["language"] = lang
    else:
        task_obj = {"type": TASK_TYPES.get(task, "other"), "name": f"{task}/{subtask}"}
        if task not in TASK_TYPES:
            report.notes.append(f"{entry.org}/{entry.stem}: task {task!r} has no known type; recorded as 'other'")
    dataset = _subtask_dataset(source, kind, task, subtask)
    if dataset:
        task_obj["dataset"] = dataset
    cfg = d["config"]
    method, config, architecture = entry.adapter or _adapter_config(cfg, source, entry, report)
    description = " ".join(str(d.get("description") or "").split()) or (
        f"AdapterHub {'language' if kind == 'text_lang' else 'task'} adapter for {task}/{subtask} "
        f"on {model_name} ({cfg['using']} architecture), imported from the archived AdapterHub index.")
    deps = []
    for dep in d.get("dependencies") or []:
        target = _pick_dependency(str(dep["key"]), entry, by_name, report)
        if target:
            item = {"name": target, "role": "stacked-under"}
            if dep.get("description"):
                item["description"] = str(dep["description"])[:500]
            deps.append(item)
    legacy_common = {k: v for k, v in d.items() if k not in MAPPED_FIELDS or k in ("type", "task", "subtask", "config")}
    legacy_common.update({"key": f"{entry.org}/{entry.stem}", "file": entry.path.name, "default_version": default,
                          "prediction_head": d.get("prediction_head"),
                          "dependencies": d.get("dependencies") or [],
                          **({"architecture_config": architecture} if architecture is not None else {}),
                          "note": "config comes from the index YAML; the archive's adapter_config.json is "
                                  "authoritative after conversion"})
    out = []
    for f in entry.files:
        label = str(f["version"])
        manifest: dict[str, Any] = {
            "schema_version": CURRENT_SCHEMA_VERSION,
            "name": entry.name,
            "version": versions[label],
            "description": description,
            "license": "NOASSERTION",
            "authors": [str(d["author"])],
            "task": task_obj,
            "base_model": {"id": model_name, "model_type": str(d["model_type"]), "hidden_size": hidden,
                           "num_hidden_layers": layers,
                           **({"num_decoder_layers": decoder_layers} if decoder_layers else {})},
            "adapter": {"method": method, "config": config},
            "files": [],
            "sources": [{"type": "archive", "url": f["url"], "sha256": f["sha256"], "format": "zip",
                         "layout": "adapters-library", **({"sha1": f["sha1"]} if f.get("sha1") else {})}],
            "x-adapterhub-v1": {**legacy_common, "version": label,
                                **{k: v for k, v in f.items() if k not in ("url", "sha256", "sha1", "version", "score")}},
        }
        if d.get("prediction_head"):
            manifest["head"] = {"type": HEAD_TYPES.get(task_obj["type"], "classification")}
        if deps:
            manifest["dependencies"] = deps
        if d.get("citation"):
            manifest["citation"] = str(d["citation"])
        if f.get("score") is not None:
            manifest["metrics"] = [{"dataset": dataset or f"{task}/{subtask}", "split": "unspecified",
                                    "name": "score", "value": float(f["score"]),
                                    "notes": "'score' as reported in the archived AdapterHub index"}]
        out.append(manifest)
    return out


def _refuse_entry(entry: _Legacy, reason: str, detail: str, report: ImportReport) -> None:
    labels = [str(f.get("version")) for f in entry.data.get("files") or [] if isinstance(f, dict)] or [None]
    report.refused.extend(Refusal(entry.key, label, reason, detail) for label in labels)


def _held_by_another(out: Path, entry: _Legacy) -> str | None:
    """The adapter already listed under ``entry.name`` in ``out`` when it is not this archived entry."""
    path = out / entry_path(entry.name)
    if not path.is_file():
        return None
    for e in parse_entry_file(path.read_bytes(), str(path), entry.name, validate=False):
        legacy = e.raw_manifest.get("x-adapterhub-v1")
        if not isinstance(legacy, dict) or legacy.get("key") != entry.key:
            where = f"archived entry {legacy.get('key')}" if isinstance(legacy, dict) else "an adapter of its own"
            return f"{entry.name} {e.version} ({where})"
    return None


def _screen(entry: _Legacy, source: Path, out: Path, report: ImportReport) -> bool:
    """Keep the versions that can be pulled and convert the architecture; False when nothing is listed."""
    held = _held_by_another(out, entry)
    if held is not None:
        _refuse_entry(entry, "name-collision", f"the name {entry.name!r} is already taken in {out} by {held}; "
                      "an import never adds versions to another adapter's name", report)
        return False
    try:
        entry.adapter = _adapter_config(entry.data["config"], source, entry, report)
    except SchemaError as exc:  # an architecture file our runtime cannot represent (e.g. invertible adapters)
        _refuse_entry(entry, "unsupported-architecture", str(exc), report)
        return False
    for f in entry.data["files"]:
        label = str(f["version"])
        try:
            url, note = download_url(str(f["url"]))
            pin = sha256_pin(f)
        except Refused as exc:
            report.refused.append(Refusal(entry.key, label, exc.reason, exc.detail))
            continue
        if note:
            report.notes.append(f"{entry.key} {label!r}: {note}")
        entry.files.append({**f, "url": url, "sha256": pin, **({"archived_url": f["url"]} if note else {})})
    return bool(entry.files)


def _convert_all(entries: dict[str, _Legacy], source: Path, report: ImportReport) -> dict[str, list[Manifest]]:
    """Every listed entry's manifests. An entry that fails to convert is dropped and the rest converted
    again, so no manifest keeps a dependency on it (failures are data errors: rare, and each costs a pass)."""
    while True:
        attempt = ImportReport()
        converted: dict[str, list[Manifest]] = {}
        for name, entry in entries.items():
            try:
                converted[name] = [parse_manifest(m, f"{entry.path}")
                                   for m in _manifests_for(entry, source, entries, attempt)]
            except (AdapterHubError, KeyError, TypeError, ValueError) as exc:
                attempt.failures.append(f"{entry.key}: {exc}")
        if not attempt.failures:
            report.notes.extend(attempt.notes)
            return converted
        report.failures.extend(attempt.failures)
        entries = {n: e for n, e in entries.items() if n in converted}


def import_adapterhub_index(source: str | Path, out: str | Path, *,
                            on_file: Callable[[int, int], None] | None = None) -> ImportReport:
    """Convert every archived entry under ``source/adapters`` into releases of the index at ``out``.

    ``on_file(done, total)`` is called after each archived YAML file is read and again after each is
    converted (``total`` counts both passes), for a progress bar. Versions that cannot be pulled are
    refused (``report.refused``, with reasons); entries that cannot be read are ``report.failures``.
    """
    source, out = Path(source), Path(out)
    report = ImportReport()
    files = sorted(p for p in (source / "adapters").glob("*/*") if p.suffix in (".yaml", ".yml"))
    if not files:
        raise AdapterHubError(f"{source}: no adapters/<org>/*.yaml files found")
    read: dict[str, _Legacy] = {}
    total, done = 2 * len(files), 0
    for path in files:
        if on_file is not None:
            on_file(done, total)
            done += 1
        org, stem = path.parent.name, path.stem
        try:
            data = _load_yaml(path)
        except AdapterHubError as exc:
            report.failures.append(str(exc))
            continue
        entry = _Legacy(org, stem, path, data, legacy_name(org, stem))
        if entry.name in read:
            _refuse_entry(entry, "name-collision", f"the name {entry.name!r} is also the name of "
                          f"{read[entry.name].key} in the same import", report)
            continue
        if len(normalize_name(stem if org == "ukp" else f"{org}-{stem}")) > 64:
            report.notes.append(f"{org}/{stem}: name shortened to {entry.name!r} (64-character limit)")
        read[entry.name] = entry
    if not (out / "config.json").exists():
        init_index(out, "adapterhub-archive", "Imported from the archived AdapterHub index")
    entries: dict[str, _Legacy] = {}
    for name, entry in read.items():  # first every entry's fate, so no dependency names a refused entry
        try:
            if _screen(entry, source, out, report):
                entries[name] = entry
        except (AdapterHubError, KeyError, TypeError, ValueError) as exc:
            report.failures.append(f"{entry.key}: {exc}")
    converted = _convert_all(entries, source, report)
    done = total - len(converted)  # files skipped above count as done
    for manifests in converted.values():
        if on_file is not None:
            on_file(done, total)
            done += 1
        add_releases(out, manifests, update_search=False)
        report.entries += 1
        report.versions += len(manifests)
    if on_file is not None:
        on_file(total, total)
    rebuild_search(out)
    return report
