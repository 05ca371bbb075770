"""Registry and CLI-startup benchmarks (issue 2).

    python benchmarks/bench_registry.py [--names 100000] [--rounds 15]

1. Generates an index of N adapters (default 100,000) in a temp dir, then measures, as medians over
   interleaved rounds: resolving one name (open index + resolve, a different name each round), resolving
   a mistyped name (one edit, then two: the not-found error with its close-name suggestions), a
   free-text search, a filtered search and a base search (exact + compatible), each through the cached
   SQLite database and, interleaved in the same rounds, through the linear scan it replaced (same
   answers: asserted), the one-time database build, and `adapterhub info NAME` as a subprocess.
2. CLI start-up: `adapterhub --help` and `adapterhub search sst2` (bundled index) against
   `python -c pass`, interleaved, median difference (target: < 0.3 s).
Writes benchmarks/results/registry.json and registry.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from support.manifest_samples import VALID_MANIFEST  # noqa: E402

from adapterhub.errors import NotFoundError  # noqa: E402
from adapterhub.jsonio import dumps_canonical  # noqa: E402
from adapterhub.registry import SearchQuery, entry_path, init_index, open_index, resolve, search  # noqa: E402
from adapterhub.registry.entries import manifest_sha256  # noqa: E402

METHODS = [("bottleneck", {"variant": "houlsby"}), ("bottleneck", {"variant": "pfeiffer"}), ("lora", {"r": 8, "alpha": 16}),
           ("ia3", {}), ("compacter", {"variant": "compacter++"})]
TASKS = ["sst2", "mnli", "qnli", "cola", "squad", "conll2003", "imdb", "boolq"]


def generate(root: Path, n: int) -> float:
    """Write an index of n names (2 versions every 10th name) directly; returns seconds taken."""
    t0 = time.perf_counter()
    init_index(root, "bench")
    rows = []
    for i in range(n):
        name = f"adapter-{i:06d}-{TASKS[i % len(TASKS)]}"
        method, config = METHODS[i % len(METHODS)]
        versions = ["1.0.0", "1.1.0"] if i % 10 == 0 else ["1.0.0"]
        lines = []
        for v in versions:
            m = copy.deepcopy(VALID_MANIFEST)
            m.update(name=name, version=v, description=f"{method} adapter number {i} for {TASKS[i % len(TASKS)]}")
            m["task"] = {"type": "text-classification", "name": TASKS[i % len(TASKS)]}
            m["adapter"] = {"method": method, "config": config}
            lines.append(dumps_canonical({"v": 1, "name": name, "version": v, "yanked": False,
                                          "manifest_sha256": manifest_sha256(m), "manifest": m}))
        path = root / entry_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        rows.append({"name": name, "version": versions[-1], "versions": versions, "description": m["description"],
                     "task": m["task"]["name"], "task_type": m["task"]["type"], "dataset": "", "method": method,
                     "variant": config.get("variant", ""), "base_model": m["base_model"]["id"], "license": m["license"],
                     **{k: m["base_model"][k] for k in ("model_type", "hidden_size", "num_hidden_layers")}})
    rows.sort(key=lambda r: r["name"])
    (root / "search-index.jsonl").write_text("".join(dumps_canonical(r) + "\n" for r in rows))
    return time.perf_counter() - t0


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def suggested(root: Path, typo: str, meant: str) -> float:
    """Seconds to resolve ``typo`` into a not-found error that suggests ``meant``."""
    t0 = time.perf_counter()
    try:
        resolve(open_index(root), typo)
    except NotFoundError as exc:
        elapsed = time.perf_counter() - t0
        assert meant in str(exc), (typo, meant, str(exc))
        return elapsed
    raise AssertionError(f"{typo} resolved")


def run_cmd(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--names", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    exe = str(Path(sys.executable).with_name("adapterhub"))
    results: dict = {"python": platform.python_version(), "machine": platform.machine(), "names": args.names,
                     "rounds": args.rounds}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "index"
        results["generate_s"] = round(generate(root, args.names), 2)
        cache = Path(tmp) / "cache"
        results["database_build_s"] = round(timed(lambda: search(open_index(root), SearchQuery("x"), 1,
                                                                 engine="database", cache_root=cache)), 2)
        time.sleep(2.1)  # past the racy window: from now on the summary's recorded sha256 is trusted
        n = args.names
        resolve_t, info_cli_t, pass_t = [], [], []
        typo1_t, typo2_t = [], []
        queries = {"text": SearchQuery("houlsby sst2"), "filtered": SearchQuery("", task="mnli", method="lora"),
                   "base": SearchQuery("", base_model=VALID_MANIFEST["base_model"]["id"])}
        search_t: dict[str, list[float]] = {f"{q}_{e}": [] for q in queries for e in ("database", "scan")}
        for r in range(args.rounds):
            name = f"adapter-{(r * 7919) % n:06d}-{TASKS[((r * 7919) % n) % len(TASKS)]}"
            resolve_t.append(timed(lambda name=name: resolve(open_index(root), name)))
            typo1_t.append(suggested(root, name[:-2] + name[-1] + name[-2], name))  # last two letters swapped
            typo2_t.append(suggested(root, name.replace("adapter", "adaptr").replace("-0", "-o", 1), name))
            for q, query in queries.items():
                got = {}
                for engine in ("database", "scan") if r % 2 else ("scan", "database"):
                    t0 = time.perf_counter()
                    got[engine] = search(open_index(root), query, 20, engine=engine, cache_root=cache)
                    search_t[f"{q}_{engine}"].append(time.perf_counter() - t0)
                assert got["database"] == got["scan"] and got["scan"], q
            pass_t.append(run_cmd([sys.executable, "-c", "pass"]))
            info_cli_t.append(run_cmd([exe, "info", name, "--index", str(root)]))
        med = lambda xs: round(statistics.median(xs) * 1000, 2)  # noqa: E731
        results["index_100k"] = {
            "resolve_one_name_ms": med(resolve_t), "typo_one_edit_ms": med(typo1_t), "typo_two_edits_ms": med(typo2_t),
            **{f"search_{k}_ms": med(v) for k, v in search_t.items()}, "cli_info_ms": med(info_cli_t),
            "python_c_pass_ms": med(pass_t),
        }
    help_t, search_t, pass_t = [], [], []
    for _ in range(args.rounds):
        pass_t.append(run_cmd([sys.executable, "-c", "pass"]))
        help_t.append(run_cmd([exe, "--help"]))
        search_t.append(run_cmd([exe, "search", "sst2"]))
    base = statistics.median(pass_t)
    results["cli_startup"] = {
        "python_c_pass_ms": round(base * 1000, 1),
        "help_ms": round(statistics.median(help_t) * 1000, 1),
        "search_ms": round(statistics.median(search_t) * 1000, 1),
        "help_overhead_s": round(statistics.median(help_t) - base, 3),
        "search_overhead_s": round(statistics.median(search_t) - base, 3),
        "target_overhead_s": 0.3,
    }
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "registry.json").write_text(json.dumps(results, indent=2) + "\n")
    i, c = results["index_100k"], results["cli_startup"]
    md = [
        "# Registry benchmarks", "", f"Command: `python benchmarks/bench_registry.py --names {args.names} --rounds {args.rounds}`",
        f"(Python {results['python']}, {results['machine']}; medians of {args.rounds} interleaved rounds)", "",
        f"## Index of {args.names:,} adapters (generated in {results['generate_s']} s; search database built "
        f"on first search in {results['database_build_s']} s)", "",
        "| operation | median |", "| --- | --- |",
        f"| open index + resolve one name | {i['resolve_one_name_ms']} ms |",
        f"| a name one edit off: not found + close names | {i['typo_one_edit_ms']} ms |",
        f"| a name two edits off: not found + close names | {i['typo_two_edits_ms']} ms |",
        f"| search, free text (`houlsby sst2`) | {i['search_text_database_ms']} ms (linear scan: {i['search_text_scan_ms']} ms) |",
        f"| search, filters (task=mnli, method=lora) | {i['search_filtered_database_ms']} ms "
        f"(linear scan: {i['search_filtered_scan_ms']} ms) |",
        f"| search, `--base` (exact + compatible) | {i['search_base_database_ms']} ms (linear scan: {i['search_base_scan_ms']} ms) |",
        f"| `adapterhub info NAME` (subprocess) | {i['cli_info_ms']} ms (python -c pass: {i['python_c_pass_ms']} ms) |",
        "", "## CLI start-up (bundled index)", "", "| command | median | over `python -c pass` |", "| --- | --- | --- |",
        f"| `python -c pass` | {c['python_c_pass_ms']} ms | — |",
        f"| `adapterhub --help` | {c['help_ms']} ms | {c['help_overhead_s']} s |",
        f"| `adapterhub search sst2` | {c['search_ms']} ms | {c['search_overhead_s']} s |",
        "", f"Target: under {c['target_overhead_s']} s over `python -c pass`.", "",
    ]
    (out / "registry.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
