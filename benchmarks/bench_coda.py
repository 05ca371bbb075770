"""CoDA speed on all-MiniLM-L6-v2 (CPU, 1 thread, interleaved rounds, medians).

CoDA's point is conditional computation: the frozen layers run on only k of the n tokens. This measures
the forward time of the bare encoder with CoDA at several k against the base itself and against a dense
parallel bottleneck adapter of the same size (the "P-Adapter" CoDA is compared with in its paper), at two
sequence lengths. The router's soft top-k and the gather/scatter are included; nothing is merged.

    python benchmarks/bench_coda.py [--rounds 15] [--model-path DIR]

Results: ``benchmarks/results/coda.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent

from bench_runtime import interleave, model_path  # noqa: E402 - same directory; one timing protocol

K_VALUES = (0.5, 0.25)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--model-path", default=None)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lengths", default="128,512")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    from transformers import AutoModel

    from adapterhub.runtime import wrap

    base = AutoModel.from_pretrained(model_path(args.model_path), attn_implementation="sdpa").eval()
    models = {"base": base}
    dense = copy.deepcopy(base)
    wrap(dense).add("p", "bottleneck", variant="parallel", reduction_factor=16)
    models["parallel bottleneck"] = dense
    for k in K_VALUES:
        m = copy.deepcopy(base)
        wrap(m).add("c", "coda", reduction_factor=16, k=k)
        models[f"CoDA k={k:g}"] = m

    rows = []
    samples = {}
    vocab = base.config.vocab_size
    for n in (int(x) for x in args.lengths.split(",")):
        ids = torch.randint(1000, vocab, (args.batch, n))
        mask = torch.ones_like(ids)

        def forward(model, ids=ids, mask=mask):
            with torch.inference_mode():
                return model(input_ids=ids, attention_mask=mask).last_hidden_state

        times = interleave({name: (lambda m=m: forward(m)) for name, m in models.items()}, args.rounds)
        med = {name: statistics.median(t) for name, t in times.items()}
        samples[str(n)] = times
        for name in models:
            rows.append({"tokens": n, "model": name, "median_ms": med[name] * 1000,
                         "vs_base": med["base"] / med[name], "vs_parallel": med["parallel bottleneck"] / med[name]})

    results = {"command": f"python benchmarks/bench_coda.py --rounds {args.rounds} --batch {args.batch} "
                          f"--lengths {args.lengths}",
               "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": 1},
               "rows": rows, "samples_s": samples}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "coda.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["# CoDA forward speed on all-MiniLM-L6-v2 (CPU, 1 thread)", "",
             f"Command: `{results['command']}`; bare encoder, batch {args.batch}, random token ids, sdpa attention, "
             f"medians of {args.rounds} interleaved rounds. Speed-up = reference time / this time.", "",
             "| tokens | model | median | speed-up vs base | speed-up vs parallel bottleneck |",
             "|---:|---|---:|---:|---:|"]
    lines += [f"| {r['tokens']} | {r['model']} | {r['median_ms']:.1f} ms | {r['vs_base']:.2f}x | "
              f"{r['vs_parallel']:.2f}x |" for r in rows]
    lines += ["", "CoDA here runs every layer conditionally (no `leave_out`) with reduction factor 16 for its "
              "parallel bottleneck; the parallel bottleneck row is the same adapter on a dense model.", ""]
    (out / "coda.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
