"""The Python examples in docs/methods.md run as written."""

from __future__ import annotations

from doc_examples import run_doc_examples


def test_methods_doc_examples_run():
    namespace = run_doc_examples("methods.md")
    assert namespace["lora"].name == "lora"
