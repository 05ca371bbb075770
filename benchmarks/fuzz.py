"""Coverage-guided fuzzing (atheris / libFuzzer) of every parser of untrusted bytes (issue 13 §7).

    python benchmarks/fuzz.py                          # every target, 100,000 inputs each
    python benchmarks/fuzz.py --targets manifest,archive --runs 20000 --max-time 60
    python benchmarks/fuzz.py --list

Targets and their rule are in ``benchmarks/fuzz_targets.py``: the only allowed outcomes are success
or a typed ``AdapterHubError``. Each target runs in its own process (libFuzzer exits when done), from
seed inputs written to a fresh corpus directory; crashing inputs are kept under ``--artifacts``
(default: a temp dir) and the run exits 1. Prints, per target: inputs executed, inputs/s, seconds,
corpus size, and the outcome. ``--json FILE`` writes the same numbers.

Needs ``atheris`` (``pip install atheris``; wheels for CPython 3.11 on Linux x86-64).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
INSTRUMENTED = ("adapterhub", "fuzz_targets", "zipfile", "tarfile", "gzip", "json")
"""Modules whose branches guide the fuzzer (instrumenting everything imported costs a minute of start-up);
only those a target imports (``fuzz_targets.prepare``) are instrumented."""
MAX_LEN = {"archive": 16384, "safetensors_header": 8192}
_STAT = re.compile(r"stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb):\s*(\d+)")


def worker(target: str, libfuzzer_args: list[str]) -> None:
    """Run inside the child process: instrument adapterhub (and the stdlib parsers it uses), then fuzz."""
    import atheris

    sys.path.insert(0, str(HERE))
    with atheris.instrument_imports(include=list(INSTRUMENTED)):
        import fuzz_targets

        run = fuzz_targets.prepare(target)
    from adapterhub.errors import AdapterHubError

    sys.setrecursionlimit(1000)  # the interpreter default: no target may rely on a raised limit

    def one_input(data: bytes) -> None:
        with contextlib.suppress(AdapterHubError):
            run(data)

    atheris.Setup([sys.argv[0], *libfuzzer_args], one_input)
    atheris.Fuzz()


def run_target(target: str, runs: int, max_time: int, artifacts: Path, seed: int | None) -> dict[str, object]:
    sys.path.insert(0, str(HERE))
    import fuzz_targets

    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{target}-"))
    seeds = fuzz_targets.write_seeds(target, corpus)
    artifacts.mkdir(parents=True, exist_ok=True)
    dictionary = fuzz_targets.write_dictionary(target, corpus.parent / f"{corpus.name}.dict")
    args = [str(corpus), f"-runs={runs}", f"-max_len={MAX_LEN.get(target, 8192)}", "-timeout=30",
            "-rss_limit_mb=3072", "-print_final_stats=1", f"-artifact_prefix={artifacts}/{target}-",
            f"-dict={dictionary}", "-use_value_profile=1"]
    if max_time:
        args.append(f"-max_total_time={max_time}")
    if seed is not None:
        args.append(f"-seed={seed}")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", target, "--", *args]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    seconds = time.perf_counter() - started
    stats = {k: int(v) for k, v in _STAT.findall(proc.stderr)}
    crashed = proc.returncode != 0
    return {
        "target": target,
        "inputs": stats.get("number_of_executed_units", 0),
        "inputs_per_s": stats.get("average_exec_per_sec", 0),
        "seconds": round(seconds, 1),
        "seeds": seeds,
        "corpus": len(list(corpus.iterdir())),
        "peak_rss_mb": stats.get("peak_rss_mb", 0),
        "outcome": "crash" if crashed else "ok",
        "log_tail": proc.stderr[-4000:] if crashed else "",
    }


def markdown(command: str, results: list[dict[str, object]]) -> str:
    rows = "".join(f"| {r['target']} | {r['inputs']:,} | {r['inputs_per_s']:,} | {r['seconds']} | {r['corpus']} | "
                   f"{r['outcome']} |\n" for r in results)
    return (f"# Fuzzing\n\nCommand: `{command}` (Python {sys.version.split()[0]}, atheris/libFuzzer, coverage-guided, "
            f"{os.cpu_count()} CPUs shared with other jobs).\n\n"
            "| target | inputs | inputs/s | seconds | corpus at end | outcome |\n| --- | --- | --- | --- | --- | --- |\n"
            + rows + "\nOutcome `ok`: every input ended in success or a typed `AdapterHubError`. The targets and the "
            "properties they check are in `benchmarks/fuzz_targets.py`.\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        worker(argv[1], argv[3:] if argv[2:3] == ["--"] else argv[2:])
        return 0
    sys.path.insert(0, str(HERE))
    import fuzz_targets

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="all", help="comma-separated target names, or 'all'")
    parser.add_argument("--runs", type=int, default=100_000, help="inputs per target (default 100,000)")
    parser.add_argument("--max-time", type=int, default=0, help="seconds per target at most (0: no limit)")
    parser.add_argument("--seed", type=int, default=None, help="libFuzzer seed (default: random)")
    parser.add_argument("--artifacts", type=Path, default=None, help="where crashing inputs are kept")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the results as a Markdown table here")
    parser.add_argument("--list", action="store_true", help="list the targets and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(fuzz_targets.TARGETS))
        return 0
    names = list(fuzz_targets.TARGETS) if args.targets == "all" else args.targets.split(",")
    unknown = sorted(set(names) - set(fuzz_targets.TARGETS))
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {', '.join(fuzz_targets.TARGETS)}")
    artifacts = args.artifacts or Path(tempfile.mkdtemp(prefix="fuzz-artifacts-"))
    results = []
    print(f"{'target':<20} {'inputs':>9} {'inputs/s':>9} {'seconds':>8} {'corpus':>7}  outcome", flush=True)
    for name in names:
        result = run_target(name, args.runs, args.max_time, artifacts, args.seed)
        results.append(result)
        print(f"{name:<20} {result['inputs']:>9} {result['inputs_per_s']:>9} {result['seconds']:>8} "
              f"{result['corpus']:>7}  {result['outcome']}", flush=True)
        if result["outcome"] != "ok":
            print(result["log_tail"], file=sys.stderr)
    shown = [a for i, a in enumerate(argv) if a != "--artifacts" and argv[i - 1 : i] != ["--artifacts"]]
    command = "python benchmarks/fuzz.py " + " ".join(shown)  # without the (machine-local) artifacts path
    if args.json:
        kept = [{k: v for k, v in r.items() if k != "log_tail" or v} for r in results]
        args.json.write_text(json.dumps({"command": command, "python": sys.version.split()[0], "runs": args.runs,
                                         "results": kept}, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(markdown(command, results))
    failed = [r["target"] for r in results if r["outcome"] != "ok"]
    if failed:
        print(f"crashing inputs for {', '.join(failed)} are in {artifacts}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
