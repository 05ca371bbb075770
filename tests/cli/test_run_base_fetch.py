"""Bases that come by themselves: ``run``, ``prepare()`` and ``pull --with-base`` fetch a tiny real BERT (a
few KB, with its tokenizer) from the test server through the real huggingface_hub client, check it, and
compare its fingerprint; offline and ``--base`` stay local.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from support.base_fetch_support import (
    LABELS,
    index_with,
    model_dir_files,
    no_local_bases,
    pin_base,
    save_tiny_bert,
    serve_base,
    train_tiny_adapter,
    write_vocab,
)

from adapterhub.cli import main
from adapterhub.errors import IncompatibleBaseError
from adapterhub.serve_run import prepare
from adapterhub.store.base_locator import find_local_base
from adapterhub.store.hf_cache import unverified_reason

pytestmark = pytest.mark.network_local

REPO_ID = "tiny-org/served-bert"
TEXTS = ["a good movie", "the film is awful"]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Base A (the adapter's), base B (same shapes, other weights), a base of other shapes, the adapter
    trained on A."""
    root = tmp_path_factory.mktemp("served")
    vocab = write_vocab(root / "vocab.txt")
    base_a = save_tiny_bert(root / "base-a", vocab, seed=0)
    return {"base_a": base_a, "base_b": save_tiny_bert(root / "base-b", vocab, seed=1),
            "hidden_48": save_tiny_bert(root / "hidden-48", vocab, seed=0, hidden_size=48),
            "adapter": train_tiny_adapter(base_a, root / "adapter", REPO_ID)}


@pytest.fixture
def world(made, hub, cache, monkeypatch, tmp_path) -> dict:
    """Base A served as REPO_ID, no local copy of it, and the adapter pinned to the served commit."""
    hf_cache = no_local_bases(monkeypatch, tmp_path, REPO_ID)
    commit = serve_base(hub, monkeypatch, REPO_ID, model_dir_files(made["base_a"]))
    adapter = pin_base(shutil.copytree(made["adapter"], tmp_path / "adapter"), REPO_ID, commit)
    return {"commit": commit, "adapter": adapter, "hf_cache": hf_cache,
            "snapshot": hf_cache / "models--tiny-org--served-bert" / "snapshots" / commit}


def _expected(made: dict[str, Path], texts: list[str]) -> list[list[float]]:
    """Probabilities computed without adapterhub's run path, on the local copy of base A."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from adapterhub.runtime import wrap

    model = AutoModelForSequenceClassification.from_pretrained(made["base_a"]).eval()
    wrap(model).load(made["adapter"])
    tok = AutoTokenizer.from_pretrained(made["base_a"])
    with torch.no_grad():
        return torch.softmax(model(**tok(texts, padding=True, return_tensors="pt")).logits, -1).tolist()


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_run_fetches_the_base_at_the_pinned_commit_then_runs_offline(made, world, hub, capsys, monkeypatch):
    adapter = str(world["adapter"])
    code, _, err = _cli(capsys, "run", adapter, *TEXTS, "--offline")  # offline: nothing local, nothing fetched
    assert code != 0 and "offline" in err and "--with-base" in err and not world["hf_cache"].exists()

    code, out, err = _cli(capsys, "run", adapter, *TEXTS, "--json")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    for row, want in zip(rows, _expected(made, TEXTS), strict=True):
        assert [row["probabilities"][k] for k in LABELS] == pytest.approx(want, abs=1e-5)
    assert (world["snapshot"] / "model.safetensors").is_file() and (world["snapshot"] / "tokenizer_config.json").is_file()
    assert err == ""  # pinned: no warning; --json: no progress bar

    hub.server.stop()  # fingerprint matched, so the snapshot is now an ordinary cached base
    code, out2, err = _cli(capsys, "run", adapter, *TEXTS, "--json", "--offline")
    assert code == 0 and out2 == out, err


def test_a_fetched_base_with_another_fingerprint_is_refused_and_not_used_later(made, world, hub, monkeypatch,
                                                                               capsys, tmp_path):
    from adapterhub.manifest import load_manifest

    commit_b = serve_base(hub, monkeypatch, REPO_ID, model_dir_files(made["base_b"]))
    pin_base(world["adapter"], REPO_ID, commit_b)
    with pytest.raises(IncompatibleBaseError) as info:
        prepare(str(world["adapter"]))
    assert load_manifest(world["adapter"]).base_model.fingerprint in str(info.value)
    snapshot = world["snapshot"].parent / commit_b
    assert (snapshot / "model.safetensors").is_file()  # genuine bytes of that commit, but not this adapter's base
    assert "fingerprint" in unverified_reason(snapshot) and find_local_base(REPO_ID, revision=commit_b) is None
    code, out, err = _cli(capsys, "run", str(world["adapter"]), "good", "--force")
    assert code == 0 and "warning" in err and out.splitlines()[1].split()[0] in LABELS
    assert find_local_base(REPO_ID, revision=commit_b) is None  # --force runs once; it does not bless the base


def test_a_fetched_base_of_other_shapes_is_refused_before_loading_and_skipped_later(made, world, hub, monkeypatch,
                                                                                    capsys):
    commit = serve_base(hub, monkeypatch, REPO_ID, model_dir_files(made["hidden_48"]))
    pin_base(world["adapter"], REPO_ID, commit)
    code, out, err = _cli(capsys, "run", str(world["adapter"]), "good")
    assert code == 1 and out == "" and "hidden_size=48" in err and "--force cannot help" in err
    snapshot = world["snapshot"].parent / commit
    assert "hidden_size=48" in unverified_reason(snapshot) and find_local_base(REPO_ID, revision=commit) is None


def test_a_revision_less_manifest_fetches_main_and_warns_naming_the_commit(world, capsys):
    pin_base(world["adapter"], REPO_ID, None)
    code, out, err = _cli(capsys, "run", str(world["adapter"]), "good")
    assert code == 0 and out.startswith("LABEL")
    assert err.startswith("warning:") and world["commit"] in err and "pins no revision" in err
    code, _, err = _cli(capsys, "run", str(world["adapter"]), "good")  # found through refs/main now
    assert code == 0 and err == ""


def test_an_explicit_base_is_used_as_given_with_no_network(made, world, hub, capsys):
    hub.server.stop()
    code, out, err = _cli(capsys, "run", str(world["adapter"]), "good", "--base", str(made["base_a"]))
    assert code == 0 and not world["hf_cache"].exists(), err


def test_pull_with_base_fetches_checks_and_says_where(world, capsys, tmp_path):
    index = str(index_with(tmp_path / "index", world["adapter"]))
    code, out, err = _cli(capsys, "pull", "tiny-sent", "--index", index, "--with-base")
    assert code == 0, err
    adapter_line, base_line = out.splitlines()
    assert adapter_line.startswith("tiny-sent 1.0.0")
    assert base_line.split()[:3] == ["base", REPO_ID, str(world["snapshot"])]
    assert f"at {world['commit'][:12]}, verified, fingerprint checked" in base_line and "downloaded" in base_line

    code, out, err = _cli(capsys, "pull", "tiny-sent", "--index", index, "--with-base", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["base"]["path"] == str(world["snapshot"]) and doc["base"]["commit"] is None
    assert "Hugging Face cache" in doc["base"]["how"]  # the second time it is simply found
    code, out, _ = _cli(capsys, "pull", "tiny-sent", "--index", index, "--with-base", "-q")
    assert code == 0 and out.splitlines()[1] == str(world["snapshot"])


def test_pull_with_base_checks_the_fingerprint_of_an_adapter_without_a_head(made, world, capsys, tmp_path):
    """No classification head: the base is loaded as its checkpoint's own architecture, as `init` loads it."""
    from transformers import AutoModel

    from adapterhub.manifest import load_manifest
    from adapterhub.runtime import wrap

    ah = wrap(AutoModel.from_pretrained(made["base_a"]))
    ah.add("tiny-lora", "lora", r=2, alpha=4)
    ah.save("tiny-lora", tmp_path / "lora", version="1.0.0", license="apache-2.0")
    lora = pin_base(tmp_path / "lora", REPO_ID, world["commit"])
    assert load_manifest(lora).head is None
    index = str(index_with(tmp_path / "index", lora))
    code, out, err = _cli(capsys, "pull", "tiny-lora", "--index", index, "--with-base", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["base"]["fingerprint_checked"], err
    assert doc["base"]["fingerprint"] == load_manifest(lora).base_model.fingerprint


def test_pull_with_base_loads_the_heads_task_model_so_the_fingerprint_is_runs(made, world, capsys, tmp_path):
    """A question-answering adapter: its backbone has no pooler, so the base is fingerprinted as that task
    model (as `run` loads it), not as the checkpoint's own architecture (which would refuse the right base)."""
    from support.task_support import make_task_adapter

    from adapterhub.manifest import load_manifest

    qa = pin_base(make_task_adapter(made["base_a"], tmp_path / "qa", "question-answering", None), REPO_ID,
                  world["commit"])
    index = str(index_with(tmp_path / "index", qa))
    code, out, err = _cli(capsys, "pull", "tiny-task", "--index", index, "--with-base", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["base"]["fingerprint_checked"], err
    assert doc["base"]["fingerprint"] == load_manifest(qa).base_model.fingerprint
    code, out, err = _cli(capsys, "run", "tiny-task", "--index", index, "good", "--context", "a good movie", "--json")
    assert code == 0 and json.loads(out)["answer"], err


def test_pull_with_base_refuses_a_base_of_another_fingerprint(made, world, hub, monkeypatch, capsys, tmp_path):
    commit_b = serve_base(hub, monkeypatch, REPO_ID, model_dir_files(made["base_b"]))
    pin_base(world["adapter"], REPO_ID, commit_b)
    index = str(index_with(tmp_path / "index", world["adapter"]))
    code, out, err = _cli(capsys, "pull", "tiny-sent", "--index", index, "--with-base")
    assert code == 1 and "fingerprint" in err and "run --force" in err
    assert find_local_base(REPO_ID, revision=commit_b) is None


def test_a_tampered_weight_byte_stops_run_and_leaves_nothing_usable(world, hub, capsys):
    hub.server.fault_plan.flip_byte(path="model.safetensors")
    code, out, err = _cli(capsys, "run", str(world["adapter"]), "good")
    assert code != 0 and out == "" and "model.safetensors" in err and "sha256" in err
    assert not (world["snapshot"] / "model.safetensors").exists()
    assert find_local_base(REPO_ID, revision=world["commit"]) is None
    code, _, err = _cli(capsys, "run", str(world["adapter"]), "good")  # served honestly again: fetched anew
    assert code == 0, err


@pytest.mark.slow  # two new processes importing transformers (~10 s); CI runs it
def test_a_terminal_sees_the_clients_download_bars_and_json_output_stays_clean(world, tmp_path):
    """As a user runs it: a new process whose huggingface_hub reads HF_ENDPOINT at import."""
    import os
    import sys

    from support.paths import REPO
    from support.tty_support import run_with_tty_stderr

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ADAPTERHUB_", "HUGGING"))}
    env.update(HF_ENDPOINT=os.environ["HF_ENDPOINT"], HF_HUB_CACHE=str(world["hf_cache"]), HOME=str(tmp_path),
               ADAPTERHUB_CACHE=str(tmp_path / "ah-cache"), ADAPTERHUB_BASES=str(tmp_path / "no-bases.json"),
               HF_HUB_DISABLE_TELEMETRY="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    cmd = [sys.executable, "-m", "adapterhub", "run", str(world["adapter"]), "good"]
    code, out, shown = run_with_tty_stderr([*cmd, "--json"], env=env)
    assert code == 0 and json.loads(out)["text"] == "good" and shown.strip() == "", shown
    shutil.rmtree(world["hf_cache"])  # fetch again, this time drawing on the terminal
    code, out, shown = run_with_tty_stderr(cmd, env=env)
    assert code == 0 and out.startswith("LABEL"), shown
    assert "model.safetensors" in shown and "100%" in shown, shown
