"""The archived-index importer lists only what can be pulled: file URLs, sha256 pins, representable
architectures (converted from their architecture file), and names no other adapter holds."""

from __future__ import annotations

import json
import shutil

import pytest
from support.archived_fixtures import (
    INVERTIBLE_ARCHITECTURE,
    LEAVE_OUT_ARCHITECTURE,
    entry,
    pin,
    version,
    write_archive,
)
from support.manifest_samples import manifest

from adapterhub.cli import main
from adapterhub.manifest import parse_manifest
from adapterhub.registry import add_release, init_index, open_index, resolve, resolve_closure
from adapterhub.registry.archived import import_adapterhub_index, legacy_name
from adapterhub.registry.archived_urls import Refused, download_url, sha256_pin
from adapterhub.resources import bundled_index_dir

ZIP = b"PK fabricated archive bytes"
RAW = "https://raw.githubusercontent.com/org/repo/"


@pytest.mark.parametrize(("url", "want"), [
    ("https://github.com/org/repo/tree/main/adapters/ner.zip", RAW + "main/adapters/ner.zip"),
    ("https://github.com/org/repo/blob/0123abc/ner.zip", RAW + "0123abc/ner.zip"),
    ("https://github.com/org/repo/raw/v1/ner.zip?download=1", RAW + "v1/ner.zip"),
    ("https://github.com/org/repo/releases/download/v1/ner.zip", None),
    ("https://github.com/org/repo/archive/refs/tags/v1.zip", None),
    ("https://huggingface.co/org/repo/blob/main/ner.zip", "https://huggingface.co/org/repo/resolve/main/ner.zip"),
    ("https://huggingface.co/datasets/org/d/tree/main/ner.zip",
     "https://huggingface.co/datasets/org/d/resolve/main/ner.zip"),
    ("https://public.ukp.informatik.tu-darmstadt.de/AdapterHub/text_task/ner.zip", None),
    ("http://style.cs.umass.edu/adapters/ner.zip", None),
])
def test_file_urls_are_kept_and_page_urls_rewritten_to_the_file(url, want):
    got, note = download_url(url)
    assert got == (want or url)
    assert (note is None) == (want is None)


@pytest.mark.parametrize(("url", "reason"), [
    ("https://github.com/org/repo/tree/main/adapters/ner", "web-page-url"),  # a directory listing
    ("https://github.com/org/repo", "web-page-url"),
    ("https://github.com/org/repo/releases", "web-page-url"),
    ("https://huggingface.co/org/repo/tree/main/adapters", "web-page-url"),
    ("ftp://example.org/ner.zip", "not-a-download-url"),
    ("https://example.org/a b.zip", "not-a-download-url"),
    ("adapters/ner.zip", "not-a-download-url"),
])
def test_links_that_cannot_deliver_a_file_are_refused(url, reason):
    with pytest.raises(Refused) as info:
        download_url(url)
    assert info.value.reason == reason and url in str(info.value)


def test_sha256_pins():
    assert sha256_pin({"sha256": pin(ZIP).upper()}) == pin(ZIP)
    with pytest.raises(Refused, match="no-sha256-pin.*only a sha1"):
        sha256_pin({"sha1": "a" * 40})
    with pytest.raises(Refused, match="bad-sha256-pin"):
        sha256_pin({"sha256": "abc"})


def test_tree_urls_are_rewritten_or_refused_and_unpinned_versions_refused(tmp_path):
    """Regression: a GitHub tree page and a version without a sha256 were listed (unpullable, or a KeyError
    that failed the whole entry)."""
    tree_file = "https://github.com/org/repo/tree/main/ner.zip"
    doc = entry([version("1", tree_file, pin(ZIP)),
                 version("2", "https://github.com/org/repo/tree/main/ner-v2", pin(ZIP + b"2")),
                 version("3", "https://example.org/ner-v3.zip", None)], default="1")
    src = write_archive(tmp_path / "archive", {"ukp/bert-base-uncased_ner_conll2003_pfeiffer": doc})
    report = import_adapterhub_index(src, tmp_path / "index")
    assert report.failures == [] and (report.entries, report.versions) == (1, 1)
    assert report.refused_by_reason() == {"no-sha256-pin": 1, "web-page-url": 1}
    assert {(r.version, r.reason) for r in report.refused} == {("2", "web-page-url"), ("3", "no-sha256-pin")}
    m = resolve(open_index(tmp_path / "index"), "bert-base-uncased-ner-conll2003-pfeiffer").manifest
    (src_,) = m.sources
    assert src_.url == RAW + "main/ner.zip" and src_.sha256 == pin(ZIP)
    assert m.extensions["x-adapterhub-v1"]["archived_url"] == tree_file
    assert [e.version for e in open_index(tmp_path / "index").entries(m.name)] == ["1"]
    assert any("rewritten to its raw file URL" in n for n in report.notes)


def test_an_entry_with_nothing_pullable_is_refused_and_no_dependency_points_at_it(tmp_path):
    lang = entry([version("1", "https://example.org/en.zip", None)], task="en", subtask="wiki")
    lang["type"] = "text_lang"
    task = entry([version("1", "https://example.org/ner.zip", pin(ZIP))],
                 dependencies=[{"key": "en/wiki@ukp", "description": "the language adapter"}])
    src = write_archive(tmp_path / "archive", {"ukp/bert-base-uncased_en_wiki_pfeiffer": lang,
                                               "ukp/bert-base-uncased_ner_conll2003_pfeiffer": task})
    report = import_adapterhub_index(src, tmp_path / "index")
    assert report.failures == [] and report.entries == 1
    assert [(r.key, r.reason) for r in report.refused] == [("ukp/bert-base-uncased_en_wiki_pfeiffer", "no-sha256-pin")]
    index = open_index(tmp_path / "index")
    assert index.entries("bert-base-uncased-en-wiki-pfeiffer") == []
    closure = resolve_closure(index, ["bert-base-uncased-ner-conll2003-pfeiffer"])
    assert [r.name for r in closure] == ["bert-base-uncased-ner-conll2003-pfeiffer"]
    assert any("en/wiki@ukp" in n and "matches no archived entry" in n for n in report.notes)


def test_a_leave_out_architecture_file_is_converted_not_rejected(tmp_path):
    doc = entry([version("1", "https://example.org/ner.zip", pin(ZIP))], using="pfeiffer-leave-out",
                reduction_factor=4, non_linearity="swish")
    src = write_archive(tmp_path / "archive", {"org/ner_leave_out": doc},
                        {"pfeiffer-leave-out": LEAVE_OUT_ARCHITECTURE})
    report = import_adapterhub_index(src, tmp_path / "index")
    assert report.failures == [] and report.refused == [] and report.versions == 1
    m = resolve(open_index(tmp_path / "index"), legacy_name("org", "ner_leave_out")).manifest
    c = m.adapter.config
    assert (m.adapter.method, c.variant, c.locations, c.leave_out) == ("bottleneck", "pfeiffer", ("ffn",), (0,))
    assert (c.reduction_factor, c.non_linearity, c.original_ln_before, c.original_ln_after) == (4, "swish", True, True)
    assert m.extensions["x-adapterhub-v1"]["architecture_config"] == LEAVE_OUT_ARCHITECTURE


def test_an_architecture_the_runtime_cannot_represent_is_refused_with_the_reason(tmp_path):
    doc = entry([version("1", "https://example.org/a.zip", pin(ZIP)), version("2", "https://example.org/b.zip", pin(b"b"))],
                using="pfeiffer+inv")
    src = write_archive(tmp_path / "archive", {"ukp/inv": doc}, {"pfeiffer+inv": INVERTIBLE_ARCHITECTURE})
    report = import_adapterhub_index(src, tmp_path / "index")
    assert report.failures == [] and report.entries == 0
    assert report.refused_by_reason() == {"unsupported-architecture": 2}
    assert "inv_adapter" in report.refused[0].detail


def test_a_name_another_adapter_holds_is_refused_and_left_unchanged(tmp_path):
    """Regression: an archived entry whose name a sample already had was merged into the sample's versions."""
    index = init_index(tmp_path / "index", "mixed")
    add_release(index, parse_manifest(manifest(name="bert-base-uncased-ner", version="0.1.0"), "sample"))
    before = (index / "be" / "rt" / "bert-base-uncased-ner").read_bytes()
    doc = entry([version("1", "https://example.org/ner.zip", pin(ZIP))])
    src = write_archive(tmp_path / "archive", {"ukp/bert-base-uncased_ner": doc})
    report = import_adapterhub_index(src, index)
    assert report.entries == 0 and [r.reason for r in report.refused] == ["name-collision"]
    assert "bert-base-uncased-ner 0.1.0 (an adapter of its own)" in report.refused[0].detail
    assert (index / "be" / "rt" / "bert-base-uncased-ner").read_bytes() == before
    again = import_adapterhub_index(src, tmp_path / "fresh")  # its own earlier import is not a collision
    assert again.entries == 1 and import_adapterhub_index(src, tmp_path / "fresh").refused == []


def test_cli_counts_refusals_by_reason_and_does_not_fail_for_them(tmp_path, capsys):
    doc = entry([version("1", "https://example.org/ner.zip", pin(ZIP)),
                 version("2", "https://github.com/org/repo/tree/main/x", pin(ZIP))])
    src = write_archive(tmp_path / "archive", {"ukp/bert-base-uncased_ner": doc})
    assert main(["index", "import-adapterhub", str(src), "--out", str(tmp_path / "index")]) == 0
    out = capsys.readouterr().out
    assert "imported 1 entries (1 versions)" in out and "refused 1 version(s): web-page-url 1" in out
    assert main(["index", "import-adapterhub", str(src), "--out", str(tmp_path / "index2"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["refused_by_reason"] == {"web-page-url": 1} and report["refused"][0]["version"] == "2"


def test_importing_into_a_signed_index_without_keys_changes_nothing(tmp_path, monkeypatch, capsys):
    """Regression: the importer wrote entries into a signed index that no one re-signed."""
    monkeypatch.delenv("ADAPTERHUB_INDEX_KEYS", raising=False)
    copy = tmp_path / "registry_index"
    shutil.copytree(bundled_index_dir(), copy, ignore=shutil.ignore_patterns(".index.lock"))
    before = sorted((p.relative_to(copy), p.read_bytes()) for p in copy.rglob("*") if p.is_file())
    src = write_archive(tmp_path / "archive", {"org/ner": entry([version("1", "https://example.org/n.zip", pin(ZIP))])})
    assert main(["index", "import-adapterhub", str(src), "--out", str(copy)]) != 0
    assert "signed index" in capsys.readouterr().err
    after = sorted((p.relative_to(copy), p.read_bytes()) for p in copy.rglob("*") if p.is_file() and p.name != ".index.lock")
    assert after == before
