"""Our directory format: ``adapterhub.json`` + ``adapter.safetensors`` (+ ``head.safetensors``).

Reading checks every file against the manifest's size and sha256 before it is parsed. Writing puts
the weights and then the manifest (with sizes and hashes) in a staging directory that replaces the
target at the end, so a failure leaves the target as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import IntegrityError, NotFoundError
from ...fileio import sha256_file, staged_directory
from ...manifest.io import (
    MANIFEST_FILENAME,
    load_manifest,
    manifest_to_dict,
    parse_manifest,
    schema_version_for,
    write_manifest,
)
from ...manifest.types import FileEntry, Manifest
from ..heads import HEAD_FILE
from ..package import ADAPTER_FILES, WEIGHTS_FILE, AdapterPackage, BaseFacts
from ..safetensors_io import read_safetensors, write_safetensors


def _verified(directory: Path, manifest: Manifest, role: str, default: str) -> Path | None:
    entries = [f for f in manifest.files if f.role == role] or [f for f in manifest.files if f.path == default]
    return verified_file(directory, entries[0]) if entries else None


def verified_file(directory: Path, entry: FileEntry) -> Path:
    """``directory/entry.path`` once it exists with the manifest's size and sha256 (typed error naming it)."""
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


def read_ours(directory: Path, manifest: Manifest | None = None) -> AdapterPackage:
    """Our layout: the manifest (``manifest``: already loaded from ``directory``) and our tensor names."""
    manifest = manifest or load_manifest(directory)
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
        "schema_version": schema_version_for(dependencies), "name": name, "version": version,
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
