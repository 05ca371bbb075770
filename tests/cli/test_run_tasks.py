"""``adapterhub run`` and ``Runner.run`` for every encoder head type, on a tiny random BERT.

Each output is checked against a forward pass written here with transformers directly (the adapter
attached by the runtime API), not against adapterhub's own task code: pair logits, regression scores,
multilabel sets, token labels with offsets (entities against the transformers pipeline's own grouping),
and QA spans over a context longer than one window (every window scored by brute force).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support.paths import REPO
from support.task_support import TOKEN_LABELS, make_task_adapter, reference_model, save_tiny_base

from adapterhub.cli import main
from adapterhub.errors import InvalidArgumentError, SchemaError
from adapterhub.serve_run import prepare

NLI = ["entailment", "neutral", "contradiction"]
TOPICS = ["people", "places", "films", "rivers"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tasks")
    base = save_tiny_base(root / "base")
    out = {"base": base}
    for head, labels in (("classification", NLI), ("regression", None), ("multilabel-classification", TOPICS),
                         ("token-classification", TOKEN_LABELS), ("question-answering", None),
                         ("multiple-choice", None)):
        out[head] = make_task_adapter(base, root / head, head, labels)
    return out


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["run", *[str(a) for a in args]])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _json_rows(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def _tokenizer(world):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(world["base"])


# --- sequence heads ---------------------------------------------------------------------------------

def test_pair_classification_feeds_both_texts(world, capsys, tmp_path):
    premises = ["alice lives in paris", "bob works in london ."]
    hypotheses = ["alice lives in the city", "bob is old"]
    model = reference_model("AutoModelForSequenceClassification", world["base"], world["classification"], num_labels=3)
    with torch.no_grad():
        expected = torch.softmax(model(**_tokenizer(world)(premises, hypotheses, padding=True,
                                                            return_tensors="pt")).logits, -1)
        single = torch.softmax(model(**_tokenizer(world)(premises, padding=True, return_tensors="pt")).logits, -1)
    assert not torch.allclose(expected, single, atol=1e-3)  # the pair changes the answer: it must be passed

    code, out, err = _run(capsys, world["classification"], *premises, *(a for h in hypotheses for a in ("--pair", h)),
                          "--base", world["base"], "--json", "--batch-size", "1")
    assert code == 0, err
    rows = _json_rows(out)
    assert [(r["text"], r["text_pair"]) for r in rows] == list(zip(premises, hypotheses, strict=True))
    for r, row in zip(rows, expected, strict=True):
        assert [r["probabilities"][k] for k in NLI] == pytest.approx(row.tolist(), abs=1e-5)
        assert r["label"] == NLI[int(row.argmax())]

    jsonl = tmp_path / "pairs.jsonl"
    jsonl.write_text("".join(json.dumps({"text": p, "text_pair": h}) + "\n" for p, h in zip(premises, hypotheses,
                                                                                           strict=True)))
    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("sentence1\tsentence2\n" + "".join(f"{p}\t{h}\n" for p, h in zip(premises, hypotheses, strict=True)))
    for file in (jsonl, tsv):
        code, out, err = _run(capsys, world["classification"], "--file", file, "--base", world["base"], "--json")
        assert code == 0, err
        assert [r["probabilities"] for r in _json_rows(out)] == [r["probabilities"] for r in rows]

    code, out, err = _run(capsys, world["classification"], premises[0], "--pair", hypotheses[0], "--base", world["base"])
    assert code == 0, err
    assert out.splitlines()[1].endswith(f"{premises[0]} | {hypotheses[0]}")


def test_regression_and_multilabel_heads(world, capsys):
    texts = ["a good movie", "the old river", "bob works in berlin"]
    tok = _tokenizer(world)
    reg = reference_model("AutoModelForSequenceClassification", world["base"], world["regression"], num_labels=1)
    ml = reference_model("AutoModelForSequenceClassification", world["base"], world["multilabel-classification"],
                         num_labels=4, problem_type="multi_label_classification")
    with torch.no_grad():
        scores = reg(**tok(texts, padding=True, return_tensors="pt")).logits[:, 0]
        probs = torch.sigmoid(ml(**tok(texts, padding=True, return_tensors="pt")).logits)
    code, out, err = _run(capsys, world["regression"], *texts, "--base", world["base"], "--json")
    assert code == 0, err
    assert [r["score"] for r in _json_rows(out)] == pytest.approx(scores.tolist(), abs=1e-5)

    threshold = float(probs.flatten().median())  # some labels over it, some under
    code, out, err = _run(capsys, world["multilabel-classification"], *texts, "--base", world["base"], "--json",
                          "--threshold", str(threshold))
    assert code == 0, err
    for r, row in zip(_json_rows(out), probs, strict=True):
        assert r["labels"] == [t for t, p in zip(TOPICS, row.tolist(), strict=True) if p >= threshold]
        assert [r["probabilities"][t] for t in TOPICS] == pytest.approx(row.tolist(), abs=1e-5)
    code, out, err = _run(capsys, world["multilabel-classification"], *texts, "--base", world["base"])
    assert code == 0 and out.splitlines()[0].split() == ["LABELS", "TEXT"], err


# --- token classification ---------------------------------------------------------------------------

TOKEN_TEXTS = ["alice lives in paris and bob works in london .", "the big cities of berlin , paris and london ?",
               "bobs workings , newly old rivers"]


def _pipeline_entities(world, aggregation: str) -> list[list[dict]]:
    from transformers import pipeline

    model = reference_model("AutoModelForTokenClassification", world["base"], world["token-classification"],
                            num_labels=len(TOKEN_LABELS))
    model.config.id2label = dict(enumerate(TOKEN_LABELS))
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    ner = pipeline("token-classification", model=model, tokenizer=_tokenizer(world), aggregation_strategy=aggregation)
    return [ner(t) for t in TOKEN_TEXTS]


def test_token_labels_and_offsets_match_a_direct_forward(world):
    tok = _tokenizer(world)
    model = reference_model("AutoModelForTokenClassification", world["base"], world["token-classification"],
                            num_labels=len(TOKEN_LABELS))
    runner = prepare(str(world["token-classification"]), base=world["base"])
    results = runner.run(TOKEN_TEXTS, batch_size=2)
    subwords = 0
    for text, result in zip(TOKEN_TEXTS, results, strict=True):
        enc = tok(text, return_offsets_mapping=True, return_tensors="pt")
        offsets = enc.pop("offset_mapping")[0].tolist()
        with torch.no_grad():
            probs = torch.softmax(model(**enc).logits[0], -1)
        names = enc.tokens()[1:-1]  # [CLS] ... [SEP]
        assert [t.token for t in result.tokens] == names
        for t, (start, end), row in zip(result.tokens, offsets[1:-1], probs[1:-1], strict=True):
            assert (t.start, t.end) == (start, end)
            assert t.label == TOKEN_LABELS[int(row.argmax())] and t.score == pytest.approx(float(row.max()), abs=1e-5)
        subwords += sum(n.startswith("##") for n in names)
    assert subwords >= 3  # the word-level path has sub-tokens to fold


def test_a_text_longer_than_the_base_limit_is_labelled_to_its_end(world):
    text = " ".join(["alice lives in paris and bob works in london ."] * 12)  # 120 tokens; 64 positions
    tok = _tokenizer(world)
    model = reference_model("AutoModelForTokenClassification", world["base"], world["token-classification"],
                            num_labels=len(TOKEN_LABELS))
    enc = tok(text, truncation=True, max_length=64, stride=0, return_overflowing_tokens=True,
              return_offsets_mapping=True, padding=True, return_tensors="pt")
    enc.pop("overflow_to_sample_mapping")
    offsets = enc.pop("offset_mapping").tolist()
    with torch.no_grad():
        probs = torch.softmax(model(**enc).logits, -1)
    want = [(start, end, TOKEN_LABELS[int(probs[w, k].argmax())]) for w in range(len(offsets))
            for k, (start, end) in enumerate(offsets[w]) if enc.sequence_ids(w)[k] == 0]
    assert len(offsets) >= 2 and want[-1][1] == len(text)  # the last window reaches the end of the text
    (result,) = prepare(str(world["token-classification"]), base=world["base"]).run([text])
    assert [(t.start, t.end, t.label) for t in result.tokens] == want
    assert len(result.tokens) == len(tok(text, add_special_tokens=False)["input_ids"])


@pytest.mark.parametrize("aggregation", ["simple", "first"])
def test_entities_match_the_transformers_pipeline(world, capsys, aggregation):
    expected = _pipeline_entities(world, aggregation)
    code, out, err = _run(capsys, world["token-classification"], *TOKEN_TEXTS, "--base", world["base"], "--json",
                          "--aggregation", aggregation)
    assert code == 0, err
    rows = _json_rows(out)
    assert sum(len(e) for e in expected) >= 4 and any(e["end"] - e["start"] > 6 for es in expected for e in es)
    for row, text, want in zip(rows, TOKEN_TEXTS, expected, strict=True):
        got = row["entities"]
        assert [(e["entity_group"], e["start"], e["end"]) for e in got] == \
            [(e["entity_group"], e["start"], e["end"]) for e in want]
        assert [e["score"] for e in got] == pytest.approx([float(e["score"]) for e in want], abs=1e-5)
        assert all(e["word"] == text[e["start"]:e["end"]] for e in got)
    code, out, err = _run(capsys, world["token-classification"], TOKEN_TEXTS[0], "--base", world["base"])
    assert code == 0 and out.splitlines()[0].split() == ["ENTITY", "SCORE", "SPAN", "WORD", "TEXT"], err


# --- question answering -----------------------------------------------------------------------------

QUESTION = "where does alice live ?"
CONTEXT = ("bob works in london and the big river is old . alice lives in paris , the city of the river . "
           "bob lives in berlin and works in the new city . the old film is good and the movie is bad . "
           "a city of rivers , a river of cities , and alice works in london .")


def _best_span_by_hand(world, max_length: int, stride: int, max_answer: int) -> tuple[float, int, int, int]:
    """(score, start, end, windows): every window, every allowed span, scored with explicit loops."""
    tok = _tokenizer(world)
    model = reference_model("AutoModelForQuestionAnswering", world["base"], world["question-answering"])
    enc = tok(QUESTION, CONTEXT, truncation="only_second", max_length=max_length, stride=stride,
              return_overflowing_tokens=True, return_offsets_mapping=True, padding=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping").tolist()
    enc.pop("overflow_to_sample_mapping")
    with torch.no_grad():
        out = model(**enc)
    best = (-1.0, 0, 0)
    for w in range(len(offsets)):
        ctx = [k for k, s in enumerate(enc.sequence_ids(w)) if s == 1]
        p_start = torch.softmax(out.start_logits[w, ctx].double(), -1).tolist()
        p_end = torch.softmax(out.end_logits[w, ctx].double(), -1).tolist()
        for a, i in enumerate(ctx):
            for b, j in enumerate(ctx):
                if i <= j < i + max_answer and p_start[a] * p_end[b] > best[0]:
                    best = (p_start[a] * p_end[b], offsets[w][i][0], offsets[w][j][1])
    return (*best, len(offsets))


def test_qa_best_span_over_windows(world, capsys):
    score, start, end, windows = _best_span_by_hand(world, 32, 8, 5)
    assert windows >= 4  # the context needs several windows: the stride path runs
    code, out, err = _run(capsys, world["question-answering"], QUESTION, "--context", CONTEXT, "--base", world["base"],
                          "--json", "--max-length", "32", "--doc-stride", "8", "--max-answer-length", "5")
    assert code == 0, err
    (row,) = _json_rows(out)
    assert (row["start"], row["end"]) == (start, end)
    assert row["answer"] == CONTEXT[start:end] and row["score"] == pytest.approx(score, rel=1e-4)

    runner = prepare(str(world["question-answering"]), base=world["base"])
    (ans,) = runner.run([{"question": QUESTION, "context": CONTEXT}], max_length=32, doc_stride=8, max_answer_length=5)
    assert (ans.start, ans.end, ans.answer) == (start, end, CONTEXT[start:end])


def test_qa_defaults_use_the_base_limit_and_context_file(world, capsys, tmp_path):
    score, start, end, windows = _best_span_by_hand(world, 64, 16, 30)  # 64 positions; stride 64 // 4
    assert windows >= 2
    ctx = tmp_path / "context.txt"
    ctx.write_text(CONTEXT)
    code, out, err = _run(capsys, world["question-answering"], QUESTION, "--context-file", ctx, "--base",
                          world["base"], "--json")
    assert code == 0, err
    (row,) = _json_rows(out)
    assert (row["start"], row["end"]) == (start, end) and row["score"] == pytest.approx(score, rel=1e-4)


# --- multiple choice --------------------------------------------------------------------------------

def test_multiple_choice_softmax_over_candidates(world, capsys, tmp_path):
    prompt, choices = "alice lives in", ["paris", "the old river", "a good movie"]
    tok = _tokenizer(world)
    model = reference_model("AutoModelForMultipleChoice", world["base"], world["multiple-choice"])
    enc = tok([prompt] * 3, choices, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = torch.softmax(model(**{k: v[None] for k, v in enc.items()}).logits[0], -1)
    assert float(expected.max() - expected.min()) > 1e-3  # the head tells the candidates apart
    code, out, err = _run(capsys, world["multiple-choice"], prompt, *(a for c in choices for a in ("--choice", c)),
                          "--base", world["base"], "--json")
    assert code == 0, err
    (row,) = _json_rows(out)
    assert row["probabilities"] == pytest.approx(expected.tolist(), abs=1e-5)
    assert row["answer"] == choices[int(expected.argmax())] == choices[row["choice"]]

    mixed = tmp_path / "mc.jsonl"  # different candidate counts in one batch
    mixed.write_text(json.dumps({"text": prompt, "choices": choices}) + "\n"
                     + json.dumps({"text": "bob works in", "choices": ["london", "berlin"]}) + "\n")
    code, out, err = _run(capsys, world["multiple-choice"], "--file", mixed, "--base", world["base"], "--json")
    assert code == 0, err
    first, second = _json_rows(out)
    assert first["probabilities"] == row["probabilities"] and len(second["probabilities"]) == 2


# --- bad input --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("adapter", "args", "message"), [
    ("question-answering", ["   ", "--context", CONTEXT], "non-empty 'question'"),
    ("question-answering", [QUESTION], "has no context"),
    ("question-answering", [QUESTION, "--context", ""], "non-empty 'context'"),
    ("question-answering", [QUESTION, "--context", CONTEXT, "--threshold", "0.3"], "threshold"),
    ("question-answering", ["alice " * 40, "--context", CONTEXT, "--max-length", "32"], "shorten the question"),
    ("question-answering", [QUESTION, "--context", CONTEXT, "--max-length", "32", "--doc-stride", "26"],
     "not more than the stride 26"),
    ("classification", ["alice", "--context", CONTEXT], "--context does not apply"),
    ("classification", ["alice", "--threshold", "0.2"], "multilabel"),
    ("token-classification", ["alice", "--pair", "bob"], "--pair does not apply"),
    ("token-classification", ["alice", "--aggregation", "first", "--doc-stride", "3"], "doc_stride"),
    ("multiple-choice", ["alice", "--choice", "bob"], "at least two"),
    ("multiple-choice", ["alice"], "has no choices"),
    ("classification", ["alice", "--choice", "bob", "--choice", "paris"], "--choice does not apply"),
])
def test_bad_input_is_a_typed_error_exit_1(world, capsys, adapter, args, message):
    code, out, err = _run(capsys, world[adapter], *args, "--base", world["base"])
    assert code == 1 and message in err and out == "", err


def test_mixed_pairs_and_missing_fields_are_refused(world, tmp_path, capsys):
    runner = prepare(str(world["classification"]), base=world["base"])
    with pytest.raises(InvalidArgumentError, match="some inputs have a text_pair"):
        runner.run(["alice", {"text": "bob", "text_pair": "alice"}])
    with pytest.raises(InvalidArgumentError, match="classify\\(\\) needs a classification head"):
        prepare(str(world["regression"]), base=world["base"]).classify(["alice"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "who?"}\n')
    code, _, err = _run(capsys, world["question-answering"], "--file", bad, "--base", world["base"])
    assert code == 1 and "non-empty 'context'" in err


def test_a_head_no_task_serves_is_refused_before_any_fetch(world, tmp_path, monkeypatch, capsys):
    from adapterhub.tasks import dispatch

    monkeypatch.delitem(dispatch.TASKS, "choice")
    with pytest.raises(SchemaError, match="no 'choice' task") as info:  # no base is looked for: none is given
        prepare(str(world["multiple-choice"]), base=tmp_path / "no-base-here", offline=True)
    assert "question-answering" in str(info.value)  # names what can run
    code, out, err = _run(capsys, world["multiple-choice"], "alice", "--choice", "a", "--choice", "b")
    assert code == 1 and "no 'choice' task" in err and out == ""


def test_run_help_and_usage_errors_import_no_torch():
    code = ("import sys; from adapterhub.cli import main\n"
            "for args in (['run', '--help'], ['run', 'x']):\n"
            "    try: main(args)\n"
            "    except SystemExit: pass\n"
            "bad = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
            "assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
