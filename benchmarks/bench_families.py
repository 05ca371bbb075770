"""Speed on every supported family, side by side with PEFT in one process (issue 14 section 3).

Two measurements, each in interleaved rounds (every variant once per round, the order rotating between rounds,
medians), CPU, ``torch.set_num_threads(1)``:

* **attach**: for every model type of ``tests/support/family_cases.py`` (the suite's tiny random config; every
  family of ``adapterhub/families.py`` has at least one) and each method (LoRA, DoRA, IA3), an adapter saved by
  PEFT with random weights is attached to a fresh copy of the same base each round, by us
  (``wrap(model).load(dir)``, binding the model included) and by ``PeftModel.from_pretrained(model, dir)``.
  The copy is made outside the timer. Line: ours / PEFT <= 1.
* **generate**: on a few causal families big enough that generation dominates (hidden 256, 4 layers, vocabulary
  2048 by default), greedy ``generate`` of 64 new tokens with ``use_cache=True`` from a 16-token prompt: the
  base, PEFT's LoRA unmerged, ours unmerged (the same weights) and ours merged (``merge``). Lines: ours unmerged
  tokens/s >= 0.95 x PEFT's; ours merged >= 0.99 x the base. The generated tokens of PEFT and ours must agree.

Needs ``peft``. Results: ``benchmarks/results/families.{json,md}`` (``--out``, ``--name`` to change), with the load average
before and after (the machine is shared: rerun when it is high).

    python benchmarks/bench_families.py [--rounds 15] [--only llama,bert] [--methods lora,dora,ia3]
        [--generate llama,gpt2,qwen2,phi,gpt_neox] [--skip-attach] [--skip-generate]
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from bench_family_parity import randomize  # noqa: E402
from support.family_cases import CASES, case_model, peft_config  # noqa: E402

from adapterhub.runtime import wrap  # noqa: E402

GENERATE = ("llama", "gpt2", "qwen2", "phi", "gpt_neox")
ATTACH_LINE = 1.0
UNMERGED_LINE = 0.95
MERGED_LINE = 0.99

Case = tuple[Callable[[], object], Callable[[object], object]]
"""(setup outside the timer, timed call on what setup returned)."""


def rounds_of(cases: dict[str, Case], rounds: int, warmup: int = 2) -> dict[str, dict[str, list[float]]]:
    """Wall and process-CPU seconds per call of each case, interleaved; the order rotates each round so no case
    always runs first. CPU time is the check on a shared machine: another process's load stretches wall time."""
    names = list(cases)
    times: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in names}
    for i in range(warmup + rounds):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            setup, run = cases[name]
            arg = setup()
            wall, cpu = time.perf_counter(), time.process_time()
            run(arg)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            if i >= warmup:
                times[name]["wall"].append(wall)
                times[name]["cpu"].append(cpu)
    return times


def medians(times: dict[str, dict[str, list[float]]], clock: str) -> dict[str, float]:
    return {k: statistics.median(v[clock]) for k, v in times.items()}


def save_peft(peft, base: torch.nn.Module, kind: str, directory: Path, r: int = 8) -> Path:
    ref = peft.get_peft_model(copy.deepcopy(base), peft_config(peft, base, kind, r))
    randomize(ref, 0.1)
    ref.eval().save_pretrained(str(directory))
    return directory


def attach_cases(peft, base: torch.nn.Module, src: Path) -> dict[str, Case]:
    """Ours and PEFT's attach of ``src``, each on a fresh copy of ``base`` made outside the timer."""

    def fresh() -> torch.nn.Module:
        return copy.deepcopy(base)

    return {"ours": (fresh, lambda m: wrap(m).load(src)),
            "peft": (fresh, lambda m: peft.PeftModel.from_pretrained(m, str(src)))}


def attach(peft, types: list[str], methods: list[str], rounds: int, work: Path) -> list[dict]:
    rows = []
    for mt in types:
        base = case_model(mt)
        for kind in methods:
            src = save_peft(peft, base, kind, work / f"{mt}-{kind}")
            times = rounds_of(attach_cases(peft, base, src), rounds, warmup=1)
            med, cpu = medians(times, "wall"), medians(times, "cpu")
            row = {"model_type": mt, "method": kind, "ours_ms": med["ours"] * 1e3, "peft_ms": med["peft"] * 1e3,
                   "ratio": med["ours"] / med["peft"], "cpu_ratio": cpu["ours"] / cpu["peft"]}
            row["ok"] = row["ratio"] <= ATTACH_LINE
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def generation_config(mt: str, hidden: int, layers: int, vocab: int) -> dict:
    """The suite's config of ``mt`` at ``hidden`` width, ``layers`` deep, 4 heads, feed-forward 4x."""
    sizes = {"hidden_size": hidden, "n_embd": hidden, "num_hidden_layers": layers, "n_layer": layers,
             "intermediate_size": 4 * hidden, "n_inner": 4 * hidden, "vocab_size": vocab}
    config = {k: sizes.get(k, v) for k, v in CASES[mt].config.items()}
    for key in ("bos_token_id", "eos_token_id"):
        if config.get(key, 0) >= vocab:
            config[key] = vocab - 1
    return config


def greedy(model: torch.nn.Module, *, prompt: torch.Tensor, new_tokens: int, pad: int) -> torch.Tensor:
    """Exactly ``new_tokens`` greedy tokens with the KV cache."""
    with torch.inference_mode():
        return model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                              max_new_tokens=new_tokens, min_new_tokens=new_tokens, use_cache=True, pad_token_id=pad)


def hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def generate(peft, types: list[str], rounds: int, work: Path, hidden: int, layers: int, vocab: int,
             new_tokens: int) -> list[dict]:
    from transformers import AutoConfig, AutoModelForCausalLM

    rows = []
    prompt = torch.randint(3, vocab, (1, 16), generator=torch.Generator().manual_seed(1))
    for mt in types:
        torch.manual_seed(0)
        config = AutoConfig.for_model(mt, **generation_config(mt, hidden, layers, vocab))
        built = AutoModelForCausalLM.from_config(config).eval()
        base = copy.deepcopy(built)  # every variant is a deep copy: weights in the same kind of memory
        del built
        src = save_peft(peft, base, "lora", work / f"gen-{mt}")
        variants = {"base": copy.deepcopy(base), "peft_unmerged": peft.PeftModel.from_pretrained(copy.deepcopy(base), str(src)).eval()}
        ours = copy.deepcopy(base)
        wrap(ours).load(src)
        variants["ours_unmerged"] = ours
        merged = copy.deepcopy(base)
        wrap(merged).load(src, name="lora")
        wrap(merged).merge("lora")
        variants["ours_merged"] = merged

        run = functools.partial(greedy, prompt=prompt, new_tokens=new_tokens, pad=config.pad_token_id or 0)
        tokens = {k: run(m) for k, m in variants.items()}
        cases: dict[str, Case] = {k: (lambda m=m: m, run) for k, m in variants.items()}
        times = rounds_of(cases, rounds)
        tps = {k: new_tokens / v for k, v in medians(times, "wall").items()}
        cpu = {k: new_tokens / v for k, v in medians(times, "cpu").items()}
        row = {"model_type": mt, **{f"{k}_tok_s": v for k, v in tps.items()},
               "unmerged_vs_peft": tps["ours_unmerged"] / tps["peft_unmerged"],
               "merged_vs_base": tps["ours_merged"] / tps["base"],
               "cpu_unmerged_vs_peft": cpu["ours_unmerged"] / cpu["peft_unmerged"],
               "cpu_merged_vs_base": cpu["ours_merged"] / cpu["base"],
               "same_tokens_ours_peft": bool(torch.equal(tokens["ours_unmerged"], tokens["peft_unmerged"])),
               "same_tokens_merged_unmerged": bool(torch.equal(tokens["ours_merged"], tokens["ours_unmerged"]))}
        row["merged_hooks"] = hook_count(merged)  # merged runs the base's code: no hook left on any module
        row["ok"] = row["unmerged_vs_peft"] >= UNMERGED_LINE and row["merged_vs_base"] >= MERGED_LINE
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def shown_command() -> str:
    return " ".join(["python", "benchmarks/bench_families.py", *sys.argv[1:]])


def write(out: Path, name: str, result: dict) -> str:
    meta = result["meta"]
    lines = ["# Speed on every family, side by side with PEFT", "", f"Command: `{meta['command']}`", "",
             f"Versions: python {meta['python']}, torch {meta['torch']}, transformers {meta['transformers']}, "
             f"peft {meta['peft']}. CPU, 1 thread, {meta['rounds']} interleaved rounds (order rotating), medians.",
             f"Load average (1/5/15 min) on {meta['cores']} cores: before {meta['load_before']}, after "
             f"{meta['load_after']}.", ""]
    if result["attach"]:
        rows = result["attach"]
        worst = max(rows, key=lambda r: r["ratio"])
        lines += ["## Attach an adapter saved by PEFT (fresh copy of the base each round)", "",
                  f"Line: ours / `PeftModel.from_pretrained` <= {ATTACH_LINE}. {sum(r['ok'] for r in rows)} of "
                  f"{len(rows)} within; worst {worst['model_type']} {worst['method']} at {worst['ratio']:.3f}.", "",
                  "| model_type | method | ours (ms) | PEFT (ms) | ours / PEFT | CPU-time ratio | ok |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['model_type']} | {r['method']} | {r['ours_ms']:.2f} | {r['peft_ms']:.2f} | {r['ratio']:.3f} | "
                  f"{r['cpu_ratio']:.3f} | {r['ok']} |" for r in rows]
        lines.append("")
    if result["generate"]:
        g = meta["generate"]
        lines += [f"## Greedy generation, {g['new_tokens']} new tokens, use_cache=True (hidden {g['hidden']}, "
                  f"{g['layers']} layers, vocabulary {g['vocab']}, LoRA r=8 on q, v and the first FFN projection)",
                  "", f"Lines: ours unmerged / PEFT unmerged >= {UNMERGED_LINE}; ours merged / base >= {MERGED_LINE} "
                  "(tokens/s).", "",
                  "| model_type | base tok/s | PEFT unmerged | ours unmerged | ours merged | unmerged / PEFT | "
                  "merged / base | CPU-time ratios | same tokens as PEFT | ok |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['model_type']} | {r['base_tok_s']:.0f} | {r['peft_unmerged_tok_s']:.0f} | "
                  f"{r['ours_unmerged_tok_s']:.0f} | {r['ours_merged_tok_s']:.0f} | {r['unmerged_vs_peft']:.3f} | "
                  f"{r['merged_vs_base']:.3f} | {r['cpu_unmerged_vs_peft']:.3f}, {r['cpu_merged_vs_base']:.3f} | "
                  f"{r['same_tokens_ours_peft']} | {r['ok']} |" for r in result["generate"]]
        lines += ["", "A merged LoRA is folded into the weights (`W += s B A`) and leaves no hook on the model"
                  + (f" (hooks counted on the merged models: {sorted({r['merged_hooks'] for r in result['generate']})})"
                     if all("merged_hooks" in r for r in result["generate"]) else "")
                  + ", so merged and base run the same computation: their wall-clock ratio measures the machine's "
                  "load between interleaved runs, not a cost. The CPU-time ratios (process time, less sensitive to "
                  "other processes) are the check on a shared machine.", ""]
    text = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{name}.md").write_text(text)
    return text


def rerender(path: Path) -> str:
    """Rewrite ``<stem>.md`` from ``<stem>.json`` (after a change to the report's text, without re-measuring)."""
    return write(path.parent, path.stem, json.loads(path.read_text()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--only", default="", help="comma-separated model types to attach to (default: all)")
    parser.add_argument("--methods", default="lora,dora,ia3")
    parser.add_argument("--generate", default=",".join(GENERATE), help="causal model types to generate with")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--skip-attach", action="store_true")
    parser.add_argument("--skip-generate", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--name", default="families", help="results file stem (families_v5 for transformers 5.x)")
    parser.add_argument("--rerender", metavar="JSON", help="only rewrite the .md of an earlier run's results .json")
    args = parser.parse_args()
    if args.rerender:
        print(rerender(Path(args.rerender)))
        return 0
    torch.set_num_threads(1)
    import peft
    import transformers

    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="adapterhub-bench-families-") as tmp:
        work = Path(tmp)
        attach_rows = [] if args.skip_attach else attach(
            peft, [t for t in args.only.split(",") if t] or list(CASES), args.methods.split(","), args.rounds, work)
        gen_rows = [] if args.skip_generate else generate(
            peft, [t for t in args.generate.split(",") if t], args.rounds, work, args.hidden, args.layers, args.vocab,
            args.new_tokens)
    meta = {"command": shown_command(), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__, "rounds": args.rounds,
            "cores": os.cpu_count(), "load_before": load_before,
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "generate": {"hidden": args.hidden, "layers": args.layers, "vocab": args.vocab,
                         "new_tokens": args.new_tokens, "prompt": 16, "batch": 1}}
    print(write(Path(args.out), args.name, {"meta": meta, "attach": attach_rows, "generate": gen_rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
