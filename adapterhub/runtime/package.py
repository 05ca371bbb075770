"""An adapter in memory, whatever directory format it came from, and our on-disk format.

``read_adapter_dir`` reads an adapterhub directory (``adapterhub.json`` + safetensors, every file
checked against the manifest's size and sha256 before it is parsed) or, through
:mod:`adapterhub.interop`, an ``adapters``-library or PEFT directory. ``write_adapter_dir`` writes
``adapter.safetensors`` (+ ``head.safetensors``) and then the manifest with sizes and hashes, all in a
staging directory that replaces the target at the end (a failure leaves the target as it was).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import IntegrityError, NotFoundError
from ..fileio import sha256_file, staged_directory
from ..manifest.io import MANIFEST_FILENAME, load_manifest, manifest_to_dict, parse_manifest, write_manifest
from ..manifest.types import Manifest
from .heads import HEAD_FILE
from .safetensors_io import read_safetensors, write_safetensors

WEIGHTS_FILE = "adapter.safetensors"
ADAPTER_FILES = (WEIGHTS_FILE, HEAD_FILE)
"""The weight files ``write_adapter_dir`` owns: one left from an earlier save that this one does not write goes."""


@dataclass
class BaseFacts:
    """What an adapter says about its base model (checked before anything is attached)."""

    model_type: str
    hidden_size: int
    num_hidden_layers: int
    fingerprint: str | None = None
    id: str | None = None
    revision: str | None = None
    num_decoder_layers: int | None = None
    """Encoder-decoder bases: decoder layers, numbered globally after the encoder's (docs/manifest.md)."""

    @classmethod
    def of(cls, binding: Any, fingerprint: str | None = None, id: str | None = None,
           revision: str | None = None) -> BaseFacts:
        """The shape facts of a bound model (``adapterhub.runtime.arch.Binding``)."""
        return cls(binding.model_type, binding.hidden_size, binding.num_hidden_layers, fingerprint, id, revision,
                   binding.num_decoder_layers)

    @classmethod
    def from_manifest(cls, bm: Any) -> BaseFacts:
        """The facts a manifest's ``base_model`` states."""
        return cls(bm.model_type, bm.hidden_size, bm.num_hidden_layers, bm.fingerprint, bm.id, bm.revision,
                   bm.num_decoder_layers)

    def shape_differs(self, other: BaseFacts) -> bool:
        """True when the shape facts disagree (a decoder count only one side states is not a disagreement)."""
        if (self.model_type, self.hidden_size, self.num_hidden_layers) != (
                other.model_type, other.hidden_size, other.num_hidden_layers):
            return True
        return None not in (self.num_decoder_layers, other.num_decoder_layers) and \
            self.num_decoder_layers != other.num_decoder_layers

    def describe(self) -> str:
        """``model_type=t5 hidden_size=512 num_hidden_layers=6 [num_decoder_layers=6]`` for messages."""
        text = f"model_type={self.model_type} hidden_size={self.hidden_size} num_hidden_layers={self.num_hidden_layers}"
        return text + (f" num_decoder_layers={self.num_decoder_layers}" if self.num_decoder_layers else "")

    def to_json(self) -> dict[str, Any]:
        """The manifest's ``base_model`` object (``id`` is ``unknown`` when not known)."""
        out: dict[str, Any] = {"id": self.id or "unknown", "model_type": self.model_type,
                               "hidden_size": self.hidden_size, "num_hidden_layers": self.num_hidden_layers}
        for key in ("num_decoder_layers", "revision", "fingerprint"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out


@dataclass
class AdapterPackage:
    method: str
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    base: BaseFacts
    head: dict[str, torch.Tensor] = field(default_factory=dict)
    head_type: str | None = None
    num_labels: int | None = None
    name: str | None = None
    manifest: Manifest | None = None
    source: str = "<memory>"


def _verified(directory: Path, manifest: Manifest, role: str, default: str) -> Path | None:
    entries = [f for f in manifest.files if f.role == role] or [f for f in manifest.files if f.path == default]
    if not entries:
        return None
    entry = entries[0]
    path = directory / entry.path
    if not path.is_file():
        raise NotFoundError(f"{path}: listed in the manifest but missing")
    size = path.stat().st_size
    if size != entry.size:
        raise IntegrityError(f"{path}: {size} bytes, manifest says {entry.size}")
    digest = sha256_file(path)
    if digest != entry.sha256:
        raise IntegrityError(f"{path}: sha256 {digest} does not match the manifest's {entry.sha256}")
    return path


def read_ours(directory: Path) -> AdapterPackage:
    manifest = load_manifest(directory)
    weights = _verified(directory, manifest, "weights", WEIGHTS_FILE)
    if weights is None:
        raise NotFoundError(f"{directory}: the manifest lists no weights file ({WEIGHTS_FILE})")
    head_path = _verified(directory, manifest, "head", HEAD_FILE)
    return AdapterPackage(
        method=manifest.adapter.method,
        config=manifest_to_dict(manifest)["adapter"]["config"],
        tensors=read_safetensors(weights),
        base=BaseFacts.from_manifest(manifest.base_model),
        head=read_safetensors(head_path) if head_path else {},
        head_type=manifest.head.type if manifest.head else None,
        num_labels=manifest.head.num_labels if manifest.head else None,
        name=manifest.name, manifest=manifest, source=str(directory))


def read_adapter_dir(path: str | Path, binding: Any = None) -> AdapterPackage:
    """Read an adapter directory in any supported format (ours, ``adapters`` library, PEFT).

    Foreign formats name tensors by module path, so converting them needs the target ``binding``.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise NotFoundError(f"{directory}: not an adapter directory")
    if (directory / MANIFEST_FILENAME).is_file():
        return read_ours(directory)
    from ..interop import read_foreign_dir

    return read_foreign_dir(directory, binding)


def write_adapter_dir(pkg: AdapterPackage, directory: str | Path, *, name: str, version: str = "0.1.0",
                      description: str | None = None, license: str = "NOASSERTION",
                      authors: tuple[str, ...] = ("unknown",), task: dict[str, Any] | None = None,
                      dependencies: list[dict[str, Any]] | None = None, extra: dict[str, Any] | None = None) -> Path:
    """Write ``pkg`` as an adapterhub directory; returns the manifest path.

    The manifest is validated before any byte is written (with placeholder file hashes), and the files go
    to a staging directory beside ``directory`` that replaces it at the end, so a failure leaves
    ``directory`` as it was. ``extra`` adds top-level manifest properties (``metrics``, ``x-*``).
    """
    out = Path(directory)
    source = str(out / MANIFEST_FILENAME)
    payload = {WEIGHTS_FILE: ("weights", pkg.tensors), **({HEAD_FILE: ("head", pkg.head)} if pkg.head else {})}
    doc = _manifest_doc(pkg, name, version, description, license, authors, task, dependencies, extra)
    parse_manifest({**doc, "files": [{"path": p, "size": 0, "sha256": "0" * 64, "role": role}
                                     for p, (role, _) in payload.items()]}, source)
    with staged_directory(out, owned=(*ADAPTER_FILES, MANIFEST_FILENAME), last=(MANIFEST_FILENAME,)) as stage:
        files = []
        for path, (role, tensors) in payload.items():
            write_safetensors(tensors, stage / path)
            files.append({"path": path, "size": (stage / path).stat().st_size, "sha256": sha256_file(stage / path),
                          "role": role})
        write_manifest(parse_manifest({**doc, "files": files}, source), stage / MANIFEST_FILENAME)
    return out / MANIFEST_FILENAME


def _manifest_doc(pkg: AdapterPackage, name: str, version: str, description: str | None, license: str,
                  authors: tuple[str, ...], task: dict[str, Any] | None, dependencies: list[dict[str, Any]] | None,
                  extra: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest of ``pkg`` without its ``files``."""
    base = pkg.base.to_json()
    dtypes = {str(t.dtype).removeprefix("torch.") for t in pkg.tensors.values()}
    adapter: dict[str, Any] = {"method": pkg.method, "config": pkg.config}
    if len(dtypes) == 1 and next(iter(dtypes)) in ("float32", "float16", "bfloat16"):
        adapter["dtype"] = next(iter(dtypes))
    doc: dict[str, Any] = {
        "schema_version": "1.0", "name": name, "version": version,
        "description": description or f"{pkg.method} adapter {name} for {base['id']}",
        "license": license, "authors": list(authors),
        "task": task or {"type": _task_type(pkg.head_type), "name": name},
        "base_model": base, "adapter": adapter,
    }
    if dependencies:
        doc["dependencies"] = list(dependencies)
    if pkg.head_type:
        doc["head"] = {"type": pkg.head_type, **({"num_labels": pkg.num_labels} if pkg.num_labels else {})}
    return {**doc, **(extra or {})}


def _task_type(head_type: str | None) -> str:
    return {"classification": "text-classification", "multilabel-classification": "text-classification",
            "token-classification": "token-classification", "regression": "regression",
            "question-answering": "question-answering", "lm": "language-modeling"}.get(head_type or "", "feature-extraction")
