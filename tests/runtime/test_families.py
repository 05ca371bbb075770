"""Every supported model type, every method: placement, PEFT parity, ``adapters`` parity, refusals.

Driven by ``tests/support/family_cases.py`` (one tiny config per model type). PEFT's targets are derived from
our own architecture table (the slot paths), so the PEFT comparison checks the table's projections; the
``adapters`` library comparison (transformers 4.57 only; skipped where it is not installed) checks the
bottleneck sites, the library's LoRA locations and the prefix sites. Each comparison runs in fp32 and again in
float64, where the two implementations must agree to rounding: the same math.
"""

from __future__ import annotations

import pytest
import torch
from support.family_cases import (
    CASES,
    case_config,
    case_inputs,
    case_model,
    case_output,
    peft_config,
    valid_positions,
)
from support.tolerances import assert_close, model_terms

from adapterhub.errors import SchemaError, UnsupportedArchitectureError
from adapterhub.families import FUSED_KEYS, Shape, family_for
from adapterhub.runtime import SUPPORTED_MODEL_TYPES, bind, wrap
from adapterhub.runtime.sites import install

MODEL_TYPES = list(CASES)


def _out(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return case_output(model(**inputs), inputs)


def _out64(model, mt: str) -> torch.Tensor:
    """Float64 outputs (the default dtype too: transformers 4.57's CLIP text mask is built with it)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return _out(model.double(), _inputs(mt, torch.float64))
    finally:
        torch.set_default_dtype(before)


def _check(mt: str, got: torch.Tensor, want: torch.Tensor, inputs, model, **kw) -> None:
    assert_close(got, want, terms=model_terms(model), mask=valid_positions(mt, inputs), **kw)


def _inputs(mt: str, dtype: torch.dtype = torch.float32):
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in case_inputs(mt).items()}


def _randomize(model, words) -> None:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if any(w in n for w in words):
                noise = torch.randn(p.shape, generator=g, dtype=p.dtype)
                p.copy_(1 + 0.3 * noise if "ia3_l" in n else 0.3 * noise)


def test_every_model_type_has_a_case_and_there_are_at_least_25():
    assert len(SUPPORTED_MODEL_TYPES) >= 25
    assert sorted(CASES) == sorted(SUPPORTED_MODEL_TYPES)


@pytest.mark.parametrize("mt", MODEL_TYPES)
def test_sites_read_the_sublayer_and_its_residual(mt):
    """The table's bottleneck sites are what the bottleneck math assumes: the attention site's residual is the
    layer input, and with every sublayer output ``h`` replaced by 0 an encoder layer returns its input (pre-LN),
    or its input through the sites' LayerNorms (post-LN)."""
    model = case_model(mt)
    binding = bind(model)
    seen: dict[int, dict[str, torch.Tensor]] = {}

    def zero(index: int, loc: str):
        def fn(h, x):
            seen.setdefault(index, {})[loc] = x
            return torch.zeros_like(h)
        return fn

    fns = {("bn", layer.index, loc): zero(layer.index, loc) for layer in binding.layers for loc in layer.sites}
    io: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = install(binding, fns)
    for layer in binding.layers:
        hooks.append(layer.module.register_forward_hook(
            lambda m, args, out, i=layer.index, kw=None: io.__setitem__(i, (args[0] if args else None, out)),
        ))
        hooks.append(layer.module.register_forward_pre_hook(
            lambda m, args, kwargs, i=layer.index: io.__setitem__(-1 - i, kwargs.get("hidden_states", args[0] if args
                                                                                   else None)), with_kwargs=True))
    try:
        _out(model, case_inputs(mt))
    finally:
        for h in hooks:
            h.remove()
    for layer in binding.layers:
        if layer.decoder:
            continue  # cross-attention sits between the two sites
        x_in = io[-1 - layer.index]
        out = io[layer.index][1]
        out = out[0] if isinstance(out, tuple | list) else out
        assert torch.equal(seen[layer.index]["attention"], x_in), f"{mt} layer {layer.index}: attention residual"
        want = x_in
        for loc in ("attention", "ffn"):
            ln = layer.sites[loc].layer_norm
            if ln:
                want = layer.sub(ln)(want)
        assert_close(out, want.reshape(out.shape), what=f"{mt} layer {layer.index}: ")


@pytest.mark.parametrize("mt", MODEL_TYPES)
@pytest.mark.parametrize("kind", ["lora", "dora", "ia3"])
def test_peft_parity(mt, kind, tmp_path):
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    cfg = peft_config(peft, case_model(mt), kind)
    inputs = _inputs(mt)
    ref = peft.get_peft_model(case_model(mt), cfg)
    _randomize(ref, ("lora_", "ia3_l"))
    ref.eval()
    want = _out(ref, inputs)
    ref.save_pretrained(tmp_path / "peft")
    base = case_model(mt)
    assert (want - _out(base, inputs)).abs().max() > 1e-3  # the adapter has an effect
    wrap(base).load(tmp_path / "peft")
    _check(mt, _out(base, inputs), want, inputs, base)
    ours64 = case_model(mt).double()
    wrap(ours64).load(tmp_path / "peft", force=True)
    _check(mt, _out64(ours64, mt), _out64(ref, mt), inputs, base)


OUR_METHODS = {
    "houlsby": ("bottleneck", dict(variant="houlsby", reduction_factor=4)),
    "pfeiffer": ("bottleneck", dict(variant="pfeiffer", reduction_factor=4)),
    "parallel": ("bottleneck", dict(variant="parallel", reduction_factor=4)),
    "compacter": ("compacter", dict(variant="compacter", reduction_factor=4)),
    "lora": ("lora", dict(r=2, alpha=4, target_modules=["q", "v", "ffn_out"])),
    "dora": ("dora", dict(r=2, alpha=4, target_modules=["q", "v", "ffn_in"])),
    "ia3": ("ia3", dict(target_modules=["k", "v", "ffn_out"], feedforward_modules=["ffn_out"])),
    "loha": ("loha", dict(r=2, alpha=4, target_modules=["q", "v", "o"], init_weights=False)),
    "prefix": ("prefix_tuning", dict(prefix_length=3, bottleneck_size=8)),
}


@pytest.mark.parametrize("mt", MODEL_TYPES)
def test_every_method_attaches_or_is_refused(mt):
    """Each method changes the output once its weights are non-zero and detaching gives the base back bit for
    bit; one the family cannot place raises ``UnsupportedArchitectureError`` naming the family and why."""
    model = case_model(mt)
    inputs = case_inputs(mt)
    base = _out(model, inputs)
    h = wrap(model)
    fam = h.binding.family
    for name, (method, cfg) in OUR_METHODS.items():
        cfg = dict(cfg)
        slots = h.binding.layers[-1].slots
        if "target_modules" in cfg:
            cfg["target_modules"] = [t for t in cfg["target_modules"] if t in slots]
        if method in fam.refuses:
            with pytest.raises(UnsupportedArchitectureError, match=f"{method} cannot be placed on {fam.name}"):
                h.add(name, method, **cfg)
            continue
        try:
            h.add(name, method, **cfg)
        except UnsupportedArchitectureError as err:  # version-dependent: documented in the family's notes
            assert method in fam.notes and "inline" in str(err), (mt, method, err)
            continue
        _randomize(model, (f"adapterhub_adapters.{name}.",))
        assert (_out(model, inputs) - base).abs().max() > 1e-4, (mt, name)
        h.remove(name)
        assert torch.equal(_out(model, inputs), base), (mt, name)
    assert h.adapters == ()


def test_refusal_names_the_family_and_the_reason():
    h = wrap(case_model("deberta-v2"))
    with pytest.raises(UnsupportedArchitectureError, match=r"prefix_tuning cannot be placed on deberta models "
                                                           r"\(deberta, deberta-v2\): disentangled attention"):
        h.add("p", "prefix_tuning", prefix_length=2, bottleneck_size=4)
    assert h.adapters == ()
    v1 = wrap(case_model("deberta"))
    with pytest.raises(SchemaError, match="'q' does not exist in deberta models"):
        v1.add("l", "lora", r=2, alpha=2, target_modules=["q"])
    from transformers import AutoModel

    gqa = wrap(AutoModel.from_config(case_config("phi3", num_key_value_heads=2)))
    with pytest.raises(SchemaError, match="'k' does not exist in phi3 models"):
        gqa.add("l", "lora", r=2, alpha=2, target_modules=["k"])
    gqa.add("l", "lora", r=2, alpha=2, target_modules=["o", "ffn_gate", "ffn_in"])


@pytest.mark.parametrize("mt", [m for m in MODEL_TYPES if CASES[m].inputs == "seq2seq"])
def test_encoder_decoder_numbering_is_global(mt):
    """Encoder layers 0..n-1, decoder layers n..: ``leave_out`` and tensor names use the one numbering."""
    h = wrap(case_model(mt))
    n = h.binding.num_hidden_layers
    assert [layer.decoder for layer in h.binding.layers] == [False] * n + [True] * h.binding.num_decoder_layers
    h.add("b", "bottleneck", variant="pfeiffer", leave_out=[n + 1])
    assert sorted({k.split(".")[1] for k in h.package("b").tensors}) == [str(i) for i in range(n + 1)]
    with pytest.raises(SchemaError):
        h.add("bad", "bottleneck", variant="pfeiffer", leave_out=[n + h.binding.num_decoder_layers])


LIB_CASES = [(mt, c) for mt in MODEL_TYPES for c in CASES[mt].library]


@pytest.mark.parametrize(("mt", "config"), LIB_CASES)
def test_adapters_library_parity(mt, config, tmp_path):
    adapters = pytest.importorskip("adapters", reason="the adapters library is not installed in this environment")
    inputs = _inputs(mt)
    kernel = "eager" if config == "prefix" else None  # the library's prefix is right on eager only
    owner = ref = case_model(mt, attn_implementation=kernel)
    if config == "compacter":  # the library saves Compacter's shared PHM rule only from its flex-head models
        owner = adapters.AutoAdapterModel.from_config(ref.config)
        owner.base_model.load_state_dict(ref.state_dict(), strict=False)
        ref = owner.base_model.eval()
    else:
        adapters.init(ref)
    if config == "compacter":
        cfg = adapters.CompacterConfig(reduction_factor=4)
    elif config == "prefix":
        cfg = adapters.PrefixTuningConfig(prefix_length=3, bottleneck_size=8)
    elif config == "lora":
        cfg = adapters.LoRAConfig(r=4, alpha=8, attn_matrices=["q", "k", "v"], intermediate_lora=True,
                                  output_lora=True)
    else:
        cfg = config
    owner.add_adapter("a", config=cfg)
    _randomize(owner, (".a.", "shared_parameters"))
    owner.set_active_adapters("a")
    want = _out(ref, inputs)
    base = case_model(mt, attn_implementation=kernel)
    assert (want - _out(base, inputs)).abs().max() > 1e-3  # the adapter has an effect
    owner.save_adapter(str(tmp_path / "a"), "a", use_safetensors=config != "prefix")
    wrap(base).load(tmp_path / "a")
    _check(mt, _out(base, inputs), want, inputs, base)
    ours64 = case_model(mt, attn_implementation=kernel).double()
    wrap(ours64).load(tmp_path / "a", force=True)
    # the prefix is stored in its flat form in the source dtype (one fp32 rounding per prefix value)
    _check(mt, _out64(ours64, mt), _out64(ref, mt), inputs, base, dtype=torch.float32 if config == "prefix" else None)


def test_case_configs_build_on_this_transformers():
    for mt in MODEL_TYPES:
        assert case_config(mt).model_type == mt


def test_library_gptj_bottleneck_is_refused_not_misread(tmp_path):
    """The library's GPT-J FFN adapter reads ``x + attention`` as its residual, ours ``x``: loading one would
    give other outputs, so it is refused with a typed error."""
    adapters = pytest.importorskip("adapters", reason="the adapters library is not installed in this environment")
    ref = case_model("gptj")
    adapters.init(ref)
    ref.add_adapter("a", config="seq_bn")
    ref.save_adapter(str(tmp_path / "a"), "a", use_safetensors=True)
    h = wrap(case_model("gptj"))
    with pytest.raises(SchemaError, match="unknown adapter location 'output_adapters.adapters'"):
        h.load(tmp_path / "a")
    assert h.adapters == ()


def _fused_cases() -> list[tuple[str, dict]]:
    """Every model type whose layers offer a fused projection whole (``qkv``, ``ffn_gate_in``), read off the
    family table with the case's config; Phi-3 again with grouped-query attention (k, v narrower than q)."""
    out = []
    for mt in MODEL_TYPES:
        fam = family_for(mt)
        traits = fam.trait_sets({**CASES[mt].config, "model_type": mt})[-1]
        if any(key in FUSED_KEYS for key in fam.slots(Shape(False, traits))):
            out.append((mt, {}))
    return [*out, ("phi3", {"num_key_value_heads": 2})]


FUSED_CASES = _fused_cases()


def _fused_model(mt: str, overrides: dict) -> torch.nn.Module:
    if not overrides:
        return case_model(mt)
    from transformers import AutoModel

    torch.manual_seed(0)
    return AutoModel.from_config(case_config(mt, **overrides)).eval()


@pytest.mark.parametrize(("mt", "overrides"), FUSED_CASES,
                         ids=[m + "".join(f"-{k}{v}" for k, v in o.items()) for m, o in FUSED_CASES])
@pytest.mark.parametrize("kind", ["lora", "dora", "ia3"])
def test_peft_on_whole_fused_projections(mt, overrides, kind, tmp_path):
    """PEFT adapts a fused projection (GPT-2 ``c_attn``, Phi-3 ``qkv_proj``/``gate_up_proj`` with or without
    grouped-query attention, GPT-NeoX's per-head interleaved ``query_key_value``, ModernBERT ``Wqkv``/``Wi``,
    DeBERTa ``in_proj``) as one module: it lands on the whole-module slot and computes what PEFT computes (DoRA's
    norm, IA3's output and input scaling over the whole fused weight), fp32 within tolerance, float64 to
    rounding."""
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    binding = bind(_fused_model(mt, overrides))
    fused = {key: sorted({s.path for layer in binding.layers for s in layer.slots.get(key, ())}) for key in FUSED_KEYS}
    paths = fused["qkv"] + fused["ffn_gate_in"]
    fan = {"fan_in_fan_out": True} if binding.conv1d else {}
    if kind == "ia3":  # qkv scaled on its input (a feed-forward module to PEFT), ffn_gate_in on its output
        cfg = peft.IA3Config(target_modules=paths, feedforward_modules=fused["qkv"], **fan)
    else:
        cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=paths, use_dora=kind == "dora", **fan)
    inputs = _inputs(mt)
    ref = peft.get_peft_model(_fused_model(mt, overrides), cfg)
    _randomize(ref, ("lora_", "ia3_l"))
    ref.eval()
    want = _out(ref, inputs)
    ref.save_pretrained(tmp_path / "peft")
    base = _fused_model(mt, overrides)
    assert (want - _out(base, inputs)).abs().max() > 1e-3  # the adapter has an effect
    h = wrap(base)
    h.load(tmp_path / "peft", name="a")
    assert set(h.package("a").config["target_modules"]) == {k for k in FUSED_KEYS if fused[k]}
    _check(mt, _out(base, inputs), want, inputs, base)
    ours64 = _fused_model(mt, overrides).double()
    wrap(ours64).load(tmp_path / "peft", force=True)
    _check(mt, _out64(ours64, mt), _out64(ref, mt), inputs, base)


@pytest.mark.parametrize("mt", ["gpt2", "modernbert"])
def test_a_fused_projection_is_targeted_whole_or_by_slices_not_both(mt):
    """``qkv`` and ``q`` on one adapter would adapt the same rows twice: a schema error naming both, nothing
    attached; either alone attaches."""
    h = wrap(case_model(mt))
    with pytest.raises(SchemaError, match=r"\['q', 'qkv'\] all adapt"):
        h.add("both", "lora", r=2, alpha=2, target_modules=["q", "qkv"])
    assert h.adapters == ()
    h.add("whole", "lora", r=2, alpha=2, target_modules=["qkv"])
    h.add("slice", "lora", r=2, alpha=2, target_modules=["q"])
    assert h.adapters == ("whole", "slice")


@pytest.mark.parametrize(("mt", "overrides"), [("gpt_neox", {}), ("phi3", {"num_key_value_heads": 2}), ("gpt2", {})],
                         ids=["gpt_neox", "phi3-gqa", "gpt2"])
@pytest.mark.parametrize("method", ["lora", "dora"])
def test_whole_fused_adapters_export_to_peft(mt, overrides, method, tmp_path):
    """Our adapter on a whole fused projection exports as one PEFT module of the same rank, which PEFT loads
    and computes as we do."""
    peft = pytest.importorskip("peft", reason="peft is not installed in this environment")
    from adapterhub.runtime.formats.peft import export_peft

    model = _fused_model(mt, overrides)
    h = wrap(model)
    targets = [k for k in FUSED_KEYS if k in h.binding.layers[0].slots]
    h.add("a", method, r=2, alpha=4, target_modules=targets)
    _randomize(model, ("adapterhub_adapters.a.",))
    inputs = _inputs(mt)
    ours = _out(model, inputs)
    export_peft(h, "a", tmp_path / "peft")
    config = peft.PeftConfig.from_pretrained(tmp_path / "peft")
    assert config.rank_pattern == {} and config.use_dora == (method == "dora")
    ref = peft.PeftModel.from_pretrained(_fused_model(mt, overrides), tmp_path / "peft").eval()
    assert (ours - _out(_fused_model(mt, overrides), inputs)).abs().max() > 1e-3
    _check(mt, _out(ref, inputs), ours, inputs, model)
