"""This checkout's cold pull against another checkout's, in the same rounds, each next to its own minimal
verified download.

Run:  python benchmarks/cold_against.py OTHER [--rounds 41] [--cache-dir /dev/shm]
      (OTHER: e.g. ``git worktree add /tmp/base 5aa6e60``)

One ``adapterhub.server`` (this checkout's, in its own process) serves a 50 MB safetensors file and an
8-byte config. Two worker processes, one importing each checkout, each with its own cache under
``--cache-dir``, time per round: the minimal verified download (``requests`` stream + sha256 on a helper
thread), the cold pull of the weights file alone and of the two-file adapter (fresh cache each call,
order alternating). Rounds alternate between the workers (this, other, other, this, ...), so load on the
machine hits both alike; each worker's ratios use its own minimal download from the same rounds.
Prints medians of wall and process CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = ("minimal", "weights alone", "adapter")


def worker(tree: str, endpoint: str, commit: str, work: Path) -> None:
    """Answer each line on stdin with one round's timings (JSON), importing adapterhub from ``tree``."""
    sys.path[:0] = [tree, str(Path(tree) / "tests")]
    import hashlib
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    import requests
    from support.store_support import big_safetensors, manifest_for

    from adapterhub.store import FetchOptions, pull

    payload = big_safetensors(50 * 1024 * 1024)
    digest = hashlib.sha256(payload).hexdigest()
    source = [{"type": "hf", "repo_id": "org/bench", "revision": commit, "endpoint": endpoint}]
    adapter = manifest_for({"adapter.safetensors": payload, "adapter_config.json": b'{"r": 8}'}, source,
                           name="bench-adapter")
    alone = manifest_for({"adapter.safetensors": payload}, source, name="bench-weights-only")
    cache, target = work / "cache", work / "plain.bin"
    os.environ["ADAPTERHUB_CACHE"] = str(cache)
    url = f"{endpoint}/org/bench/resolve/{commit}/adapter.safetensors"
    session, opts = requests.Session(), FetchOptions()

    def minimal() -> None:
        h = hashlib.sha256()
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: deque = deque()
            with session.get(url, stream=True, timeout=30) as resp, open(target, "wb") as fh:
                for chunk in resp.iter_content(1 << 20):
                    fh.write(chunk)
                    pending.append(pool.submit(h.update, chunk))
                    while len(pending) > 16:
                        pending.popleft().result()
            for f in pending:
                f.result()
        assert h.hexdigest() == digest

    calls = dict(zip(RUNS, (minimal, lambda: pull(alone, options=opts), lambda: pull(adapter, options=opts)),
                     strict=True))

    def clean() -> None:
        shutil.rmtree(cache, ignore_errors=True)
        target.unlink(missing_ok=True)

    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    for call in calls.values():  # warm-up: imports, connections
        clean()
        call()
    print("ready", flush=True)
    for i, _ in enumerate(sys.stdin):
        out = {}
        for name in RUNS if i % 2 == 0 else RUNS[::-1]:
            clean()
            c, t = cpu(), time.perf_counter()
            calls[name]()
            out[name], out[f"{name} cpu"] = time.perf_counter() - t, cpu() - c
        print(json.dumps(out), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("other", type=Path, help="the other checkout (its adapterhub/ and tests/ are used)")
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]
    import bench_store as bench

    work = Path(tempfile.mkdtemp(prefix="cold-against-", dir=args.cache_dir))
    server, endpoint, commit, _ = bench.served_bench_repo(work, 50)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    workers: dict[str, subprocess.Popen] = {}
    try:
        for label, tree in (("this", ROOT), ("other", args.other.resolve())):
            (work / label).mkdir()
            workers[label] = subprocess.Popen(
                [sys.executable, __file__, "--worker", str(tree), endpoint, commit, str(work / label)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=work)
            assert workers[label].stdout.readline().strip() == "ready"
        load = os.getloadavg()[0]
        samples: dict[str, list[dict[str, float]]] = {label: [] for label in workers}
        for i in range(args.rounds):
            for label in ("this", "other") if i % 2 == 0 else ("other", "this"):
                workers[label].stdin.write("round\n")
                workers[label].stdin.flush()
                samples[label].append(json.loads(workers[label].stdout.readline()))
    finally:
        for proc in workers.values():
            proc.kill()
        bench.stop_server(server, work)
    med = statistics.median
    print(f"load {load:.1f}/{os.getloadavg()[0]:.1f}; medians of {args.rounds} alternating rounds, ms; "
          f"ratio = minimal verified download / cold pull; this = {ROOT.name}, other = {args.other}")
    for label, rounds in samples.items():
        ms = {k: med(r[k] for r in rounds) * 1000 for k in rounds[0]}
        print(f"  {label}: minimal {ms['minimal']:.1f}, weights alone {ms['weights alone']:.1f} "
              f"({ms['minimal'] / ms['weights alone']:.2f}x), adapter {ms['adapter']:.1f} "
              f"({ms['minimal'] / ms['adapter']:.2f}x); CPU {ms['minimal cpu']:.0f} / "
              f"{ms['weights alone cpu']:.0f} / {ms['adapter cpu']:.0f}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4], Path(sys.argv[5]))
        sys.exit(0)
    sys.exit(main())
