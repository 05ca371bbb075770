"""Load a base directory as the transformers task model class an adapter's head needs.

The base's own task head (if any) is ignored on purpose: the adapter brings its head, which
:meth:`~adapterhub.runtime.AdapterModel.load` checks tensor by tensor. Only local files are read and
transformers' progress bars and "newly initialized" warnings stay off (they would land in piped output).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import SchemaError, SchemaProblem
from ..progress import quiet_hf_loading

AUTO_CLASSES: dict[str, str] = {
    "classification": "AutoModelForSequenceClassification",
    "multilabel-classification": "AutoModelForSequenceClassification",
    "regression": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "question-answering": "AutoModelForQuestionAnswering",
    "multiple-choice": "AutoModelForMultipleChoice",
}
"""Head type -> transformers auto class (``lm`` picks causal or seq2seq from the base config)."""
PROBLEM_TYPES = {"multilabel-classification": "multi_label_classification"}
LABELLED = frozenset({"classification", "multilabel-classification", "token-classification"})
"""Head types whose output layer has one row per label (``num_labels`` required)."""


def is_encoder_decoder(base_dir: str | Path) -> bool:
    """Whether the base is an encoder-decoder (T5, BART...): its ``config.json`` says so."""
    from transformers import AutoConfig

    return bool(getattr(AutoConfig.from_pretrained(str(base_dir), local_files_only=True), "is_encoder_decoder", False))


def auto_class_name(head_type: str, base_dir: str | Path | None = None) -> str:
    """The transformers auto class for ``head_type`` (``lm``: seq2seq when the base is encoder-decoder)."""
    if head_type == "lm":
        seq2seq = base_dir is not None and is_encoder_decoder(base_dir)
        return "AutoModelForSeq2SeqLM" if seq2seq else "AutoModelForCausalLM"
    if head_type not in AUTO_CLASSES:
        raise SchemaError(str(base_dir or head_type), [SchemaProblem(
            "/head/type", f"no task model class for head type {head_type!r}; known: {', '.join(sorted(AUTO_CLASSES))}, lm")])
    return AUTO_CLASSES[head_type]


def task_model_kwargs(head_type: str, num_labels: int | None) -> dict[str, Any]:
    """``from_pretrained`` arguments that shape the head as the adapter's: label count and problem type."""
    if head_type == "regression":
        return {"num_labels": 1, "problem_type": "regression"}
    if head_type in LABELLED:
        if not num_labels:
            raise SchemaError(head_type, [SchemaProblem("/head/num_labels", f"a {head_type} head needs num_labels")])
        return {"num_labels": num_labels, **({"problem_type": PROBLEM_TYPES[head_type]}
                                             if head_type in PROBLEM_TYPES else {})}
    return {}


def load_task_model(base_dir: str | Path, head_type: str, num_labels: int | None = None, *,
                    dtype: Any = None) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a local base directory as the task model of ``head_type``, in eval mode.

    Without ``dtype`` the weights are float32 whatever the checkpoint stores (the adapters' arithmetic
    and the recorded fingerprints assume it).
    """
    import torch
    import transformers

    cls = getattr(transformers, auto_class_name(head_type, base_dir))
    with quiet_hf_loading():  # "newly initialized classifier" is expected: the adapter brings it
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
        model = cls.from_pretrained(str(base_dir), local_files_only=True, **task_model_kwargs(head_type, num_labels),
                                    **({"dtype": dtype} if dtype is not None else {}))
    model.eval()
    if dtype is None and next(model.parameters()).dtype != torch.float32:
        model = model.float()
    return model, tokenizer
