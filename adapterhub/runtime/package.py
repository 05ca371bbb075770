"""An adapter in memory, whatever directory format it came from, and our on-disk format.

``read_adapter_dir`` reads an adapterhub directory (``adapterhub.json`` + safetensors, every file
checked against the manifest's size and sha256 before it is parsed) or, through
:mod:`adapterhub.interop`, an ``adapters``-library or PEFT directory. ``write_adapter_dir`` writes
``adapter.safetensors`` (+ ``head.safetensors``) and then the manifest with sizes and hashes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import IntegrityError, NotFoundError
from ..manifest.io import MANIFEST_FILENAME, load_manifest, manifest_to_dict, parse_manifest, write_manifest
from ..manifest.types import Manifest
from .heads import HEAD_FILE
from .safetensors_io import read_safetensors, write_safetensors

WEIGHTS_FILE = "adapter.safetensors"


@dataclass
class BaseFacts:
    """What an adapter says about its base model (checked before anything is attached)."""

    model_type: str
    hidden_size: int
    num_hidden_layers: int
    fingerprint: str | None = None
    id: str | None = None
    revision: str | None = None


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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


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
    bm = manifest.base_model
    return AdapterPackage(
        method=manifest.adapter.method,
        config=manifest_to_dict(manifest)["adapter"]["config"],
        tensors=read_safetensors(weights),
        base=BaseFacts(bm.model_type, bm.hidden_size, bm.num_hidden_layers, bm.fingerprint, bm.id, bm.revision),
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
                      dependencies: list[dict[str, Any]] | None = None) -> Path:
    """Write ``pkg`` as an adapterhub directory; returns the manifest path."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    write_safetensors(pkg.tensors, out / WEIGHTS_FILE)
    files.append({"path": WEIGHTS_FILE, "size": (out / WEIGHTS_FILE).stat().st_size,
                  "sha256": sha256_file(out / WEIGHTS_FILE), "role": "weights"})
    if pkg.head:
        write_safetensors(pkg.head, out / HEAD_FILE)
        files.append({"path": HEAD_FILE, "size": (out / HEAD_FILE).stat().st_size,
                      "sha256": sha256_file(out / HEAD_FILE), "role": "head"})
    base: dict[str, Any] = {"id": pkg.base.id or "unknown", "model_type": pkg.base.model_type,
                            "hidden_size": pkg.base.hidden_size, "num_hidden_layers": pkg.base.num_hidden_layers}
    if pkg.base.revision:
        base["revision"] = pkg.base.revision
    if pkg.base.fingerprint:
        base["fingerprint"] = pkg.base.fingerprint
    dtypes = {str(t.dtype).removeprefix("torch.") for t in pkg.tensors.values()}
    adapter: dict[str, Any] = {"method": pkg.method, "config": pkg.config}
    if len(dtypes) == 1 and next(iter(dtypes)) in ("float32", "float16", "bfloat16"):
        adapter["dtype"] = next(iter(dtypes))
    doc: dict[str, Any] = {
        "schema_version": "1.0", "name": name, "version": version,
        "description": description or f"{pkg.method} adapter {name} for {base['id']}",
        "license": license, "authors": list(authors),
        "task": task or {"type": _task_type(pkg.head_type), "name": name},
        "base_model": base, "adapter": adapter, "files": files,
    }
    if dependencies:
        doc["dependencies"] = list(dependencies)
    if pkg.head_type:
        doc["head"] = {"type": pkg.head_type, **({"num_labels": pkg.num_labels} if pkg.num_labels else {})}
    manifest = parse_manifest(doc, str(out / MANIFEST_FILENAME))
    return write_manifest(manifest, out / MANIFEST_FILENAME)


def _task_type(head_type: str | None) -> str:
    return {"classification": "text-classification", "multilabel-classification": "text-classification",
            "token-classification": "token-classification", "regression": "regression",
            "question-answering": "question-answering", "lm": "language-modeling"}.get(head_type or "", "feature-extraction")
