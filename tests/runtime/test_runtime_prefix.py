"""Prefix tuning in the runtime: kernels agree, caches work, training, save/load, eject, ingest, bad input.

Parity with the ``adapters`` library is in test_parity_fixtures.py (committed cases, both
transformers versions) and test_parity_live.py (the library itself, transformers 4.57).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from support.paths import REFERENCE
from support.runtime_helpers import (
    assert_same_state,
    cache_keyword,
    hidden,
    inputs_for,
    output_cache,
    state_snapshot,
    tiny_config,
)
from support.tolerances import assert_close, model_terms

from adapterhub.errors import (
    AdapterStateError,
    SchemaError,
    UnsupportedArchitectureError,
    WeightMismatchError,
)
from adapterhub.runtime import wrap
from adapterhub.runtime.kv_cache import CACHE_KEYWORDS
from adapterhub.runtime.methods.prefix import eject
from adapterhub.runtime.prefix_attention import ConfigView, uses_attention_interface

ARCHS = ("bert", "roberta", "distilbert", "gpt2", "llama", "t5")
FIXTURES = REFERENCE / "adapters"
CONFIG = {"prefix_length": 3, "bottleneck_size": 8}


def build(arch: str, impl: str | None = None, cls=None, seed: int = 0):
    """A tiny model; ``impl=None`` is transformers' default kernel (sdpa where the family has one)."""
    from transformers import AutoModel

    torch.manual_seed(seed)
    kwargs = {"attn_implementation": impl} if impl else {}
    try:
        return (cls or AutoModel).from_config(tiny_config(arch), **kwargs).eval()
    except ValueError as exc:  # T5 has no sdpa kernel in transformers 4.x
        pytest.skip(f"{arch} has no {impl} kernel here: {exc}")


def no_traces(model) -> bool:
    """No hooks anywhere and every module's own config object back in place."""
    for m in model.modules():
        if m._forward_hooks or m._forward_pre_hooks or isinstance(m.__dict__.get("config"), ConfigView):
            return False
    return True


@pytest.mark.parametrize("arch", ARCHS)
def test_kernels_agree_and_missing_mask_means_all_ones(arch):
    inputs = inputs_for(arch)
    outs = {}
    for impl in ("eager", "sdpa"):
        try:
            model = build(arch, impl)
        except pytest.skip.Exception:
            continue
        wrap(model).add("p", "prefix_tuning", **CONFIG)
        outs[impl] = hidden(model, inputs)
        ones = {**inputs, "attention_mask": torch.ones_like(inputs["attention_mask"])}
        no_mask = {k: v for k, v in inputs.items() if k != "attention_mask"}
        # sdpa without a mask on causal models: we build the causal mask (prefix columns open)
        assert_close(hidden(model, no_mask), hidden(model, ones), terms=model_terms(model))
    if len(outs) == 2:
        keep = inputs["attention_mask"].bool() if arch != "t5" else None
        assert_close(outs["eager"], outs["sdpa"], terms=model_terms(model), mask=keep)


@pytest.mark.parametrize("arch", ARCHS)
def test_deactivate_and_remove_restore_the_base_exactly(arch):
    model = build(arch)
    inputs = inputs_for(arch)
    snapshot = state_snapshot(model)
    base = hidden(model, inputs)
    h = wrap(model)
    h.add("p", "prefix_tuning", **CONFIG)
    assert (hidden(model, inputs) - base).abs().max() > 1e-3
    h.deactivate()
    assert torch.equal(hidden(model, inputs), base)  # no traces left: the base computation again
    assert no_traces(model)
    h.activate("p")
    h.add("q", "prefix_tuning", prefix_length=2, flat=True, seed=1)  # a stack of two prefixes
    stacked = hidden(model, inputs)
    h.activate("p")
    assert (hidden(model, inputs) - stacked).abs().max() > 1e-4
    h.remove("p")
    h.remove("q")
    assert torch.equal(hidden(model, inputs), base)
    assert no_traces(model)
    assert_same_state(model, snapshot)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "t5"])
def test_incremental_decoding_with_cache_matches_full_forward(arch):
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    model = build(arch, "eager", cls=AutoModelForSeq2SeqLM if arch == "t5" else AutoModelForCausalLM)
    wrap(model).add("p", "prefix_tuning", **CONFIG)
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(3, 99, (2, 6), generator=g)
    extra = {"input_ids": torch.randint(3, 99, (2, 7), generator=g)} if arch == "t5" else {}
    key = "decoder_input_ids" if arch == "t5" else "input_ids"
    with torch.no_grad():
        full = model(**extra, **{key: ids}, use_cache=False).logits[:, -1]
        first = model(**extra, **{key: ids[:, :-1]}, use_cache=True)
        cache = {cache_keyword(model): output_cache(first)}  # the name this transformers version uses
        step = lambda: model(**extra, **{key: ids[:, -1:]}, **cache, use_cache=True).logits[:, -1]  # noqa: E731
        if _inline_t5(model):
            with pytest.raises(AdapterStateError, match="KV cache"):
                step()
            return
        assert_close(step(), full, terms=model_terms(model))


def _inline_t5(model) -> bool:
    """T5 in transformers 4.x computes attention inline: prefix tuning refuses to continue a cache there."""
    return model.config.model_type == "t5" and not uses_attention_interface(model.decoder.block[0].layer[0].SelfAttention)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "t5"])
def test_generate_with_the_kv_cache_matches_recomputing_every_step(arch):
    """``generate`` hands the cache on under this transformers version's own name (``cache`` from 5.24):
    the prefix must be prepended to the cached keys at every step, exactly as without a cache."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    model = build(arch, cls=AutoModelForSeq2SeqLM if arch == "t5" else AutoModelForCausalLM)
    ids = torch.randint(3, 99, (2, 5), generator=torch.Generator().manual_seed(5))
    options = dict(max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=0, output_scores=True,
                   return_dict_in_generate=True)
    with torch.no_grad():
        plain = model.generate(ids, use_cache=False, **options)
        wrap(model).add("p", "prefix_tuning", **CONFIG)
        want = model.generate(ids, use_cache=False, **options)
        assert not torch.equal(torch.stack(want.scores), torch.stack(plain.scores))  # the prefix has an effect
        if _inline_t5(model):
            with pytest.raises(AdapterStateError, match="KV cache"):
                model.generate(ids, use_cache=True, **options)
            return
        got = model.generate(ids, use_cache=True, **options)
    assert torch.equal(got.sequences, want.sequences)
    assert_close(torch.stack(got.scores), torch.stack(want.scores), terms=model_terms(model))


@pytest.mark.parametrize("keyword", CACHE_KEYWORDS)
def test_inline_attention_refuses_a_filled_cache_under_every_keyword(keyword):
    """Where prefix tuning hooks an inline attention (T5 in transformers 4.x), a filled cache is refused by
    any name transformers has used for it, not only the one this version passes."""
    from transformers import AutoModelForSeq2SeqLM

    model = build("t5", "eager", cls=AutoModelForSeq2SeqLM)
    if not _inline_t5(model):
        pytest.skip("T5 attention goes through the attention interface here (transformers 5): no hook to check")
    ids = torch.randint(3, 99, (1, 4))
    with torch.no_grad():
        cache = output_cache(model(input_ids=ids, decoder_input_ids=ids, use_cache=True))
    wrap(model).add("p", "prefix_tuning", **CONFIG)
    attention = model.decoder.block[0].layer[0].SelfAttention
    with torch.no_grad(), pytest.raises(AdapterStateError, match="KV cache"):
        attention(torch.zeros(1, 1, 32), **{keyword: cache})


@pytest.mark.parametrize("arch", ["bert", "gpt2", "t5"])
def test_training_changes_only_the_prefix_mlp(arch):
    model = build(arch, "eager")
    inputs = inputs_for(arch)
    snapshot = state_snapshot(model)
    h = wrap(model)
    h.add("p", "prefix_tuning", dropout=0.1, **CONFIG)
    before = {k: v.clone() for k, v in h.container["p"].state_dict().items()}
    names = h.train_adapter("p")
    assert names and all(n.startswith("adapterhub_adapters.p.reparam.") for n in names)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    direction = torch.randn(tiny_config(arch).hidden_size, generator=torch.Generator().manual_seed(5))
    for _ in range(3):
        out = model(**inputs).last_hidden_state
        loss = (out @ direction).mean()  # not LayerNorm-invariant, unlike the mean square
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    after = h.container["p"].state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before), "every MLP tensor gets a gradient"
    base_now = {k: v for k, v in model.state_dict().items() if not k.startswith("adapterhub_adapters.")}
    assert set(base_now) == set(snapshot) - {k for k in snapshot if k.startswith("adapterhub_adapters.")}
    assert all(torch.equal(base_now[k], snapshot[k]) for k in base_now)


@pytest.mark.parametrize("arch", ["distilbert", "llama", "t5"])
def test_save_load_round_trip_in_both_forms(arch, tmp_path):
    model = build(arch)
    inputs = inputs_for(arch)
    h = wrap(model)
    h.add("p", "prefix_tuning", **CONFIG, seed=4)
    want = hidden(model, inputs)
    h.save("p", tmp_path / "mlp")
    manifest = json.loads((tmp_path / "mlp" / "adapterhub.json").read_text())
    assert manifest["adapter"]["method"] == "prefix_tuning"
    assert manifest["adapter"]["config"] == {"prefix_length": 3, "bottleneck_size": 8}

    eject(h, "p")  # the library's eject: flat per-layer prefixes, same outputs
    assert h.active == ("p",)
    assert_close(hidden(model, inputs), want, terms=model_terms(model))
    h.save("p", tmp_path / "flat")
    flat = json.loads((tmp_path / "flat" / "adapterhub.json").read_text())["adapter"]["config"]
    assert flat == {"prefix_length": 3, "flat": True}
    keys = set(h.package("p").tensors)
    assert "layers.0.self.prefix_k" in keys and not any(k.startswith("reparam.") for k in keys)

    for form in ("mlp", "flat"):
        fresh = build(arch)
        wrap(fresh).load(tmp_path / form)
        assert_close(hidden(fresh, inputs), want, terms=model_terms(fresh), what=f"{form}: ")


def test_flat_tensor_layout_is_keys_then_values_per_layer():
    """Layer j of a group reads MLP output chunk 2j (keys) and 2j+1 (values), heads-major inside."""
    model = build("llama", "eager")  # GQA: 2 key/value heads of size 8
    h = wrap(model)
    h.add("p", "prefix_tuning", **CONFIG)
    eject(h, "p")
    tensors = h.package("p").tensors
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {
        f"layers.{i}.self.prefix_{kv}": (3, 16) for i in (0, 1) for kv in "kv"}


def test_merge_is_refused():
    model = build("bert")
    h = wrap(model)
    h.add("p", "prefix_tuning", **CONFIG)
    with pytest.raises(AdapterStateError, match="cannot be merged"):
        h.merge("p")
    assert h.active == ("p",)


# --- ingest of the adapters library's directories ---------------------------------------------------
def _fixture_base(arch: str):
    import transformers

    meta = json.loads((FIXTURES / arch / "prefix_tuning" / "case.json").read_text())
    cls = getattr(transformers, meta["base_class"])
    return cls.from_pretrained(str(FIXTURES.parent / meta["base"])).eval(), meta


def test_library_dir_is_stored_flat_and_checked(tmp_path):
    model, meta = _fixture_base("t5")
    src = FIXTURES / "t5" / "prefix_tuning" / "bin" / "ref"
    h = wrap(model)
    h.load(src, name="lib")
    pkg = h.package("lib")
    assert pkg.config["flat"] is True
    assert sorted({k.rsplit(".", 1)[0] for k in pkg.tensors}) == [
        "layers.0.self", "layers.1.self", "layers.2.cross", "layers.2.self", "layers.3.cross", "layers.3.self"]
    h.remove("lib")

    # a gated (UniPELT) prefix is refused before anything is attached
    bad = tmp_path / "gated"
    shutil.copytree(src, bad)
    cfg = json.loads((bad / "adapter_config.json").read_text())
    cfg["config"]["use_gating"] = True
    (bad / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(SchemaError, match="gat"):
        h.load(bad)
    # aliases of one shared tensor that disagree
    tampered = tmp_path / "tampered"
    shutil.copytree(src, tampered)
    state = torch.load(tampered / "pytorch_adapter.bin", weights_only=True)
    key = next(k for k in state if "block.1" in k and k.endswith("self_prefix.wte.weight"))
    state[key] = state[key] + 1
    torch.save(state, tampered / "pytorch_adapter.bin")
    with pytest.raises(WeightMismatchError, match="differs"):
        h.load(tampered)
    # a config whose prefix length does not fit the weights
    short = tmp_path / "short"
    shutil.copytree(src, short)
    cfg = json.loads((short / "adapter_config.json").read_text())
    cfg["config"]["prefix_length"] = 4
    (short / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightMismatchError, match="wrong shape"):
        h.load(short)
    assert h.adapters == () and no_traces(model)


# --- bad input ---------------------------------------------------------------------------------------
def test_wrong_prefix_shapes_attach_nothing(tmp_path):
    model = build("gpt2")
    inputs = inputs_for("gpt2")
    base = hidden(model, inputs)
    h = wrap(model)
    h.add("p", "prefix_tuning", prefix_length=3, flat=True)
    pkg = h.package("p")
    h.remove("p")
    pkg.tensors["layers.1.self.prefix_v"] = torch.zeros(4, 32)  # P=4 where the config says 3
    with pytest.raises(WeightMismatchError, match="layers.1.self.prefix_v"):
        h.load_package(pkg, name="bad")
    del pkg.tensors["layers.1.self.prefix_v"]
    with pytest.raises(WeightMismatchError, match="missing"):
        h.load_package(pkg, name="bad")
    assert h.adapters == () and no_traces(model)
    assert torch.equal(hidden(model, inputs), base)  # refused before attaching: the same computation


def test_bad_configs_are_refused_before_attaching():
    t5 = build("t5", "eager")
    h = wrap(t5)
    with pytest.raises(SchemaError, match="stack"):
        h.add("p", "prefix_tuning", leave_out=[0], **CONFIG)  # half of the encoder stack
    with pytest.raises(SchemaError):
        h.add("p", "prefix_tuning", prefix_length=0)
    with pytest.raises(SchemaError, match="no attention module"):
        h.add("p", "prefix_tuning", encoder_prefix=False, cross_prefix=False, leave_out=[2, 3], **CONFIG)
    h.add("ok", "prefix_tuning", leave_out=[0, 1], **CONFIG)  # a whole stack left out is fine
    assert h.adapters == ("ok",)

    model = build("bert", "eager")
    model.config._attn_implementation = "flash_attention_2"  # as a model loaded with that kernel reports it
    with pytest.raises(UnsupportedArchitectureError, match="eager and sdpa"):
        wrap(model).add("p", "prefix_tuning", **CONFIG)
    assert wrap(model).adapters == () and no_traces(model)


@pytest.mark.parametrize("arch", ["bert", "distilbert", "gpt2", "t5"])
def test_stack_with_lora_on_keys_and_values_in_either_order(arch):
    """Prefix rows are raw keys/values: LoRA on k/v acts on the real tokens only, whatever the order."""
    model = build(arch)
    inputs = inputs_for(arch)
    h = wrap(model)
    h.add("pt", "prefix_tuning", activate=False, **CONFIG)
    h.add("lo", "lora", r=2, alpha=2, init_weights="bert", target_modules=["q", "k", "v"], activate=False)
    outs = []
    for order in (("lo", "pt"), ("pt", "lo")):
        h.activate(*order)
        outs.append(hidden(model, inputs))
    h.merge("lo")  # LoRA folded into the projections, then the prefix alone
    h.activate("pt")
    want = hidden(model, inputs)
    keep = inputs["attention_mask"].bool() if arch != "t5" else None
    for got in outs:
        assert_close(got, want, terms=model_terms(model), mask=keep)
