"""A tiny BERT base with sub-word vocabulary and tiny adapters with a head of each type, for the task tests.

Heads and adapters get random non-zero weights, so every output depends on them; the manifest names
base :data:`REPO_ID` and records the base's fingerprint (``--base`` points at the directory).
"""

from __future__ import annotations

import inspect
from pathlib import Path

from support.base_fetch_support import pin_base

REPO_ID = "tiny-org/tiny-tasks-bert"
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "alice", "bob", "lives", "works", "in", "paris", "london",
         "berlin", "the", "a", "city", "of", "and", "is", "who", "where", "does", "what", "good", "bad", "movie",
         "film", "river", "big", "old", "new", "##s", "##ing", "##er", "##ly", ",", ".", "?"]
TOKEN_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "MISC"]
TASK_TYPES = {"classification": "text-classification", "multilabel-classification": "text-classification",
              "regression": "regression", "token-classification": "token-classification",
              "question-answering": "question-answering", "multiple-choice": "multiple-choice"}


def save_tiny_base(directory: Path, seed: int = 0) -> Path:
    """A random 2-layer BERT (hidden 32, 64 positions) and its WordPiece tokenizer over :data:`VOCAB`."""
    import torch
    from transformers import AutoConfig, AutoModel, BertTokenizerFast

    directory.mkdir(parents=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    torch.manual_seed(seed)
    config = AutoConfig.for_model("bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=37, vocab_size=len(VOCAB), max_position_embeddings=64)
    AutoModel.from_config(config).save_pretrained(directory)
    # transformers 5 names the argument ``vocab`` (a path or a dict); 4.x ``vocab_file`` (5 ignores that one)
    named = "vocab_file" if "vocab_file" in inspect.signature(BertTokenizerFast.__init__).parameters else "vocab"
    BertTokenizerFast(**{named: str(vocab)}).save_pretrained(directory)
    return directory


def make_task_adapter(base_dir: Path, out: Path, head_type: str, labels: list[str] | None, seed: int = 3) -> Path:
    """A Houlsby adapter with a ``head_type`` head on ``base_dir`` (random, non-trivial weights)."""
    import torch

    from adapterhub.runtime import wrap
    from adapterhub.runtime.heads import head_parameters
    from adapterhub.tasks.loading import load_task_model

    model, _ = load_task_model(base_dir, head_type, len(labels) if labels else None)
    ah = wrap(model)
    ah.add("tiny-task", "bottleneck", variant="houlsby", seed=seed)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.adapterhub_adapters.parameters():
            p.normal_(0, 0.2)
        for p in head_parameters(model).values():
            p.normal_(0, 1.0)
    task = {"type": TASK_TYPES[head_type], "name": head_type, **({"labels": labels} if labels else {})}
    ah.save("tiny-task", out, version="1.0.0", license="apache-2.0", task=task)
    return pin_base(out, REPO_ID, None)


def reference_model(cls_name: str, base_dir: Path, adapter: Path, **kwargs: object):
    """The task model built by hand with transformers, the adapter attached by the runtime API."""
    import transformers

    from adapterhub.runtime import wrap

    model = getattr(transformers, cls_name).from_pretrained(base_dir, **kwargs).eval()
    wrap(model).load(adapter)
    return model
