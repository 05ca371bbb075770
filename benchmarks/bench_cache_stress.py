"""Cache races under load: pullers, ``cache rm`` and a ``cache gc`` loop in one cache at once.

Run:  python benchmarks/bench_cache_stress.py [--pullers 4] [--pulls 150] [--adapters 16]

The long version of ``tests/store/test_store_races.py::test_pulls_removals_and_gc_side_by_side`` (see
``tests/support/cache_stress.py`` for what each process does). Issue 13 §5 saw a few of 600 pulls fail this
way (``FileNotFoundError`` on a shared ``.part`` name, and at ``temp.mkdir()`` when gc removed a
just-created name directory). Two runs: with adapters that list identical bytes under two paths,
and without (which leaves only the gc/mkdir interleaving to hit). Every pull must succeed, every
byte served must be right, and ``verify`` must pass afterwards.

Results go to benchmarks/results/cache_stress.json and cache_stress.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support import cache_stress  # noqa: E402


def one_run(pullers: int, pulls: int, adapters: int, duplicates: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix="bench-stress-"))
    try:
        report = cache_stress.run(work / "cache", work / "work", pullers=pullers, pulls=pulls, adapters=adapters,
                                  timeout=3600, duplicates=duplicates)
        os.environ["ADAPTERHUB_CACHE"] = str(work / "cache")
        from adapterhub.store import verify

        report["verify_ok"] = verify().ok
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pullers", type=int, default=4)
    parser.add_argument("--pulls", type=int, default=150, help="pulls per puller process")
    parser.add_argument("--adapters", type=int, default=16)
    args = parser.parse_args()
    runs = {name: one_run(args.pullers, args.pulls, args.adapters, dup)
            for name, dup in (("with identical bytes under two paths", True), ("distinct files only", False))}
    command = (f"python benchmarks/bench_cache_stress.py --pullers {args.pullers} --pulls {args.pulls} "
               f"--adapters {args.adapters}")
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "cache_stress.json").write_text(json.dumps({"command": command, "runs": runs}, indent=2) + "\n")
    rows = "\n".join(f"| {name} | {r['pulls']} | {r['gc_runs']} | {len(r['failures'])} | {r['verify_ok']} | "
                     f"{r['seconds']:.0f} s |" for name, r in runs.items())
    md = f"""# Cache stress: pulls, removals and gc side by side

Command: `{command}` (Python {platform.python_version()}, {os.cpu_count()} CPUs). {args.pullers} puller
processes each pull a random one of {args.adapters} adapters {args.pulls} times (half of the pulls are
followed by `cache rm` of that version) while one process runs `cache gc` in a loop; all share one cache
and a local mirror (no network). A failure is a pull that raised or served wrong bytes.

| run | pulls | gc runs | failures | verify ok | time |
| --- | --- | --- | --- | --- | --- |
{rows}
"""
    (out / "cache_stress.md").write_text(md)
    print(md)
    for r in runs.values():
        for failure in r["failures"][:20]:
            print("FAILURE:", failure)
    return 0 if all(not r["failures"] and r["verify_ok"] for r in runs.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
