"""The default catalogue: the bundled index lists the archived AdapterHub entries beside the samples, every
archived version pullable in principle (a file URL, a sha256 pin, a config our runtime builds)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from support.paths import REPO

from adapterhub.registry import (
    SearchQuery,
    YankedVersionWarning,
    open_index,
    resolve,
    resolve_closure,
    search,
    set_yanked,
)
from adapterhub.registry.archived_urls import download_url
from adapterhub.registry.entries import parse_entry_file
from adapterhub.registry.writer import iter_entry_files
from adapterhub.resources import bundled_index_dir

SAMPLES = ("sst2-houlsby", "sst2-pfeiffer", "sst2-lora", "sst2-compacter")
ARCHIVED_NAMES, ARCHIVED_VERSIONS = 277, 486  # the archived index's entries and versions (none refused)


def _bundled_releases():
    root = bundled_index_dir()
    for path in iter_entry_files(root):
        yield from parse_entry_file(path.read_bytes(), str(path), path.name)


def test_search_ner_finds_archived_adapters_with_a_fresh_cache_and_no_index(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("ADAPTERHUB_INDEX", "ADAPTERHUB_OFFLINE")}
    env.update(ADAPTERHUB_CACHE=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    proc = subprocess.run([sys.executable, "-m", "adapterhub", "search", "ner", "--json", "--limit", "0"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = [row["name"] for row in json.loads(proc.stdout)]
    assert "bert-base-uncased-ner-pfeiffer" in names and len(names) >= 5
    index = open_index()
    for name in names:
        m = resolve(index, name).manifest
        assert m.extensions["x-adapterhub-v1"]["key"] and [s.type for s in m.sources] == ["archive"]


def test_every_archived_release_is_pullable_in_principle():
    archived = [e for e in _bundled_releases() if "x-adapterhub-v1" in e.raw_manifest]
    assert len({e.name for e in archived}) == ARCHIVED_NAMES and len(archived) == ARCHIVED_VERSIONS
    for e in archived:
        m = e.manifest  # validated against the schema: method and config are ones the runtime builds
        (src,) = m.sources
        assert download_url(src.url, src.format) == (src.url, None), e.name  # a file URL, nothing to rewrite
        assert len(src.sha256) == 64 and src.format == "zip" and m.files == ()
    assert not {e.name for e in archived} & set(SAMPLES)


def test_samples_and_archived_entries_resolve_side_by_side_with_dependencies():
    index = open_index()
    assert [s.type for s in resolve(index, "sst2-houlsby").manifest.sources] == ["bundled"]
    closure = resolve_closure(index, ["bert-base-multilingual-cased-wikiann-ner-en-pfeiffer"])
    assert [r.name for r in closure] == ["bert-base-multilingual-cased-en-wiki-pfeiffer",
                                         "bert-base-multilingual-cased-wikiann-ner-en-pfeiffer"]


def test_yanking_an_archived_version_works_as_for_any_release(tmp_path):
    copy = tmp_path / "registry_index"
    shutil.copytree(bundled_index_dir(), copy, ignore=shutil.ignore_patterns(".index.lock", "metadata", "mirror"))
    name = "bert-base-multilingual-cased-ar-wiki-houlsby"  # archived versions "nd" (default) and "wd"
    assert resolve(open_index(copy), name).manifest.version == "1+nd"
    set_yanked(copy, name, "1+nd", "fabricated: wrong language")
    index = open_index(copy)
    assert resolve(index, name).manifest.version == "0+wd"
    with pytest.warns(YankedVersionWarning):
        assert resolve(index, f"{name}==1+nd").manifest.version == "1+nd"
    (row,) = [r for r in search(index, SearchQuery(name)) if r["name"] == name]
    assert row["versions"] == ["0+wd"]


@pytest.mark.parametrize("page", ["registry.md", "samples.md"])
def test_default_catalogue_doc_examples_run(page, tmp_path, monkeypatch):
    from support.doc_examples import python_blocks

    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path))
    monkeypatch.delenv("ADAPTERHUB_INDEX", raising=False)
    (block,) = [b for b in python_blocks(page) if "default catalogue" in b]
    exec(compile(block, f"docs/{page}", "exec"), {})  # noqa: S102 - our own documentation
