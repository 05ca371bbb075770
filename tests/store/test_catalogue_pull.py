"""An archived entry of the default catalogue pulls: resolved from the bundled index (no --index), its
archive fetched from an HTTP server against the pinned sha256 and converted, beside the samples."""

from __future__ import annotations

import io
import shutil
import zipfile

import pytest
from support.archived_fixtures import entry, pin, version, write_archive
from support.store_support import put_repo

from adapterhub import resources
from adapterhub.errors import IntegrityError
from adapterhub.registry import SearchQuery, open_index, search
from adapterhub.registry.archived import import_adapterhub_index
from adapterhub.store import pull

torch = pytest.importorskip("torch")


def legacy_adapter_zip() -> bytes:
    """A tiny archive in the old AdapterHub layout: adapter_config.json + pickled weights."""
    weights = io.BytesIO()
    torch.save({"bert.encoder.layer.0.output.adapters.ner.adapter_down.0.weight": torch.ones(48, 768)}, weights)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ner/adapter_config.json", b'{"config": {"reduction_factor": 16}, "name": "ner"}')
        zf.writestr("ner/pytorch_adapter.bin", weights.getvalue())
    return buf.getvalue()


@pytest.fixture
def catalogue(tmp_path, hub_server, cache, monkeypatch):
    """The bundled index plus one archived entry imported the way the catalogue is built, in its place."""
    data = legacy_adapter_zip()
    # tampered.zip is served with the bytes of ner.zip, which do not match version 2's pin
    commit = put_repo(hub_server, "archive/ner", {"ner.zip": data, "tampered.zip": data})
    url = f"{hub_server.endpoint}/archive/ner/resolve/{commit}/ner.zip"
    copy = tmp_path / "registry_index"
    shutil.copytree(resources.bundled_index_dir(), copy, ignore=shutil.ignore_patterns(".index.lock", "metadata"))
    src = write_archive(tmp_path / "archive", {"fabricated/bert-base-uncased_ner_tiny": entry([
        version("1", url, pin(data)), version("2", url.replace("ner.zip", "tampered.zip"), pin(data + b"x"))])})
    report = import_adapterhub_index(src, copy)
    assert report.failures == [] and report.refused == [] and report.versions == 2
    monkeypatch.setattr(resources, "bundled_index_dir", lambda: copy)
    monkeypatch.delenv("ADAPTERHUB_INDEX", raising=False)
    return data


def test_an_archived_entry_pulls_through_the_default_catalogue(catalogue):
    name = "fabricated-bert-base-uncased-ner-tiny"
    assert name in [r["name"] for r in search(open_index(), SearchQuery("ner tiny"))]
    got = pull(f"{name}==1")
    assert got.manifest.name == name and sorted(got.files) == ["adapter.safetensors", "adapter_config.json"]
    assert got.manifest.extensions["x-adapterhub-derived"]["from_archive_sha256"] == pin(catalogue)
    with pytest.raises(IntegrityError):
        pull(f"{name}==2")
    assert pull("sst2-houlsby").files  # the samples still come from the bundled mirror
