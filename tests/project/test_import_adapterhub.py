"""The archived AdapterHub index (277 real entries, 486 versions) converts completely and validates, and the
default catalogue (the bundled index) is exactly that conversion beside the samples."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.paths import SHARED

from adapterhub.registry import SearchQuery, check_index, open_index, resolve, resolve_closure, search
from adapterhub.registry.archived import import_adapterhub_index, legacy_name, map_versions
from adapterhub.registry.layout import METADATA_DIR, MIRROR_DIR, SEARCH_FILE
from adapterhub.resources import bundled_index_dir

ARCHIVE = SHARED / "data" / "adapterhub-v2"
needs_archive = pytest.mark.skipif(not ARCHIVE.is_dir(), reason=f"shared data not present at {ARCHIVE}")
SAMPLE_RELEASES = {"sst2-houlsby": 1, "sst2-pfeiffer": 1, "sst2-lora": 1, "sst2-compacter": 2}


def test_version_mapping():
    assert map_versions(["1", "2"], "1") == {"1": "1", "2": "2"}
    assert map_versions(["nd", "wd"], "nd") == {"nd": "1+nd", "wd": "0+wd"}
    assert map_versions(["AdapterFusion"], "AdapterFusion") == {"AdapterFusion": "1+adapterfusion"}
    assert map_versions(["serverfault_com", "ux_stackexchange_com"], "ux_stackexchange_com")["serverfault_com"] == "0+serverfault.com"


def test_names():
    assert legacy_name("ukp", "bert-base-uncased_sentiment_sst-2_houlsby") == "bert-base-uncased-sentiment-sst-2-houlsby"
    long = legacy_name("martiansideofthemoon", "xlm-roberta-base_formality_classify_gyafc_pfeiffer")
    assert len(long) <= 64 and long.startswith("martiansideofthemoon-")


def _catalogue_files(root: Path) -> dict[str, bytes]:
    """The index files a catalogue rebuild writes (signed metadata, the mirror and locks aside)."""
    skip = (METADATA_DIR, MIRROR_DIR)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and p.relative_to(root).parts[0] not in skip and not p.name.startswith(".")}


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    """The archived index imported into the bundled index's own adapters (the samples), as the default
    catalogue is built (docs/registry.md#the-default-catalogue)."""
    if not ARCHIVE.is_dir():
        pytest.skip(f"shared data not present at {ARCHIVE}")
    out = tmp_path_factory.mktemp("imported") / "registry_index"
    out.mkdir()
    for rel, data in _catalogue_files(bundled_index_dir()).items():
        if rel == SEARCH_FILE or b'"x-adapterhub-v1"' in data:
            continue  # archived entries (and the summary naming them) are what the import writes
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(data)
    return out, import_adapterhub_index(ARCHIVE, out)


@needs_archive
def test_every_entry_and_version_converts(imported):
    out, report = imported
    assert report.failures == [] and report.refused == []
    assert (report.entries, report.versions) == (277, 486)
    check = check_index(out)
    assert check.ok, check.problems[:5]
    assert (check.names, check.versions) == (277 + len(SAMPLE_RELEASES), 486 + sum(SAMPLE_RELEASES.values()))


@needs_archive
def test_the_bundled_catalogue_is_exactly_this_import(imported):
    """The default catalogue in registry_index/ regenerates byte for byte from ../shared (else: rebuild and
    re-sign it, docs/registry.md#the-default-catalogue)."""
    out, _ = imported
    want, got = _catalogue_files(bundled_index_dir()), _catalogue_files(out)
    assert sorted(got) == sorted(want)
    assert [rel for rel in sorted(want) if got[rel] != want[rel]] == []


@needs_archive
def test_sha256_url_and_legacy_fields_kept(imported):
    out, _ = imported
    m = resolve(open_index(out), "bert-base-uncased-sentiment-sst-2-houlsby").manifest
    (src,) = m.sources
    assert src.type == "archive" and src.format == "zip" and src.layout == "adapters-library"
    assert src.sha256 == "4ecc0b563332e81ab505308d083f27834a924e8f10d3dec3d090dba7a9c97524"
    assert src.url.endswith("bert-base-uncased_sentiment_sst-2_houlsby.zip")
    assert m.files == ()
    assert m.extensions["x-adapterhub-v1"]["key"] == "ukp/bert-base-uncased_sentiment_sst-2_houlsby"
    assert m.adapter.config.variant == "houlsby" and m.base_model.num_hidden_layers == 12


@needs_archive
def test_default_version_and_dependencies(imported):
    out, report = imported
    idx = open_index(out)
    lang = resolve(idx, "bert-base-multilingual-cased-ar-wiki-houlsby")
    assert lang.manifest.extensions["x-adapterhub-v1"]["version"] == "nd"  # the archived default
    closure = resolve_closure(idx, ["bert-base-multilingual-cased-wikiann-ner-en-pfeiffer"])
    assert [r.name for r in closure][0] == "bert-base-multilingual-cased-en-wiki-pfeiffer"
    assert any("trailing" in n or "whitespace" in n for n in report.notes)
    assert search(idx, SearchQuery("sst-2", method="houlsby"))
