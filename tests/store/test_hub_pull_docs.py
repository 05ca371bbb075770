"""The ``hf:`` Python example of docs/pull-and-cache.md runs as written, against the local Hub server
(the repos it names are put there first; the client is pointed at the server as HF_ENDPOINT would)."""

from __future__ import annotations

import json

from support.doc_examples import python_blocks
from support.hub_repos import BASE_DIR, LIBRARY_DIR, PEFT_DIR, files_of
from support.paths import DOCS
from support.server_fixtures import ADMIN_TOKEN
from support.store_support import put_repo


def test_the_hf_example_runs(hub, cache, monkeypatch, capsys, tmp_path):
    config = json.loads((PEFT_DIR / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "acme/tiny-bert"
    put_repo(hub.server, "acme/tiny-bert", {"config.json": (BASE_DIR / "config.json").read_bytes(),
                                            "model.safetensors": (BASE_DIR / "model.safetensors").read_bytes()})
    commit = put_repo(hub.server, "acme/bert-lora", {**files_of(PEFT_DIR),
                                                     "adapter_config.json": json.dumps(config).encode()})
    library = json.loads((LIBRARY_DIR / "adapter_config.json").read_text())
    library["model_name"] = "acme/tiny-bert"
    put_repo(hub.server, "acme/bert-seq-bn", {**files_of(LIBRARY_DIR), "adapter_config.json": json.dumps(library).encode()})
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_TOKEN", ADMIN_TOKEN)  # the mixed-composition example creates a repo
    monkeypatch.chdir(tmp_path)  # the composition example writes rel/ and registry/
    blocks = [b for b in python_blocks("pull-and-cache.md") if "hf:" in b]
    assert blocks, "docs/pull-and-cache.md lost its hf: example"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(DOCS / "pull-and-cache.md"), "exec"), namespace)  # noqa: S102 - our docs
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"hf:acme/bert-lora@{commit}", "lora", "('acme-bert-lora',)", "True 64", "bert-stack",
                       "acme-bert-seq-bn", "[('acme-bert-lora', True), ('acme-bert-seq-bn', False)]", "bert-mixed"]
