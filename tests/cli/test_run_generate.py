"""``adapterhub run`` and ``Runner`` with language-model adapters: the generated text is transformers'
``generate`` on the same weights with the adapter attached; JSON fields; streaming on a terminal; typed
errors for bad settings and for a classification adapter asked to generate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from support.generation_support import make_lm_adapter, reference_lm, save_tiny_lm
from support.task_support import make_task_adapter, save_tiny_base

from adapterhub.cli import main, run_cmd
from adapterhub.errors import InvalidArgumentError
from adapterhub.serve_run import prepare


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("run-gen")
    out = {"llama": save_tiny_lm(root / "llama", "llama"), "t5": save_tiny_lm(root / "t5", "t5"),
           "bert": save_tiny_base(root / "bert")}
    out["causal"] = make_lm_adapter(out["llama"], root / "causal", "prefix_tuning")
    out["seq2seq"] = make_lm_adapter(out["t5"], root / "seq2seq", "lora")
    out["classifier"] = make_task_adapter(out["bert"], root / "classifier", "classification", ["neg", "pos"])
    return out


def _run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main(["run", *[str(a) for a in args]])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def hand_generate(base: Path, adapter: Path, prompt: str, **kwargs: object) -> list[int]:
    """Generated ids by transformers' ``generate`` called directly, cut after the first EOS."""
    model, tok = reference_lm(base, adapter)
    ids = torch.tensor([tok(prompt)["input_ids"]])
    with torch.no_grad():
        out = model.generate(input_ids=ids, pad_token_id=0, **kwargs)[0]
    row = (out[1:] if model.config.is_encoder_decoder else out[ids.shape[1]:]).tolist()
    return row[:row.index(2) + 1] if 2 in row else row


@pytest.mark.parametrize("kind, base", [("causal", "llama"), ("seq2seq", "t5")])
def test_run_json_is_transformers_generate_with_the_adapter(world, capsys, kind, base):
    code, out, _ = _run(capsys, world[kind], "the cat sat", "café", "--base", world[base], "--max-new-tokens", 7,
                        "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    _, tok = reference_lm(world[base], None)
    for row, prompt in zip(rows, ["the cat sat", "café"], strict=True):
        want = hand_generate(world[base], world[kind], prompt, max_new_tokens=7, do_sample=False)
        assert row == {"adapter": "tiny-lm", "version": "1.0.0", "prompt": prompt,
                       "text": tok.decode([t for t in want if t != 2], skip_special_tokens=True),
                       "prompt_tokens": len(tok(prompt)["input_ids"]), "generated_tokens": len(want),
                       "finish_reason": "eos" if want[-1] == 2 else "length", "chat_template": False}


def test_run_sampling_with_a_seed_is_reproducible(world, capsys):
    args = (world["causal"], "the cat", "--base", world["llama"], "--max-new-tokens", 10, "--sample", "--seed", 5,
            "--temperature", 1.5, "--top-k", 50, "--top-p", 0.95, "--json")
    first = _run(capsys, *args)
    assert first[0] == 0 and _run(capsys, *args)[1] == first[1]
    torch.manual_seed(5)
    want = hand_generate(world["llama"], world["causal"], "the cat", max_new_tokens=10, do_sample=True,
                         temperature=1.5, top_k=50, top_p=0.95)
    assert json.loads(first[1])["generated_tokens"] == len(want)
    other = _run(capsys, *args[:-1], "--seed", 6, "--json")[1]
    assert json.loads(other)["text"] != json.loads(first[1])["text"]


def test_run_prints_the_text_and_streams_it_on_a_terminal(world, capsys, monkeypatch):
    args = (world["causal"], "the cat", "a dog", "--base", world["llama"], "--max-new-tokens", 6)
    code, piped, _ = _run(capsys, *args)
    assert code == 0
    texts = [json.loads(line)["text"] for line in _run(capsys, *args, "--batch-size", 1, "--json")[1].splitlines()]
    assert piped == f"[1/2] the cat\n{texts[0]}\n[2/2] a dog\n{texts[1]}\n"
    pieces: list[str] = []
    monkeypatch.setattr(run_cmd, "stdout_is_terminal", lambda: True)
    echo = run_cmd.click.echo
    monkeypatch.setattr(run_cmd.click, "echo", lambda m="", **kw: (pieces.append(m), echo(m, **kw))[1])
    code, streamed, err = _run(capsys, *args)
    assert code == 0 and streamed == piped and err == ""
    assert len(pieces) > 4  # the text came in pieces, not as one line per input


def test_runner_generate_and_a_classifier_asked_to_generate(world):
    runner = prepare(str(world["seq2seq"]), base=world["t5"])
    assert runner.kind == "seq2seq"
    got = runner.generate(["summarize: the cat sat"], max_new_tokens=5)
    want = hand_generate(world["t5"], world["seq2seq"], "summarize: the cat sat", max_new_tokens=5,
                         do_sample=False)
    assert list(got[0].token_ids) == want
    classifier = prepare(str(world["classifier"]), base=world["bert"])
    with pytest.raises(InvalidArgumentError, match="only language-model adapters"):
        classifier.generate(["good movie"])
    with pytest.raises(InvalidArgumentError, match="max_new_tokens"):
        classifier.run(["good movie"], max_new_tokens=5)


@pytest.mark.parametrize("extra, message", [
    (("--temperature", 0.7), "--temperature applies only when sampling"),
    (("--sample", "--temperature", 0), "temperature must be greater than 0"),
    (("--sample", "--top-p", 2), "top_p must be in"),
    (("--chat",), "--chat needs a causal base whose tokenizer has a chat template"),
])
def test_run_bad_generation_settings_exit_1(world, capsys, extra, message):
    code, out, err = _run(capsys, world["causal"], "the cat", "--base", world["llama"], *extra)
    assert code == 1 and out == "" and message in err


def test_bad_generation_settings_fail_before_the_base_is_looked_for(world, capsys, tmp_path):
    code, _, err = _run(capsys, world["causal"], "the cat", "--base", tmp_path / "no-such-base", "--sample",
                        "--temperature", -1)
    assert code == 1 and "temperature must be greater than 0" in err and "no-such-base" not in err


def test_generation_options_on_a_classifier_exit_1(world, capsys):
    code, _, err = _run(capsys, world["classifier"], "good movie", "--base", world["bert"], "--max-new-tokens", 4)
    assert code == 1 and "max_new_tokens" in err


def test_generation_with_json_counts_inputs_on_a_terminal(world, tmp_path):
    """Generation is slow: with --json (stdout piped) the bar still counts the inputs on a terminal's stderr."""
    import os
    import sys

    from support.paths import REPO
    from support.tty_support import run_with_tty_stderr

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the cat\na dog\ncafé\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    code, out, shown = run_with_tty_stderr([sys.executable, "-m", "adapterhub", "run", str(world["causal"]), "--file",
                                            str(prompts), "--base", str(world["llama"]), "--max-new-tokens", "3",
                                            "--batch-size", "1", "--json"], env=env)
    assert code == 0 and len(out.splitlines()) == 3
    # a bar of the 3 inputs was drawn (whether it redrew at 3/3 before closing depends on tqdm's refresh interval)
    assert "/3 [" in shown and "text" in shown, shown
