"""Shared pieces of the publishing tests: a tiny BERT with a saved adapter, the CLI runner, outputs."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from click.testing import CliRunner, Result

from adapterhub.cli import cli
from adapterhub.registry import open_index
from adapterhub.resources import bundled_index_dir
from support.runtime_helpers import tiny_config
from support.tolerances import assert_close, model_terms

INPUT_IDS = torch.tensor([[5, 17, 42, 8, 91, 3, 60], [7, 7, 12, 33, 64, 2, 11]])


@dataclass
class Saved:
    """A base model saved with save_pretrained, and an adapter trained on it saved with AdapterModel.save."""

    base_dir: Path
    adapter_dir: Path
    expected: torch.Tensor
    """Logits of the base + adapter before anything was published."""


def make_model(seed: int = 0):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_config(tiny_config("bert", num_labels=2)).eval()


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=INPUT_IDS).logits


def save_adapter(tmp: Path, method: str = "bottleneck", seed: int = 0, **config) -> Saved:
    """Random-init base; adapter weights randomised too (a fresh LoRA/bottleneck is nearly a no-op)."""
    from adapterhub.runtime import wrap

    model = make_model(seed)
    base_dir = tmp / "base"
    model.save_pretrained(base_dir)
    ah = wrap(model)
    ah.add("sst", method, **(config or {"variant": "houlsby"}))
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in ah.container.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        model.classifier.weight.copy_(torch.randn(model.classifier.weight.shape, generator=g))
    expected = logits(model)
    adapter_dir = tmp / "sst-adapter"
    ah.save("sst", adapter_dir)
    return Saved(base_dir, adapter_dir, expected)


def run(*args: str, input: str | None = None) -> Result:
    result = CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=True)
    return result


def ok(*args: str, input: str | None = None) -> Result:
    result = run(*args, input=input)
    assert result.exit_code == 0, (result.output, result.exception)
    return result


INIT_FLAGS = ("--yes", "--name", "tiny-sst", "--version", "1.0.0", "--license", "apache-2.0",
              "--description", "Houlsby adapter for SST-2 on a tiny BERT", "--author", "Ada",
              "--task-type", "text-classification", "--task-name", "sst2", "--dataset", "glue/sst2",
              "--language", "en", "--base-id", "org/tiny-bert",
              "--metric", "glue/sst2:validation:accuracy=0.875", "--metric", "glue/sst2:validation:f1=0.86")


def init_and_package(saved: Saved, *extra: str) -> Path:
    ok("init", saved.adapter_dir, "--base", saved.base_dir, *INIT_FLAGS, *extra)
    ok("package", saved.adapter_dir)
    return saved.adapter_dir


def load_logits(base_dir: Path, adapter_path: Path) -> torch.Tensor:
    from transformers import AutoModelForSequenceClassification

    from adapterhub.runtime import wrap

    model = AutoModelForSequenceClassification.from_pretrained(base_dir).eval()
    wrap(model).load(adapter_path)
    return logits(model)


def sample_adapter(dest: Path) -> Path:
    """sst2-houlsby as a packaged adapter directory, from the bundled index and mirror (no model needed)."""
    bundled = bundled_index_dir()
    (entry,) = [e for e in open_index(bundled).entries("sst2-houlsby") if e.version == "1.0.0"]
    dest.mkdir()
    manifest = dict(entry.raw_manifest)
    manifest.pop("sources", None)
    for f in manifest["files"]:
        shutil.copyfile(bundled / "mirror" / f["sha256"], dest / f["path"])
    (dest / "adapterhub.json").write_text(json.dumps(manifest))
    return dest
def assert_same_logits(got: torch.Tensor, want: torch.Tensor) -> None:
    """Logits of a freshly loaded model vs those computed before publishing: another model instance, whose
    weights sit elsewhere in memory, so equal up to rounding (``tests/support/tolerances.py``), not bit for bit."""
    assert_close(got, want, terms=model_terms(tiny_config("bert")))
