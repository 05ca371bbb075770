"""PEFT parity sweep over every supported model type, at more sizes and ranks than the suite runs.

For each model type of ``tests/support/family_cases.py``, each size (the suite's tiny config, and one with double
the hidden size and layers), each PEFT method (LoRA, DoRA, IA3) and each rank: PEFT's adapter with random non-zero
weights is saved, loaded by adapterhub, and both are run on a padded batch in float64 (the difference must be
rounding: the max relative difference is reported) and in fp32 (reported as a fraction of the suite's tolerance,
``tests/support/tolerances.py``: <= 1 passes). The suite (``tests/runtime/test_families.py``) runs the first size
and rank only. Results: ``benchmarks/results/family_parity.{json,md}``.

    python benchmarks/bench_family_parity.py [--only gemma2,bart] [--ranks 4,16]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.family_cases import CASES, case_inputs, case_output, peft_config, valid_positions  # noqa: E402
from support.tolerances import max_diff, model_terms, tolerance  # noqa: E402

from adapterhub.runtime import wrap  # noqa: E402

HIDDEN = ("hidden_size", "d_model", "n_embd", "dim")
LAYERS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers", "encoder_layers", "decoder_layers",
          "num_decoder_layers")


def scaled(config: dict, factor: int) -> dict:
    """``config`` with hidden sizes and layer counts times ``factor`` (each tower's too: CLIP)."""
    return {k: scaled(v, factor) if isinstance(v, dict) else v * factor if k in HIDDEN + LAYERS else v
            for k, v in config.items()}


def build(mt: str, factor: int):
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    return AutoModel.from_config(AutoConfig.for_model(mt, **scaled(CASES[mt].config, factor))).eval()


def outputs(model, inputs, dtype):
    x = {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.no_grad():
            return case_output(model.to(dtype)(**x), x)
    finally:
        torch.set_default_dtype(before)


def randomize(model: torch.nn.Module, scale: float = 0.3) -> None:
    """Non-zero adapter weights (PEFT initialises B to zero): a parity of nothing proves nothing."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n or "ia3_l" in n:
                noise = torch.randn(p.shape, generator=g)
                p.copy_(1 + scale * noise if "ia3_l" in n else scale * noise)


def one(peft, mt: str, factor: int, kind: str, r: int, tmp: Path) -> dict:
    t0 = time.perf_counter()
    ref = peft.get_peft_model(build(mt, factor), peft_config(peft, build(mt, factor), kind, r))
    randomize(ref)
    ref.eval().save_pretrained(tmp)
    inputs = case_inputs(mt)
    mask = valid_positions(mt, inputs)
    row: dict = {"model_type": mt, "scale": factor, "method": kind, "r": r}
    for dtype in (torch.float32, torch.float64):
        ours = build(mt, factor).to(dtype)
        wrap(ours).load(tmp, force=True)
        got, want = outputs(ours, inputs, dtype), outputs(ref, inputs, dtype)
        ref.float()
        diff = max_diff(got, want, mask)
        ref_values = want[mask] if mask is not None else want
        if dtype == torch.float32:  # how much the adapter moves the output (a parity of nothing proves nothing)
            row["effect"] = max_diff(outputs(build(mt, factor), inputs, dtype), want, mask)
        if dtype == torch.float64:
            row["float64_max_rel_diff"] = diff / max(ref_values.abs().max().item(), 1e-30)
        else:
            row["fp32_diff_over_tolerance"] = diff / tolerance(ref_values, terms=model_terms(ours))
    row["seconds"] = round(time.perf_counter() - t0, 3)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated model types (default: all)")
    parser.add_argument("--ranks", default="4,16")
    parser.add_argument("--scales", default="1,2")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "family_parity"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    import peft
    import transformers

    types = [t for t in args.only.split(",") if t] or list(CASES)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mt in types:
            for factor in (int(s) for s in args.scales.split(",")):
                for kind in ("lora", "dora", "ia3"):
                    for r in (int(x) for x in args.ranks.split(",")) if kind != "ia3" else (0,):
                        rows.append(one(peft, mt, factor, kind, r, Path(tmp) / f"{mt}-{factor}-{kind}-{r}"))
                        print(json.dumps(rows[-1]), flush=True)
    worst64 = max(r["float64_max_rel_diff"] for r in rows)
    worst32 = max(r["fp32_diff_over_tolerance"] for r in rows)
    meta = {"transformers": transformers.__version__, "peft": peft.__version__, "torch": torch.__version__,
            "command": "python benchmarks/bench_family_parity.py " + " ".join(sys.argv[1:])}
    Path(args.out + ".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [f"# PEFT parity sweep ({len(rows)} cases)", "", f"`{meta['command']}`; transformers "
             f"{meta['transformers']}, peft {meta['peft']}, torch {meta['torch']}.", "",
             f"Worst float64 relative difference: {worst64:.2e}. Worst fp32 difference / suite tolerance: "
             f"{worst32:.3f} (<= 1 passes).", "",
             "| model_type | scale | method | r | adapter effect (max abs) | float64 max rel diff | "
             "fp32 diff / tolerance |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model_type']} | {r['scale']} | {r['method']} | {r['r'] or '-'} | {r['effect']:.2e} | "
              f"{r['float64_max_rel_diff']:.1e} | {r['fp32_diff_over_tolerance']:.3f} |" for r in rows]
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    weakest = min(r["effect"] for r in rows)
    return 0 if worst64 < 1e-10 and worst32 <= 1 and weakest > 1e-3 else 1


if __name__ == "__main__":
    sys.exit(main())
