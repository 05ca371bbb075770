"""Start-up cost of searching the default catalogue, before and after a change, as whole processes.

    python benchmarks/bench_catalogue.py --before /tmp/old-checkout --after . --rounds 21

Each round runs ``python -c pass`` and every command once per checkout, in alternating order (so load
on a shared machine hits both alike), each as a fresh process with ``PYTHONPATH`` set to that checkout
and an empty ``ADAPTERHUB_CACHE``. Reports medians; writes ``benchmarks/results/catalogue.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
COMMANDS = {"adapterhub search sst2": ["search", "sst2"], "adapterhub search ner": ["search", "ner"],
            "adapterhub info sst2-houlsby": ["info", "sst2-houlsby"]}


def run_once(args: list[str], checkout: Path | None) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("ADAPTERHUB_INDEX", "ADAPTERHUB_OFFLINE")}
    cache = tempfile.mkdtemp(prefix="bench-catalogue-")
    env["ADAPTERHUB_CACHE"] = cache
    if checkout is not None:
        env["PYTHONPATH"] = str(checkout)
    try:
        start = time.perf_counter()
        # cwd: a neutral directory (``python -m``/``-c`` put the cwd before PYTHONPATH on sys.path)
        subprocess.run(args, check=True, env=env, cwd=cache, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(cache, ignore_errors=True)


IN_PROCESS = """
import statistics, sys, time
from adapterhub.registry import SearchQuery, open_index, search
times = []
for _ in range(40):
    t = time.perf_counter(); search(open_index(), SearchQuery(sys.argv[1])); times.append(time.perf_counter() - t)
import adapterhub
print(statistics.median(times) * 1000, adapterhub.__file__)
"""
"""Open the bundled index and search it, in one process: the part of the command the catalogue's size can change."""


def in_process_ms(checkout: Path, term: str) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("ADAPTERHUB_INDEX", "ADAPTERHUB_OFFLINE")}
    env["PYTHONPATH"] = str(checkout)
    with tempfile.TemporaryDirectory(prefix="bench-catalogue-") as cache:
        env["ADAPTERHUB_CACHE"] = cache
        out = subprocess.run([sys.executable, "-c", IN_PROCESS, term], check=True, env=env, cwd=cache,
                             capture_output=True, text=True)
    median, module = out.stdout.split()
    if not Path(module).resolve().is_relative_to(checkout):
        raise SystemExit(f"{checkout}: the process imported {module}, not this checkout")
    return round(float(median), 3)


def summary_facts(checkout: Path) -> dict[str, int]:
    summary = checkout / "registry_index" / "search-index.jsonl"
    return {"summary_bytes": summary.stat().st_size, "names": summary.read_bytes().count(b"\n")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout of the code before the change")
    parser.add_argument("--after", type=Path, default=REPO)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "catalogue")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "adapterhub"]
    sides = {"before": args.before.resolve(), "after": args.after.resolve()}
    times: dict[str, dict[str, list[float]]] = {side: {c: [] for c in COMMANDS} for side in sides}
    passes: list[float] = []
    load_before = os.getloadavg()[0]
    for rnd in range(args.rounds):
        passes.append(run_once([sys.executable, "-c", "pass"], None))
        order = list(sides) if rnd % 2 == 0 else list(reversed(sides))
        for label, command in COMMANDS.items():
            for side in order:
                times[side][label].append(run_once(cli + command, sides[side]))
    samples: dict[str, dict[str, list[float]]] = {side: {"sst2": [], "ner": []} for side in sides}
    for rnd in range(7):  # interleaved too: each sample is the median of 40 calls in one process
        for side in (list(sides) if rnd % 2 == 0 else list(reversed(sides))):
            for term in ("sst2", "ner"):
                samples[side][term].append(in_process_ms(sides[side], term))
    in_process = {side: {t: round(statistics.median(v), 3) for t, v in terms.items()} for side, terms in samples.items()}
    ms = lambda xs: round(statistics.median(xs) * 1000, 1)  # noqa: E731
    result = {"command": f"python benchmarks/bench_catalogue.py --before OLD --after . --rounds {args.rounds}",
              "python": platform.python_version(), "machine": platform.machine(), "rounds": args.rounds,
              "python_c_pass_ms": ms(passes),
              "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
              "index": {side: summary_facts(path) for side, path in sides.items()},
              "median_ms": {side: {c: ms(v) for c, v in t.items()} for side, t in times.items()},
              "in_process_search_ms": in_process}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Default catalogue: start-up before and after the archived index joined the bundled index", "",
             f"Command: `{result['command']}`",
             f"(Python {result['python']}, {result['machine']}; medians of {args.rounds} interleaved rounds, each a "
             "fresh process with an empty cache; `python -c pass`: "
             f"{result['python_c_pass_ms']} ms; 1-minute load average {result['load_average_1min'][0]} at the "
             f"start, {result['load_average_1min'][1]} at the end, on 2 cores)", "",
             "| bundled index | names | search summary |", "| --- | --- | --- |"]
    for side in sides:
        facts = result["index"][side]
        lines.append(f"| {side} | {facts['names']} | {facts['summary_bytes']:,} bytes |")
    lines += ["", "| command | before | after |", "| --- | --- | --- |"]
    for label in COMMANDS:
        lines.append(f"| `{label}` | {result['median_ms']['before'][label]} ms | {result['median_ms']['after'][label]} ms |")
    lines += ["", "Open the bundled index and search it, in one process (median over 7 interleaved processes of the "
              "median of 40 calls each):", "",
              "| search | before | after |", "| --- | --- | --- |"]
    for term in ("sst2", "ner"):
        lines.append(f"| `{term}` | {in_process['before'][term]} ms | {in_process['after'][term]} ms |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
