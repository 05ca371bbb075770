"""The Python examples in docs/runtime.md run as written."""

from __future__ import annotations

from support.doc_examples import run_doc_examples


def test_runtime_doc_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_doc_examples("runtime.md")
    assert (tmp_path / "out" / "sst2" / "adapterhub.json").is_file()
    assert (tmp_path / "out" / "lo-peft" / "adapter_config.json").is_file()
    assert '"LOHA"' in (tmp_path / "out" / "hada-peft" / "adapter_config.json").read_text()
