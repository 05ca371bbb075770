"""The adapter manifest: typed, versioned, validated against ``schemas/adapter-manifest.v1.json``."""

from .configs import AdapterConfig, CompositionConfig, StatedConfig
from .io import (
    CURRENT_SCHEMA_VERSION,
    MANIFEST_FILENAME,
    SIGNATURE_FILENAME,
    atomic_write_text,
    dependency_digest,
    load_manifest,
    loads_manifest,
    manifest_digest,
    manifest_problems,
    manifest_to_dict,
    parse_manifest,
    schema_version_for,
    write_manifest,
)
from .types import (
    Adapter,
    ArchiveSource,
    BaseModel,
    BundledSource,
    Dependency,
    FileEntry,
    Head,
    HfSource,
    HttpsSource,
    Manifest,
    Metric,
    Source,
    Task,
)

__all__ = [
    "AdapterConfig", "CompositionConfig", "StatedConfig",
    "CURRENT_SCHEMA_VERSION", "MANIFEST_FILENAME", "SIGNATURE_FILENAME", "atomic_write_text", "dependency_digest", "load_manifest",
    "loads_manifest", "manifest_digest", "manifest_problems", "manifest_to_dict", "parse_manifest", "schema_version_for",
    "write_manifest",
    "Adapter", "ArchiveSource", "BaseModel", "BundledSource", "Dependency", "FileEntry", "Head", "HfSource",
    "HttpsSource", "Manifest", "Metric", "Source", "Task",
]
