"""BitDelta: packing, compression, attach/deactivate/merge, save/load, scale distillation, bad input.

References are built with plain torch from the models' own module paths (not through the runtime's
target resolution or packing), so a wrong bit order, sign convention, scale or slice shows up.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors import safe_open
from support.doc_examples import run_doc_examples
from support.runtime_helpers import assert_same_state, hidden, inputs_for, state_snapshot, tiny_model
from support.tolerances import assert_close, model_terms

from adapterhub.errors import AdapterStateError, InvalidArgumentError, SchemaError, WeightMismatchError
from adapterhub.manifest import load_manifest
from adapterhub.runtime import AdapterPackage, read_adapter_dir, wrap, write_adapter_dir
from adapterhub.runtime.bitdelta import compress, distill_scales, pack_signs, unpack_signs
from adapterhub.schema import validate_document

# per arch: (target_modules, {tensor prefix: (module path relative to the backbone, conv1d column slice)})
CASES = {
    "bert": (["q", "k", "v", "o", "ffn_in"], {
        f"layers.{i}.{key}": (f"encoder.layer.{i}.{path}", None) for i in range(2) for key, path in [
            ("q", "attention.self.query"), ("k", "attention.self.key"), ("v", "attention.self.value"),
            ("o", "attention.output.dense"), ("ffn_in", "intermediate.dense")]}),
    "llama": (["q", "k", "v", "o", "ffn_gate", "ffn_in"], {
        f"layers.{i}.{key}": (f"layers.{i}.{path}", None) for i in range(2) for key, path in [
            ("q", "self_attn.q_proj"), ("k", "self_attn.k_proj"), ("v", "self_attn.v_proj"),
            ("o", "self_attn.o_proj"), ("ffn_gate", "mlp.gate_proj"), ("ffn_in", "mlp.up_proj")]}),
    "gpt2": (["q", "v", "o"], {  # Conv1D [in, out]; q and v are column slices of the fused c_attn
        **{f"layers.{i}.q": (f"h.{i}.attn.c_attn", slice(0, 32)) for i in range(2)},
        **{f"layers.{i}.v": (f"h.{i}.attn.c_attn", slice(64, 96)) for i in range(2)},
        **{f"layers.{i}.o": (f"h.{i}.attn.c_proj", None) for i in range(2)}}),
}


def _weight(model, path: str, cols) -> torch.Tensor:
    """The target's weight in Linear form [out, in], as a view where possible (plain torch)."""
    w = model.get_submodule(path).weight
    return w[:, cols].t() if cols is not None else (w.t() if "c_proj" in path else w)


def _finetune(model, arch: str, scale: float = 0.02, seed: int = 5):
    """A "fine-tune": every target weight plus a Gaussian delta, with some exact zeros in the delta."""
    ft = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for path, cols in CASES[arch][1].values():
            w = _weight(ft, path, cols)
            delta = torch.randn(w.shape, generator=g) * scale
            delta[0, :3] = 0.0
            w += delta
    return ft


def _reference(base, ft, arch: str):
    """W_base + mean|delta| * Sign(delta) (Sign(0) = +1) on every target, in plain torch."""
    ref = copy.deepcopy(base)
    with torch.no_grad():
        for path, cols in CASES[arch][1].values():
            d = _weight(ft, path, cols) - _weight(base, path, cols)
            _weight(ref, path, cols).add_(d.abs().mean() * torch.where(d >= 0, 1.0, -1.0))
    return ref


def test_pack_matches_hand_computation():
    row = torch.tensor([-1.0, 0.0, 2.0, -3.0, 4.0, 0.0, -0.5, 1.0,  # bits 0..7 = 0,1,1,0,1,1,0,1
                        -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0,
                        0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                        1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0, -1.0])
    packed = pack_signs(torch.stack([row, -row]))
    assert packed.dtype == torch.uint8 and packed.shape == (2, 4)
    assert packed[0].tolist() == [2 + 4 + 16 + 32 + 128, 0, 255, 1]
    # -row: zeros stay +1 (bits 1 and 5 set again), the others flip
    assert packed[1].tolist() == [1 + 2 + 8 + 32 + 64, 255, 255, 254]
    signs = unpack_signs(packed)
    assert signs.shape == (2, 32)
    assert signs[0, :8].tolist() == [-1, 1, 1, -1, 1, 1, -1, 1]


def test_pack_unpack_round_trip():
    g = torch.Generator().manual_seed(0)
    delta = torch.randn(24, 64, generator=g)
    delta[delta.abs() < 0.3] = 0.0  # plenty of exact zeros
    assert (delta == 0).sum() > 100
    expected = torch.where(delta >= 0, 1.0, -1.0)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        assert torch.equal(unpack_signs(pack_signs(delta), dtype), expected.to(dtype))


@pytest.mark.parametrize("arch", sorted(CASES))
def test_compress_matches_plain_torch_reference(arch):
    base = tiny_model(arch)
    ft = _finetune(base, arch, scale=0.005)
    snapshot, ft_snapshot = state_snapshot(base), state_snapshot(ft)
    targets, paths = CASES[arch]
    pkg = compress(base, ft, target_modules=targets)
    assert_same_state(base, snapshot)  # compress modifies neither model
    assert_same_state(ft, ft_snapshot)
    assert set(pkg.tensors) == {f"{p}.{s}" for p in paths for s in ("mask", "scale")}
    for prefix, (path, cols) in paths.items():  # alpha == mean|delta| per matrix, fp32
        d = _weight(ft, path, cols) - _weight(base, path, cols)
        scale = pkg.tensors[f"{prefix}.scale"]
        assert scale.dtype == torch.float32 and scale.shape == ()
        assert_close(scale, d.abs().mean(), terms=d.numel())  # a mean summed in another order
        assert pkg.tensors[f"{prefix}.mask"].dtype == torch.uint8

    inputs = inputs_for(arch)
    base_out, ft_out, ref_out = hidden(base, inputs), hidden(ft, inputs), hidden(_reference(base, ft, arch), inputs)
    model = tiny_model(arch)  # a fresh copy of the base
    ah = wrap(model)
    ah.load_package(pkg, name="bd")
    assert dict(ah.container["bd"].named_parameters())[f"{next(iter(paths))}.mask"].dtype == torch.uint8
    out = hidden(model, inputs)
    assert_close(out, ref_out, terms=model_terms(model))
    err_bd, err_base = (out - ft_out).pow(2).mean(), (base_out - ft_out).pow(2).mean()
    # a small Gaussian delta keeps 1 - 2/pi (~0.36) of its energy; the outputs follow (0.33-0.40 here)
    assert err_bd < 0.45 * err_base, (err_bd, err_base)
    assert torch.equal(hidden(model, inputs), out)  # cached signs give the same result again

    ah.deactivate()  # base_out came from another instance of the same base: equal up to rounding
    assert_close(hidden(model, inputs), base_out, terms=model_terms(model))
    ah.activate("bd")
    ah.merge("bd")
    assert_close(hidden(model, inputs), ref_out, terms=model_terms(model))
    ah.unmerge("bd")
    ah.remove("bd")
    assert_close(hidden(model, inputs), base_out, terms=model_terms(model))


def test_weight_error_is_the_one_bit_optimum():
    """For a Gaussian delta, ||delta - alpha Sign||^2 / ||delta||^2 = 1 - 2/pi (about 0.36)."""
    base = tiny_model("llama")
    ft = _finetune(base, "llama", scale=0.05)
    ref = _reference(base, ft, "llama")
    err = total = 0.0
    with torch.no_grad():
        for path, cols in CASES["llama"][1].values():
            d = _weight(ft, path, cols) - _weight(base, path, cols)
            err += float((_weight(ft, path, cols) - _weight(ref, path, cols)).pow(2).sum())
            total += float(d.pow(2).sum())
    assert abs(err / total - (1 - 2 / torch.pi)) < 0.03


def test_num_parameters_and_training_flags():
    base = tiny_model("bert")
    pkg = compress(base, _finetune(base, "bert"), target_modules=["q", "ffn_in"])
    ah = wrap(tiny_model("bert"))
    ah.load_package(pkg, name="bd")
    # sign bits + one scale per matrix: q 32x32 and ffn_in 37x32 in two layers
    assert ah.num_parameters("bd") == 2 * (32 * 32 + 37 * 32) + 4
    names = ah.train_adapter("bd")
    assert sorted(names) == sorted(f"adapterhub_adapters.bd.layers.{i}.{k}.scale" for i in range(2) for k in ("q", "ffn_in"))
    assert ah.num_parameters("bd", trainable_only=True) == 4


def test_save_load_round_trip(tmp_path):
    arch = "llama"
    base = tiny_model(arch)
    ft = _finetune(base, arch)
    pkg = compress(base, ft, target_modules=CASES[arch][0], leave_out=[1])
    assert all(k.startswith("layers.0.") for k in pkg.tensors)
    write_adapter_dir(pkg, tmp_path / "direct", name="llama-bitdelta")
    ah = wrap(base)
    ah.load(tmp_path / "direct", name="bd")
    inputs = inputs_for(arch)
    out = hidden(base, inputs)
    path = ah.save("bd", tmp_path / "saved", version="1.0.0")
    doc = json.loads(path.read_text())
    assert validate_document(doc, "adapter-manifest.v1.json") == []
    assert doc["adapter"]["method"] == "bitdelta" and "dtype" not in doc["adapter"]
    assert doc["adapter"]["config"]["leave_out"] == [1]
    assert load_manifest(path).adapter.method == "bitdelta"
    with safe_open(str(tmp_path / "saved" / "adapter.safetensors"), "pt") as fh:
        assert fh.get_slice("layers.0.q.mask").get_dtype() == "U8"
        assert fh.get_slice("layers.0.q.scale").get_dtype() == "F32"
        assert torch.equal(fh.get_tensor("layers.0.q.mask"), pkg.tensors["layers.0.q.mask"])
    model2 = tiny_model(arch)
    ah2 = wrap(model2)
    ah2.load(tmp_path / "saved")
    assert_close(hidden(model2, inputs), out, terms=model_terms(model2))  # another instance, loaded from disk


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_low_precision_model_keeps_uint8_masks(dtype):
    base = tiny_model("llama")
    pkg = compress(base, _finetune(base, "llama"), target_modules=["q"])
    model = tiny_model("llama").to(dtype)
    ah = wrap(model)
    ah.load_package(pkg, name="bd", force=True)
    params = dict(ah.container["bd"].named_parameters())
    assert params["layers.0.q.mask"].dtype == torch.uint8 and params["layers.0.q.scale"].dtype == dtype
    out = hidden(model, inputs_for("llama"))
    assert out.dtype == dtype and torch.isfinite(out).all()
    model.float()  # the cached signs follow the model's dtype
    params = dict(ah.container["bd"].named_parameters())
    assert params["layers.0.q.mask"].dtype == torch.uint8 and params["layers.0.q.scale"].dtype == torch.float32
    assert hidden(model, inputs_for("llama")).dtype == torch.float32


def test_scale_distillation_lowers_logit_mse(tmp_path):
    from transformers import AutoModelForCausalLM

    base = tiny_model("llama", cls=AutoModelForCausalLM)
    ft = _finetune(base.model, "llama", scale=0.05)  # perturb the backbone of a copy
    ft_lm = copy.deepcopy(base)
    ft_lm.model = ft
    pkg = compress(base, ft_lm, target_modules=CASES["llama"][0])
    ah = wrap(base)
    ah.load_package(pkg, name="bd")
    batches = [inputs_for("llama", batch=4, seq=12, seed=s) for s in range(8)]
    held_out = [inputs_for("llama", batch=4, seq=12, seed=100 + s) for s in range(4)]

    def mse(batch):
        with torch.no_grad():
            return float((base(**batch).logits - ft_lm(**batch).logits).pow(2).mean())

    def total(bs):
        return sum(mse(b) for b in bs)

    flags = [p.requires_grad for p in base.parameters()]
    before = [mse(b) for b in batches]
    held_before = total(held_out)
    losses = distill_scales(ah, "bd", ft_lm, batches, steps=40, lr=1e-3)
    after = [mse(b) for b in batches]
    assert len(losses) == 40 and losses[0] == pytest.approx(before[0], rel=1e-5)
    # alpha = mean|delta| is already close to optimal on a random model: distillation gains ~3% here
    assert sum(after) < 0.99 * sum(before), (before, after)
    assert [p.requires_grad for p in base.parameters()] == flags  # flags restored
    assert all(p.grad is None for p in base.parameters())
    assert total(held_out) < held_before
    ah.save("bd", tmp_path / "d")
    assert load_manifest(tmp_path / "d").adapter.config.scale_distilled is True


def _pkg(tensors: dict[str, torch.Tensor], base_pkg: AdapterPackage) -> AdapterPackage:
    return AdapterPackage(method="bitdelta", config=base_pkg.config, tensors=tensors, base=base_pkg.base)


def test_bad_input_gives_typed_errors(tmp_path):
    base = tiny_model("bert")
    ft = _finetune(base, "bert")
    pkg = compress(base, ft, target_modules=["q"])
    model = tiny_model("bert")
    ah = wrap(model)
    before = state_snapshot(model)
    inputs = inputs_for("bert")
    base_out = hidden(model, inputs)

    wrong_shape = {**pkg.tensors, "layers.0.q.mask": torch.zeros(32, 5, dtype=torch.uint8)}
    with pytest.raises(WeightMismatchError, match="wrong shape"):
        ah.load_package(_pkg(wrong_shape, pkg), name="bd")
    for bad in (torch.float32, torch.int8, torch.int32):
        wrong_dtype = {**pkg.tensors, "layers.0.q.mask": pkg.tensors["layers.0.q.mask"].to(bad)}
        with pytest.raises(WeightMismatchError, match="wrong dtype"):
            ah.load_package(_pkg(wrong_dtype, pkg), name="bd")
    int_scale = {**pkg.tensors, "layers.0.q.scale": torch.tensor(1, dtype=torch.int64)}
    with pytest.raises(WeightMismatchError, match="not floating point"):
        ah.load_package(_pkg(int_scale, pkg), name="bd")
    # the same through a real directory on disk
    write_adapter_dir(_pkg(wrong_dtype, pkg), tmp_path / "bad", name="bad-bitdelta")
    with pytest.raises(WeightMismatchError):
        ah.load(tmp_path / "bad")
    assert read_adapter_dir(tmp_path / "bad").tensors["layers.0.q.mask"].dtype == torch.int32

    # BERT's ffn_out has in_features 37 (intermediate_size), not a multiple of 8
    with pytest.raises(SchemaError, match="multiple of 8"):
        compress(base, ft, target_modules=["ffn_out"])
    with pytest.raises(SchemaError, match="multiple of 8"):
        ah.add("odd", "bitdelta", target_modules=["q", "ffn_out"])
    with pytest.raises(WeightMismatchError, match="multiple of 8"):
        pack_signs(torch.randn(4, 37))
    with pytest.raises(WeightMismatchError, match="uint8"):
        unpack_signs(torch.zeros(4, 4, dtype=torch.int16))
    with pytest.raises(SchemaError):
        ah.add("bad", "bitdelta", target_modules=["q"], packing="uint32")

    # distill_scales: the adapter must be a BitDelta one, and there must be something to fit on
    ah.add("lora", "lora", r=2, alpha=4)
    with pytest.raises(AdapterStateError, match="'lora' is a lora adapter, not bitdelta"):
        distill_scales(ah, "lora", ft, [inputs])
    ah.remove("lora")
    ah.load_package(pkg, name="bd")
    for batches, steps in (([], 5), ([inputs], 0)):
        with pytest.raises(InvalidArgumentError, match="at least one batch and steps >= 1"):
            distill_scales(ah, "bd", ft, batches, steps=steps)
    ah.remove("bd")

    assert ah.adapters == ()
    assert_same_state(model, before)
    torch.testing.assert_close(hidden(model, inputs), base_out, atol=0, rtol=0)  # refusals: the same computation


def test_fresh_adapter_is_the_base():
    model = tiny_model("bert")
    inputs = inputs_for("bert")
    base_out = hidden(model, inputs)
    ah = wrap(model)
    ah.add("bd", "bitdelta", target_modules=["q", "v"])
    torch.testing.assert_close(hidden(model, inputs), base_out, atol=0, rtol=0)  # it adds exactly 0: same bytes


def test_docs_example(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns = run_doc_examples("runtime.md")
    assert load_manifest(tmp_path / "out" / "llama-bd").adapter.method == "bitdelta"
    assert load_manifest(tmp_path / "out" / "llama-bd-distilled").adapter.config.scale_distilled is True
    assert ns["losses"][-1] < ns["losses"][0]


def test_compose_merge_block_folds_bitdelta_and_average_refuses_it():
    from adapterhub.compose import Average, Merge
    from adapterhub.errors import CompositionError

    base = tiny_model("llama")
    ft = _finetune(base, "llama")
    inputs = inputs_for("llama")
    base_out, ref_out = hidden(base, inputs), hidden(_reference(base, ft, "llama"), inputs)
    pkg = compress(base, ft, target_modules=CASES["llama"][0])
    model = tiny_model("llama")
    ah = wrap(model)
    ah.load_package(pkg, name="bd")
    with Merge(ah, "bd"):
        assert_close(hidden(model, inputs), ref_out, terms=model_terms(model))
    ah.deactivate()
    assert_close(hidden(model, inputs), base_out, terms=model_terms(model))
    with pytest.raises(CompositionError, match="bitdelta"):
        Average(pkg, pkg)
