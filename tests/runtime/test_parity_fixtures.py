"""Parity with the reference libraries on the committed fixtures (``tests/fixtures/reference``).

Each case: load the tiny base, load the reference library's saved adapter directory through our
interop (``adapters`` library: both the ``.bin`` and the safetensors save; PEFT: ``saved/``), run
the recorded inputs and compare with the recorded output in fp32, within a tolerance scaled by the output's
magnitude and the model's summed terms (``tests/support/tolerances.py``). Runs under transformers 4.57 and 5.x
alike: the fixtures pin the expected numbers, not the library.

Where the reference library is installed, ``test_parity_float64`` proves the match is exact math, not
luck within a tolerance: the library's own loader and ours run the same directory in float64 and agree to
~1e-13 relative.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from support.paths import REFERENCE
from support.tolerances import assert_close, model_terms

from adapterhub import families
from adapterhub.compose import Fuse, Parallel
from adapterhub.errors import WeightMismatchError
from adapterhub.runtime import AdapterModel, arch

ROOT = REFERENCE
WEIGHT_SPACE = ("average_",)  # the library's output-level Average (with its 1/N^2 weighting), not ours
NOT_YET: dict[str, str] = {}
# Cases whose parameters we convert at ingest and store in the source dtype (fp32): in float64 the
# comparison carries one fp32 rounding of each stored value, not of the forward.
STORED_FP32 = {"prefix_tuning": "the library's prefix MLP is collapsed into flat fp32 prefixes when loaded"}


def _cases():
    out = []
    for case_json in sorted(ROOT.glob("*/*/*/case.json")):
        meta = json.loads(case_json.read_text())
        case_dir = case_json.parent
        lib = meta["library"]
        if lib == "adapters":
            flavours = sorted({k for k, v in meta["files"].items() if v})
            for flavour in flavours:
                out.append(pytest.param(case_dir, flavour, id=f"adapters/{meta['arch']}/{meta['case']}/{flavour}"))
        else:
            out.append(pytest.param(case_dir, "saved", id=f"peft/{meta['arch']}/{meta['case']}"))
    return out


CASES = _cases()


def _load_base(meta):
    import transformers

    cls = getattr(transformers, meta["base_class"])
    return cls.from_pretrained(str(ROOT / meta["base"]), attn_implementation="eager").eval()


def _compare(meta, model, got, want, io, *, terms: int | None = None, dtype: torch.dtype | None = None) -> None:
    mask = None
    if meta["model_type"] != "t5":  # T5: the decoder output has no mask, every position counts
        mask = io["attention_mask"].bool()
        if mask.shape[0] != got.shape[0]:  # Parallel: the batch is replicated, the mask repeats
            mask = mask.repeat(got.shape[0] // mask.shape[0], 1)
    assert_close(got, want, terms=model_terms(model) if terms is None else terms, mask=mask, dtype=dtype)


@pytest.mark.skipif(not CASES, reason="no reference fixtures under tests/fixtures/reference")
@pytest.mark.parametrize("case_dir,flavour", CASES)
def test_parity(case_dir: Path, flavour: str):
    meta = json.loads((case_dir / "case.json").read_text())
    case = meta["case"]
    if case.startswith(WEIGHT_SPACE):
        pytest.skip("the library's Average block (each member weighted 1/N^2) is checked in "
                    "tests/compose/test_compose_average.py: average_lora via WeightedSum; average_seq_bn also halves the "
                    "sublayer output, which no adapter's parameters can express (docs/soups.md)")
    if case in NOT_YET:
        pytest.skip(NOT_YET[case])
    model = _load_base(meta)
    if _incomplete(meta, flavour):
        # The library drops shared tensors (Compacter's PHM rule) when saving from a plain model; such a
        # directory cannot reproduce the adapter, so we refuse it instead of inventing the missing tensor.
        handle = AdapterModel(model)
        with pytest.raises(WeightMismatchError, match="missing"):
            handle.load(case_dir / meta["files"][flavour][meta["adapter_names"][0]])
        assert handle.adapters == ()
        return
    io = load_file(str(case_dir / "io.safetensors"))
    _compare(meta, model, _ours(meta, case_dir, flavour, model, io), io["expected"], io)


def _incomplete(meta, flavour: str) -> bool:
    init = meta.get("init_flavour") or {}
    return flavour == "init_safetensors" and init.get("n_keys_saved", 0) < init.get("n_keys_in_adapter_model_save", 0)


def _ours(meta, case_dir: Path, flavour: str, model, io) -> torch.Tensor:
    """Our output: the case's saved directories loaded into ``model`` through our interop."""
    case = meta["case"]
    handle = AdapterModel(model)
    if meta["library"] == "adapters":
        names = meta["adapter_names"]
        for name in names:
            handle.load(case_dir / meta["files"][flavour][name], name=name, activate=False)
        if case.startswith("fuse_"):
            handle.load(case_dir / meta["files"][flavour]["fusion"], name="fusion", activate=False)
            handle.activate(Fuse(*names, fusion="fusion"))
        elif case.startswith("parallel_"):
            handle.activate(Parallel(*names))
        else:
            handle.activate(*names)  # a single adapter, or Stack(a, b) in order
    else:
        handle.load(case_dir / meta["files"]["saved"], name="default")
    return _forward(model, meta, io)


def _forward(model, meta, io) -> torch.Tensor:
    inputs = {k: io[k].clone() for k in meta["inputs"]}  # clones: `adapters` edits a Parallel mask in place
    with torch.no_grad():
        return model(**inputs).last_hidden_state


def _reference(meta, case_dir: Path, flavour: str, io) -> torch.Tensor:
    """The reference library's own output for the case's saved directories, in float64."""
    if meta["library"] == "peft":
        peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
        ref = peft.PeftModel.from_pretrained(_load_base(meta), str(case_dir / meta["files"]["saved"]))
        return _forward(ref.eval().double(), meta, io)
    adapters = pytest.importorskip("adapters", reason="the adapters library is not installed in this environment")
    from adapters.composition import AdapterCompositionBlock, Stack

    ref = getattr(adapters, meta["model_class"]).from_pretrained(str(ROOT / meta["base"]),
                                                                attn_implementation="eager")
    files = meta["files"][flavour]
    safetensors = flavour != "bin"
    for name in meta["adapter_names"]:
        ref.load_adapter(str(case_dir / files[name]), load_as=name, use_safetensors=safetensors)
    if meta.get("fusion"):
        ref.load_adapter_fusion(str(case_dir / files["fusion"]), use_safetensors=safetensors)
    setup = meta.get("active_setup")
    ref.set_active_adapters(AdapterCompositionBlock.from_dict(setup) if setup else Stack(meta["adapter_names"][0]))
    return _forward(ref.eval().double().base_model, meta, io)


def _one_flavour_per_case(cases):
    """``.bin`` and safetensors hold the same tensors: one of them (safetensors first) per case."""
    rank = {"saved": 0, "safetensors": 0, "bin": 1}
    best: dict[Path, object] = {}
    for p in cases:
        case_dir, flavour = p.values
        if case_dir.name.startswith(WEIGHT_SPACE) or case_dir.name in NOT_YET or flavour not in rank:
            continue  # not parity cases (see test_parity)
        if case_dir not in best or rank[flavour] < rank[best[case_dir].values[1]]:
            best[case_dir] = p
    return list(best.values())


FLOAT64_CASES = _one_flavour_per_case(CASES)


@pytest.mark.skipif(not FLOAT64_CASES, reason="no reference fixtures under tests/fixtures/reference")
@pytest.mark.parametrize("case_dir,flavour", FLOAT64_CASES)
def test_parity_float64(case_dir: Path, flavour: str):
    """Ours and the reference library on the same directory, both in float64: equal to rounding (~1e-13
    relative), which a real difference in the math (a scaling, a missed term) could never meet."""
    meta = json.loads((case_dir / "case.json").read_text())
    io = load_file(str(case_dir / "io.safetensors"))
    want = _reference(meta, case_dir, flavour, io)
    model = _load_base(meta).double()
    got = _ours(meta, case_dir, flavour, model, io)
    assert got.dtype == want.dtype == torch.float64
    if meta["case"] in STORED_FP32:  # one rounding of the stored values: fp32's eps, a single term
        _compare(meta, model, got, want, io, terms=1, dtype=torch.float32)
    else:
        _compare(meta, model, got, want, io)


# One case per family fact the readers and methods take from the table: the library's bottleneck and fusion
# containers (bert, t5), T5's per-stack position bias (prefix tuning through the attention interface, 5.x).
# The library's LoRA locations: tests/test_runtime_arch.py (this fixture saves both, which hides a swap).
FAMILY_FACT_CASES = ("adapters/t5/seq_bn", "adapters/bert/fuse_seq_bn", "adapters/t5/prefix_tuning")


@pytest.mark.skipif(not CASES, reason="no reference fixtures under tests/fixtures/reference")
@pytest.mark.parametrize("case", FAMILY_FACT_CASES)
def test_family_facts_travel_with_the_table_entry_not_its_name(case: str, monkeypatch):
    """Every family fact is a field of its ``Family`` entry: with every entry renamed, the same directories
    load to the same outputs (code that tested a family's name would fall back to another layout)."""
    renamed = tuple(dataclasses.replace(f, name=f"{f.name}-renamed") for f in families.FAMILIES)
    monkeypatch.setattr(families, "FAMILIES", renamed)
    case_dir = ROOT / case
    meta = json.loads((case_dir / "case.json").read_text())
    model = _load_base(meta)
    io = load_file(str(case_dir / "io.safetensors"))
    flavour = "safetensors" if meta["files"].get("safetensors") else "bin"
    got = _ours(meta, case_dir, flavour, model, io)
    assert arch.bind(model).family.name.endswith("-renamed")
    _compare(meta, model, got, io["expected"], io)
