"""The Python examples in docs/compose.md run as written."""

from __future__ import annotations

from support.doc_examples import run_doc_examples


def test_compose_doc_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = run_doc_examples("compose.md", min_blocks=3)
    assert (tmp_path / "out" / "fz" / "adapterhub.json").is_file()
    assert tuple(namespace["w"].shape) == (4, 2, 3)
    assert namespace["probs"].sum(-1).allclose(namespace["torch"].ones(4))
