"""The Python examples in docs/soups.md run as written."""

from __future__ import annotations

from support.doc_examples import run_doc_examples


def test_soups_doc_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = run_doc_examples("soups.md")
    assert (tmp_path / "out" / "soup" / "adapterhub.json").is_file()
    assert namespace["greedy"].score >= max(namespace["greedy"].ingredient_scores)
