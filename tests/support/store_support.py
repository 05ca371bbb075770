"""Helpers for the store tests: adapter bytes, manifests, and a Hub server holding them.

The server is :class:`adapterhub.server.HubServer` on 127.0.0.1 (its fault plan reshapes downloads);
repositories are filled through its storage API (fast), and read by the store through the real
``huggingface_hub`` client (``get_hf_file_metadata``) and plain ``requests``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapterhub.manifest import HttpsSource, Manifest, parse_manifest
from adapterhub.server import FaultPlan, HubServer
from adapterhub.server.names import parse_repo_ref
from adapterhub.server.storage import AddFile
from adapterhub.store import FetchOptions

FAST = FetchOptions(connect_timeout=5, read_timeout=5, retries=3, backoff=0.01)


def safetensors_bytes(n_floats: int = 64, *, name: str = "w", seed: int = 1) -> bytes:
    """A valid single-tensor F32 safetensors file (built by hand: no torch, no numpy)."""
    data = bytes((i * 7 + seed) % 251 for i in range(n_floats * 4))
    header = json.dumps({"__metadata__": {"format": "pt"},
                         name: {"dtype": "F32", "shape": [n_floats], "data_offsets": [0, len(data)]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + data


def big_safetensors(nbytes: int) -> bytes:
    """A valid safetensors file of about ``nbytes`` (U8 data; fast to build at any size)."""
    data = (bytes(range(251)) * (nbytes // 251 + 1))[:nbytes]
    header = json.dumps({"w": {"dtype": "U8", "shape": [len(data)], "data_offsets": [0, len(data)]}}).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + data


def raw_safetensors(header: dict[str, Any] | bytes, data: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_for(files: dict[str, bytes], sources: list[dict[str, Any]] | None = None, *,
                 name: str = "toy-adapter", version: str = "1.0.0", **extra: Any) -> Manifest:
    doc = {
        "schema_version": "1.0", "name": name, "version": version, "description": "a test adapter",
        "license": "apache-2.0", "authors": ["tests"],
        "task": {"type": "text-classification", "name": "toy"},
        "base_model": {"id": "org/base", "revision": "b" * 40, "model_type": "bert", "hidden_size": 32,
                       "num_hidden_layers": 2},
        "adapter": {"method": "lora", "config": {"r": 4, "alpha": 8, "target_modules": ["q"]}},
        "files": [{"path": p, "size": len(b), "sha256": sha(b)} for p, b in files.items()],
        "sources": sources or [],
        **extra,
    }
    return parse_manifest(doc, "<test>")


def with_http_source(manifest: Manifest, base_url: str) -> Manifest:
    """The schema only allows https:// bases; tests on 127.0.0.1 use http://, set in code."""
    return dataclasses.replace(manifest, sources=(HttpsSource(base_url),))


@dataclass
class HubRepo:
    server: HubServer
    repo_id: str
    commit: str
    files: dict[str, bytes]

    @property
    def endpoint(self) -> str:
        return self.server.endpoint

    @property
    def plan(self) -> FaultPlan:
        assert self.server.fault_plan is not None
        return self.server.fault_plan

    def hf_source(self) -> dict[str, Any]:
        return {"type": "hf", "repo_id": self.repo_id, "revision": self.commit, "endpoint": self.endpoint}

    def manifest(self, files: dict[str, bytes] | None = None, **kw: Any) -> Manifest:
        """A manifest pinning ``files`` (default: what the repo holds) with this repo as its source."""
        return manifest_for(files or self.files, [self.hf_source()], **kw)

    def resolve_base(self) -> str:
        return f"{self.endpoint}/{self.repo_id}/resolve/{self.commit}/"


def put_repo(server: HubServer, repo_id: str, files: dict[str, bytes]) -> str:
    """Create ``repo_id`` holding ``files``; return the commit id."""
    ns, name = repo_id.split("/")
    ref = parse_repo_ref("model", ns, name)
    storage = server.storage
    if not storage.repo_exists(ref):
        storage.create_repo(ref)
    ops = [AddFile(path, storage.put_blob(body)) for path, body in files.items()]
    return storage.commit(ref, "main", ops, summary="add files").commit.oid


def dir_with(root: Path, files: dict[str, bytes]) -> Path:
    """A directory holding ``files`` by their paths (a local source with the right bytes)."""
    for path, body in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(body)
    return root


def leftovers(cache_root: Path) -> list[str]:
    """Anything in the cache that is not a finished blob, view or the gc lock (temp files, leases)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(cache_root):
        for n in dirnames + filenames:
            if n.startswith(".") and n != ".adapterhub-view.json":
                found.append(os.path.relpath(os.path.join(dirpath, n), cache_root))
    leases = cache_root / "leases"
    if leases.is_dir():
        found += [f"leases/{p.name}" for p in leases.iterdir()]
    return sorted(found)


def blobs(cache_root: Path) -> list[str]:
    d = cache_root / "blobs" / "sha256"
    return sorted(p.name for p in d.iterdir() if not p.name.startswith(".")) if d.is_dir() else []


def views(cache_root: Path) -> list[str]:
    d = cache_root / "adapters"
    if not d.is_dir():
        return []
    return sorted(f"{n.name}/{v.name}" for n in d.iterdir() if n.is_dir() for v in n.iterdir()
                  if not v.name.startswith("."))
