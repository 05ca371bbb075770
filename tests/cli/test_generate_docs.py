"""docs/generate.md's Python blocks run as written (a tiny random Llama built in the first block)."""

from __future__ import annotations

from support.doc_examples import run_doc_examples


def test_generate_docs_python_examples(capsys):
    namespace = run_doc_examples("generate.md", min_blocks=2)
    greedy = namespace["greedy"]
    assert [g.prompt for g in greedy] == ["once upon a time", "café"]
    assert all(g.generated_tokens == len(g.token_ids) <= 12 for g in greedy)
    assert namespace["runner"].kind == "causal"
    assert '"finish_reason"' in capsys.readouterr().out.replace("'", '"')
