"""Weight-space averaging (``adapterhub.compose.average``): exact soups of every method, on real tiny models.

Exactness is checked where it is defined: merged weights (LoRA, DoRA, IA3) and tensors (bottleneck,
Compacter). The ``adapters`` library's composition fixtures are reproduced where they define the
same thing (its output ``Average`` of LoRA divides twice: coefficients 1/N^2).
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file
from support.paths import REFERENCE
from support.runtime_helpers import hidden, inputs_for, tiny_model
from support.tolerances import assert_close, model_terms

from adapterhub.compose.average import (
    Average,
    SoupPackage,
    WeightedSum,
    save_soup,
    soup_record,
    tensors_digest,
)
from adapterhub.errors import CompositionError, IncompatibleBaseError, WeightMismatchError
from adapterhub.runtime import AdapterModel, read_adapter_dir, wrap
from adapterhub.runtime.fingerprint import CONTAINER

FIXTURES = REFERENCE / "adapters"

CONFIGS = {
    "lora": dict(r=4, alpha=8, init_weights="bert", target_modules=["q", "v", "ffn_out"]),
    "dora": dict(r=3, alpha=6, init_weights="bert", target_modules=["q", "v"]),
    "ia3": dict(target_modules=["k", "v", "ffn_out"], feedforward_modules=["ffn_out"]),
    "bottleneck": dict(variant="pfeiffer", reduction_factor=4),
    "compacter": dict(variant="compacter++", reduction_factor=4, phm_dim=4),
}


def _noisy(ah: AdapterModel, name: str, seed: int) -> None:
    """Make every adapter tensor non-trivial (IA3 starts at 1, DoRA's magnitude at the row norms)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, p in ah.container[name].named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(p + 0.3 * noise if key.endswith(("ia3_l", "magnitude")) else 0.3 * noise)


def _ingredients(arch: str, method: str, n: int = 3, overrides: dict | None = None):
    model = tiny_model(arch)
    ah = wrap(model)
    for i in range(n):
        cfg = {**CONFIGS[method], **((overrides or {}).get(i) or {})}
        ah.add(f"i{i}", method, seed=i, activate=False, **cfg)
        _noisy(ah, f"i{i}", 100 + i)
    return model, ah, [ah.package(f"i{i}") for i in range(n)]


def _base_state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().double() for k, v in model.state_dict().items() if CONTAINER not in k}


def _merged(ah: AdapterModel, pkg) -> dict[str, torch.Tensor]:
    """All base weights with ``pkg`` merged (then restored, with what was active)."""
    before = ah.active
    name = ah.load_package(pkg, name="probe")  # loading makes it what runs; merging then keeps that
    ah.merge(name)
    state = _base_state(ah.model)
    ah.remove(name)
    ah.activate(*before)
    return state


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert set(a) == set(b)
    return max((a[k] - b[k]).abs().max().item() for k in a)


# A merged weight is W + sum of (concatenated) rank-r products, each merge rounded in fp32.
MERGE_TERMS = 16


def _assert_same_weights(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    """Merged base weights (fp32 merges, held in float64) equal ``want`` to fp32 rounding, tensor by tensor."""
    assert set(got) == set(want)
    for k in got:
        assert_close(got[k], want[k], terms=MERGE_TERMS, dtype=torch.float32, what=f"{k}: ")


# --- identity and weights --------------------------------------------------------------------------
@pytest.mark.parametrize("method", list(CONFIGS))
def test_average_of_identical_adapters_is_the_adapter(method):
    model, ah, (a, *_rest) = _ingredients("bert", method, n=1)
    twin = copy.deepcopy(a)
    soup = Average(a, twin, model=ah)
    assert isinstance(soup, SoupPackage) and soup.method == method
    inputs = inputs_for("bert")
    ah.activate("i0")
    want = hidden(model, inputs)
    if method in ("bottleneck", "compacter", "ia3"):  # (a + a) / 2 is exact in binary floating point: same bytes
        assert soup.tensors.keys() == a.tensors.keys()
        for k in a.tensors:
            assert torch.equal(soup.tensors[k], a.tensors[k]), k
    else:
        _assert_same_weights(_merged(ah, soup), _merged(ah, a))
    ah.deactivate()
    ah.load_package(soup, name="soup")
    assert_close(hidden(model, inputs), want, terms=model_terms(model))


def test_identical_lora_truncated_back_to_its_rank_is_exact():
    _model, ah, (a,) = _ingredients("bert", "lora", n=1)
    soup = Average(a, copy.deepcopy(a), rank=4)
    assert soup.config["r"] == 4 and soup.tensors["layers.0.q.lora_A"].shape == (4, 32)
    assert soup.soup["relative_error"] <= 1e-6  # already relative: fp32 SVD rounding
    _assert_same_weights(_merged(ah, soup), _merged(ah, a))


def test_weights_are_validated_not_silently_fixed():
    _model, _ah, (a, b, c) = _ingredients("bert", "ia3")
    with pytest.raises(CompositionError, match="sum to 3, not 1.*normalize=True"):
        Average(a, b, c, weights=[1, 1, 1])
    with pytest.raises(CompositionError, match=">= 0.*WeightedSum"):
        Average(a, b, weights=[1.5, -0.5])
    with pytest.raises(CompositionError, match=">= 0"):
        Average(a, b, weights=[2, -1], normalize=True)
    with pytest.raises(CompositionError, match="2 weights for 3 ingredients"):
        Average(a, b, c, weights=[0.5, 0.5])
    with pytest.raises(CompositionError, match="finite"):
        Average(a, b, weights=[float("nan"), 1])
    with pytest.raises(CompositionError, match="nothing to average"):
        Average()
    norm = Average(a, b, c, weights=[2, 1, 1], normalize=True)
    explicit = Average(a, b, c, weights=[0.5, 0.25, 0.25])
    assert norm.soup["coefficients"] == [0.5, 0.25, 0.25]
    for k in norm.tensors:  # [2, 1, 1] / 4 is exactly [0.5, 0.25, 0.25]: the same computation, same bytes
        assert torch.equal(norm.tensors[k], explicit.tensors[k])
    uniform = Average(a, b, c)
    assert uniform.soup["coefficients"] == pytest.approx([1 / 3] * 3)


# --- exactness in the merged-weight sense ----------------------------------------------------------
@pytest.mark.parametrize("arch", ["bert", "gpt2", "llama"])
@pytest.mark.parametrize("method", ["lora", "dora", "ia3"])
def test_average_equals_average_of_merged_weights(arch, method):
    # LoRA ingredients with different ranks and rsLoRA: each scaling is folded in exactly
    overrides = {1: {"r": 2, "alpha": 3, "use_rslora": True}} if method in ("lora", "dora") else {}
    model, ah, pkgs = _ingredients(arch, method, overrides=overrides)
    weights = [0.5, 0.3, 0.2]
    soup = Average(*pkgs, weights=weights, model=ah)
    merged = [_merged(ah, p) for p in pkgs]
    want = {k: sum(w * m[k] for w, m in zip(weights, merged, strict=True)) for k in merged[0]}
    _assert_same_weights(_merged(ah, soup), want)
    if method != "ia3":
        assert soup.config["r"] == sum(int(p.config["r"]) for p in pkgs) == soup.soup["rank"]
    # a different base model: the soup is the same tensors, so it is still exact there for LoRA/IA3
    base = _base_state(model)
    assert _max_diff(base, _base_state(model)) == 0  # nothing was left merged (removal restores a saved copy)


@pytest.mark.parametrize("method", ["lora", "dora", "ia3", "bottleneck"])
def test_weighted_sum_is_task_arithmetic(method):
    _model, ah, (a, b, c) = _ingredients("bert", method)
    coeffs = [1.5, -0.7, 0.4]
    soup = WeightedSum(a, b, c, coefficients=coeffs, model=ah, head=False)
    if method == "bottleneck":
        for k in a.tensors:
            want = 1.5 * a.tensors[k].double() - 0.7 * b.tensors[k].double() + 0.4 * c.tensors[k].double()
            assert_close(soup.tensors[k], want, terms=3, what=f"{k}: ")
        return
    base = _base_state(ah.model)
    merged = [_merged(ah, p) for p in (a, b, c)]
    want = {k: base[k] + sum(w * (m[k] - base[k]) for w, m in zip(coeffs, merged, strict=True)) for k in base}
    _assert_same_weights(_merged(ah, soup), want)


def test_svd_truncation_reports_the_true_frobenius_error():
    _model, ah, pkgs = _ingredients("bert", "lora")
    base = _base_state(ah.model)
    exact = Average(*pkgs)
    cut = Average(*pkgs, rank=3)
    assert cut.config == {**exact.config, "r": 3, "alpha": 3} and cut.soup["form"] == "svd"
    w_exact, w_cut = _merged(ah, exact), _merged(ah, cut)
    num = den = 0.0
    for t in [k for k in base if k.endswith("weight") and not torch.equal(w_exact[k], base[k])]:
        prefix = {"query": "q", "value": "v"}.get(t.split(".")[-2], "ffn_out")
        slot = f"layers.{t.split('.')[2]}.{prefix}"
        err = torch.linalg.norm(w_cut[t] - w_exact[t]).item()
        size = torch.linalg.norm(w_exact[t] - base[t]).item()
        assert cut.slot_errors[slot] == pytest.approx(err / size, rel=1e-4, abs=1e-7), slot
        num, den = num + err**2, den + size**2
    assert len(cut.slot_errors) == 6
    assert cut.soup["relative_error"] == pytest.approx((num / den) ** 0.5, rel=1e-4)
    assert 0.01 < cut.soup["relative_error"] < 1  # a real truncation, not a no-op
    # a rank at or above the concatenated rank is exact (zero-padded)
    full = Average(*pkgs, rank=12)
    assert full.soup["relative_error"] <= 1e-6  # already relative: fp32 SVD rounding
    _assert_same_weights(_merged(ah, full), w_exact)


def test_dora_truncation_error_is_the_merged_weight_error():
    _model, ah, pkgs = _ingredients("bert", "dora")
    base = _base_state(ah.model)
    exact, cut = Average(*pkgs, model=ah), Average(*pkgs, model=ah, rank=2)
    w_exact, w_cut = _merged(ah, exact), _merged(ah, cut)
    keys = [k for k in base if not torch.equal(w_exact[k], base[k])]
    num = sum(torch.linalg.norm(w_cut[k] - w_exact[k]).item() ** 2 for k in keys)
    den = sum(torch.linalg.norm(w_exact[k] - base[k]).item() ** 2 for k in keys)
    assert cut.soup["relative_error"] == pytest.approx((num / den) ** 0.5, rel=1e-3)
    assert cut.soup["relative_error"] > 1e-3


def test_dora_needs_the_base_model():
    _model, _ah, pkgs = _ingredients("bert", "dora", n=2)
    with pytest.raises(CompositionError, match="needs the base model"):
        Average(*pkgs)
    other = wrap(tiny_model("bert", seed=7))
    with pytest.raises(IncompatibleBaseError, match="fingerprint"):
        Average(*pkgs, model=other)


def test_bottleneck_and_compacter_average_is_the_parameter_average_divided_once():
    for method in ("bottleneck", "compacter"):
        _model, _ah, (a, b, _c) = _ingredients("bert", method)
        soup = Average(a, b, weights=[0.25, 0.75])
        assert soup.soup["form"] == "parameters"
        if method == "compacter":
            assert "shared.phm_rule" in soup.tensors
        for k in a.tensors:
            want = (0.25 * a.tensors[k].double() + 0.75 * b.tensors[k].double()).float()
            assert torch.equal(soup.tensors[k], want), k  # one rounding from float64, as the soup does: same bytes


# --- refusals --------------------------------------------------------------------------------------
def test_mixed_methods_configs_bases_and_heads_are_refused():
    _m, _ah, (lora,) = _ingredients("bert", "lora", n=1)
    _m, _ah, (ia3,) = _ingredients("bert", "ia3", n=1)
    with pytest.raises(CompositionError, match=r"different methods: #0 \(i0\)=lora, #1 \(i0\)=ia3"):
        Average(lora, ia3)
    _m, _ah, (q, qv) = _ingredients("bert", "lora", n=2, overrides={0: {"target_modules": ["q"]}})
    with pytest.raises(CompositionError, match=r"target_modules: \['q'\] vs \['q', 'v', 'ffn_out'\]"):
        Average(q, qv)
    _m, _ah, (pf, ho) = _ingredients("bert", "bottleneck", n=2, overrides={1: {"variant": "houlsby"}})
    with pytest.raises(CompositionError, match="variant: 'pfeiffer' vs 'houlsby'"):
        Average(pf, ho)
    _m, _ah, (rf4, rf8) = _ingredients("bert", "bottleneck", n=2, overrides={1: {"reduction_factor": 8}})
    with pytest.raises(CompositionError, match="reduction_factor: 4 vs 8"):
        Average(rf4, rf8)
    other = wrap(tiny_model("bert", hidden_size=48))
    other.add("x", "lora", **CONFIGS["lora"])
    with pytest.raises(IncompatibleBaseError, match="hidden_size 32 vs 48"):
        Average(lora, other.package("x"))
    headed = copy.deepcopy(lora)
    headed.head = {"classifier.weight": torch.zeros(2, 32)}
    with pytest.raises(WeightMismatchError, match="head"):
        Average(lora, headed)
    with pytest.raises(CompositionError, match="lora/dora only"):
        Average(ia3, copy.deepcopy(ia3), rank=2)


def test_weighted_sum_with_heads_needs_a_decision():
    from support.runtime_helpers import tiny_config
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_config(tiny_config("bert", num_labels=2)).eval()
    ah = wrap(model)
    ah.add("a", "lora", **CONFIGS["lora"], activate=False)
    pa = ah.package("a")
    pb = copy.deepcopy(pa)
    pb.head = {k: v + 1 for k, v in pa.head.items()}
    with pytest.raises(CompositionError, match="head=False"):
        WeightedSum(pa, pb, coefficients=[1, 1])
    assert WeightedSum(pa, pb, coefficients=[1, 1], head=False).head == {}
    avg = Average(pa, pb)
    for k in pa.head:
        assert torch.allclose(avg.head[k], pa.head[k] + 0.5)
    assert avg.head_type == "classification" and avg.num_labels == 2


# --- save / validate / load -------------------------------------------------------------------------
def test_soup_round_trip_records_its_ingredients(tmp_path):
    from adapterhub.manifest.validate import validate_path

    model, ah, pkgs = _ingredients("bert", "lora")
    soup = Average(*pkgs, weights=[0.2, 0.3, 0.5], name="my-soup")
    path = save_soup(soup, tmp_path / "soup", version="1.0.0", license="apache-2.0",
                     metrics=[{"dataset": "toy", "split": "held-out", "name": "score", "value": 0.5}])
    assert validate_path(tmp_path / "soup").ok
    doc = json.loads(path.read_text())
    rec = doc["x-soup"]
    assert rec["kind"] == "average" and rec["form"] == "concatenated-rank" and rec["rank"] == 12
    assert [i["coefficient"] for i in rec["ingredients"]] == [0.2, 0.3, 0.5]
    assert [i["digest"] for i in rec["ingredients"]] == [tensors_digest(p) for p in pkgs]
    assert doc["metrics"][0]["value"] == 0.5 and doc["name"] == "my-soup"
    loaded = read_adapter_dir(tmp_path / "soup")
    assert soup_record(loaded) == rec
    inputs = inputs_for("bert")
    ah.load_package(soup, name="mem")
    want = hidden(model, inputs)
    ah.remove("mem")
    ah.load(tmp_path / "soup", name="disk")
    # the same values in new memory: kernels may round differently by alignment, so not bit-equality
    assert_close(hidden(model, inputs), want, terms=model_terms(model))
    assert all(torch.equal(ah.container["disk"].get(k), t) for k, t in soup.tensors.items())  # bytes round-trip


# --- the adapters library's fixtures ---------------------------------------------------------------
LORA_ARCHS = sorted(p.parent.parent.name for p in FIXTURES.glob("*/average_lora/case.json"))


@pytest.mark.parametrize("arch", LORA_ARCHS)
def test_adapters_library_average_lora_fixture_is_weighted_sum_with_1_over_n_squared(arch):
    """Its output ``Average(a, b)`` of LoRAs is linear per layer, so weight space reproduces it exactly:
    the library divides twice (weights 1/N, then a mean over N), i.e. coefficients 1/N^2 = 1/4."""
    import transformers

    case = FIXTURES / arch / "average_lora"
    meta = json.loads((case / "case.json").read_text())
    io = load_file(str(case / "io.safetensors"))
    inputs = {k: io[k] for k in meta["inputs"]}
    mask = io["attention_mask"].bool()

    def run(pkg) -> torch.Tensor:
        cls = getattr(transformers, meta["base_class"])
        model = cls.from_pretrained(str(FIXTURES.parent / meta["base"]), attn_implementation="eager").eval()
        h = AdapterModel(model)
        h.load_package(pkg, name="soup")
        with torch.no_grad():
            out = model(**inputs).last_hidden_state
        return out if arch == "t5" else out[mask]

    binding = AdapterModel(getattr(transformers, meta["base_class"]).from_pretrained(
        str(FIXTURES.parent / meta["base"]), attn_implementation="eager")).binding
    a, b = (read_adapter_dir(case / "safetensors" / n, binding) for n in ("a", "b"))
    want = io["expected"] if arch == "t5" else io["expected"][mask]
    emulated = run(WeightedSum(a, b, coefficients=[0.25, 0.25]))
    assert_close(emulated, want, terms=model_terms(binding.root))
    ours = run(Average(a, b))  # divided once: a different (and intended) adapter
    assert (ours - want).abs().max().item() > 1e-3


# --- live: the adapters library's own parameter averaging (average_adapter) --------------------------
@pytest.mark.parametrize("case,strategy", [("average_seq_bn", "linear"), ("average_lora", "lora_delta_w_svd")])
def test_adapters_library_average_adapter_live(case, strategy):
    """``average_adapter`` (parameter averaging, divided once) vs ours, on the fixture's a and b."""
    adapters = pytest.importorskip("adapters", reason="the adapters library is not installed here")
    import transformers

    root = FIXTURES / "bert" / case
    meta = json.loads((root / "case.json").read_text())
    io = load_file(str(root / "io.safetensors"))
    inputs = {k: io[k] for k in meta["inputs"]}
    mask = io["attention_mask"].bool()
    base_dir = str(FIXTURES.parent / meta["base"])

    lib = adapters.BertAdapterModel.from_pretrained(base_dir, attn_implementation="eager").eval()
    for n in ("a", "b"):
        lib.load_adapter(str(root / "safetensors" / n), load_as=n, use_safetensors=True)
    extra = {"svd_rank": 8} if strategy == "lora_delta_w_svd" else {}
    lib.average_adapter("avg", ["a", "b"], weights=[0.3, 0.7], combine_strategy=strategy, **extra)
    lib.set_active_adapters("avg")
    with torch.no_grad():
        want = lib.base_model(**inputs).last_hidden_state[mask]

    model = transformers.BertModel.from_pretrained(base_dir, attn_implementation="eager").eval()
    h = AdapterModel(model)
    a, b = (read_adapter_dir(root / "safetensors" / n, h.binding) for n in ("a", "b"))
    soup = Average(a, b, weights=[0.3, 0.7], **({"rank": 8} if extra else {}))
    h.load_package(soup, name="avg")
    with torch.no_grad():
        got = model(**inputs).last_hidden_state[mask]
    assert_close(got, want, terms=model_terms(model))
