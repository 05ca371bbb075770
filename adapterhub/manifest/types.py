"""Typed mirror of ``schemas/adapter-manifest.v1.json``.

Field names equal JSON keys so conversion is mechanical (:mod:`adapterhub.manifest.convert`) and a
test can prove the schema and these types describe the same properties. Lists become tuples so a
manifest is immutable once loaded.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from ..names import HubReference, pinned_hub_reference
from ..records import frozen_record
from .configs import AdapterConfig


@frozen_record
class Task:
    """What the adapter was trained to do: task type and name, the dataset and language, the label names."""

    type: str
    name: str
    dataset: str | None = None
    language: str | None = None
    labels: tuple[str, ...] | None = None


@frozen_record
class BaseModel:
    """The frozen base the adapter was trained on: Hub id, pinned revision, shapes, weight fingerprint."""

    id: str
    model_type: str
    hidden_size: int
    num_hidden_layers: int
    revision: str | None = None
    fingerprint: str | None = None
    num_decoder_layers: int | None = None
    """Encoder-decoder bases: the decoder's layers, numbered after the encoder's."""

    @property
    def layers_text(self) -> str:
        """``12 layers``, or ``12 encoder + 12 decoder layers`` (for cards and listings)."""
        if self.num_decoder_layers:
            return f"{self.num_hidden_layers} encoder + {self.num_decoder_layers} decoder layers"
        return f"{self.num_hidden_layers} layers"


@frozen_record
class Adapter:
    """The method (``lora``, ``bottleneck``, ...) and its typed configuration."""

    method: str
    config: AdapterConfig
    dtype: str | None = None


@frozen_record
class Head:
    """A prediction head shipped with the adapter (type, labels, layers)."""

    type: str
    num_labels: int | None = None
    labels: tuple[str, ...] | None = None
    layers: int | None = None
    activation: str | None = None
    use_pooler: bool | None = None
    dropout: float | None = None


@frozen_record
class FileEntry:
    """One file of a release: its relative path, size and sha256 (checked on every pull)."""

    path: str
    size: int
    sha256: str
    role: str | None = None


@frozen_record
class Dependency:
    """Another adapter this one needs: a registry name with a version spec, or a pinned Hub reference."""

    name: str
    spec: str | None = None
    hub: str | None = None
    """``hf:ORG/REPO@<commit>[:SUBFOLDER]``: the adapter comes from that Hub repo, not from the index (format 1.1)."""
    manifest_sha256: str | None = None
    """For a ``hub`` dependency: the sha256 (``manifest_digest``) its manifest must have."""
    role: str | None = None
    description: str | None = None

    @property
    def reference(self) -> HubReference | None:
        """The pinned Hub reference of a ``hub`` dependency; None for a registry release."""
        return None if self.hub is None else pinned_hub_reference(self.hub)


@frozen_record
class Metric:
    """A measured result: dataset, split, metric name, value."""

    dataset: str
    split: str
    name: str
    value: float
    notes: str | None = None


@frozen_record
class HfSource:
    """Where the files are: a Hub repo at a pinned revision (optionally a subfolder and an endpoint)."""

    repo_id: str
    revision: str
    subfolder: str | None = None
    endpoint: str | None = None
    type: str = "hf"


@frozen_record
class HttpsSource:
    """Where the files are: a plain https base URL (``<base_url>/<path>``)."""

    base_url: str
    type: str = "https"


@frozen_record
class BundledSource:
    """Where the files are: the ``mirror/`` directory of the index that lists the release."""

    type: str = "bundled"


@frozen_record
class ArchiveSource:
    """Where the files are: inside a zip or tar archive with a known sha256 (legacy AdapterHub releases)."""

    url: str
    sha256: str
    format: str
    layout: str
    size: int | None = None
    sha1: str | None = None
    type: str = "archive"


Source = HfSource | HttpsSource | BundledSource | ArchiveSource
SOURCE_TYPES: dict[str, type] = {"hf": HfSource, "https": HttpsSource, "bundled": BundledSource, "archive": ArchiveSource}


@frozen_record
class Manifest:
    """One immutable release of an adapter: identity, base, method, files with hashes, and the rest."""

    schema_version: str
    name: str
    version: str
    description: str
    license: str
    authors: tuple[str, ...]
    task: Task
    base_model: BaseModel
    adapter: Adapter
    files: tuple[FileEntry, ...]
    head: Head | None = None
    dependencies: tuple[Dependency, ...] | None = None
    metrics: tuple[Metric, ...] | None = None
    citation: str | None = None
    sources: tuple[Source, ...] | None = None
    extensions: dict[str, Any] = field(default_factory=dict, compare=True)
    """``x-*`` properties (and, for a newer minor format, properties this version does not know)."""

    @property
    def id(self) -> str:
        """``name@version``, the identity of an immutable release."""
        return f"{self.name}@{self.version}"

    def file(self, path: str) -> FileEntry:
        for entry in self.files:
            if entry.path == path:
                return entry
        raise KeyError(path)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)
