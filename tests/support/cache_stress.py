"""Several processes pulling, removing and collecting garbage in one cache at the same time.

Used by ``tests/store/test_store_races.py`` (a short run) and ``benchmarks/bench_cache_stress.py`` (a long
one). Pullers pull random adapters from a local content-addressed mirror (no network, so the
processes spend their time in the cache code), check every byte they were given and sometimes
remove what they pulled; one process runs ``cache gc`` in a loop. The adapters share blobs and some
list the same bytes under two paths, so views, blobs and name directories are created, linked and
deleted under each other's feet.

Run one process: ``python tests/support/cache_stress.py puller CACHE WORKDIR PULLS SEED`` or ``... gc CACHE
WORKDIR``; it prints one JSON line (pulls done, failures with their messages).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent


def make_adapters(workdir: Path, count: int, *, duplicates: bool = True) -> None:
    """``count`` manifests in ``workdir/manifests`` and their bytes in ``workdir/mirror``."""
    sys.path.insert(0, str(TESTS))
    from adapterhub.manifest import manifest_to_dict
    from support.store_support import manifest_for, safetensors_bytes, sha

    (workdir / "manifests").mkdir(parents=True, exist_ok=True)
    (workdir / "mirror").mkdir(exist_ok=True)
    shared = safetensors_bytes(2048, seed=99)
    for i in range(count):
        own = safetensors_bytes(512 + 64 * i, seed=i)
        config = json.dumps({"r": i}).encode()
        files = {"adapter.safetensors": own, "base.safetensors": shared, "adapter_config.json": config}
        if duplicates and i % 3 == 0:
            files["copy_of_config.json"] = config  # identical bytes under two paths
        for body in files.values():
            (workdir / "mirror" / sha(body)).write_bytes(body)
        manifest = manifest_for(files, name=f"stress-{i % (count // 2 or 1)}", version=f"1.0.{i}")
        (workdir / "manifests" / f"{i}.json").write_text(json.dumps(manifest_to_dict(manifest)))


def puller(cache: Path, workdir: Path, pulls: int, seed: int) -> dict:
    os.environ["ADAPTERHUB_CACHE"] = str(cache)
    from adapterhub.manifest import load_manifest
    from adapterhub.store import ContentDirSource, pull, remove_cached

    rng = random.Random(seed)
    manifests = [load_manifest(p) for p in sorted((workdir / "manifests").glob("*.json"))]
    source = ContentDirSource(workdir / "mirror")
    failures: list[str] = []
    for _ in range(pulls):
        m = rng.choice(manifests)
        try:
            got = pull(m, sources=[source])
        except Exception as exc:
            failures.append(f"{m.id}: {type(exc).__name__}: {exc}")
            continue
        for f in m.files:
            try:
                data = got.files[f.path].read_bytes()
            except FileNotFoundError:  # another puller removed this version meanwhile: allowed
                continue
            if data != (workdir / "mirror" / f.sha256).read_bytes():
                failures.append(f"{m.id} {f.path}: served other bytes")
        if rng.random() < 0.5:
            try:
                remove_cached(f"{m.name}=={m.version}")
            except Exception as exc:
                failures.append(f"rm {m.id}: {type(exc).__name__}: {exc}")
    return {"role": "puller", "pulls": pulls, "failures": failures}


def collector(cache: Path, workdir: Path) -> dict:
    os.environ["ADAPTERHUB_CACHE"] = str(cache)
    from adapterhub.store import gc

    runs, failures = 0, []
    while not (workdir / "stop").exists():
        try:
            gc()
            runs += 1
        except Exception as exc:
            failures.append(f"gc: {type(exc).__name__}: {exc}")
    return {"role": "gc", "runs": runs, "failures": failures}


def run(cache: Path, workdir: Path, *, pullers: int, pulls: int, adapters: int = 12, timeout: float = 120,
        duplicates: bool = True) -> dict:
    """Start ``pullers`` puller processes and one gc loop; wait; return what every process reported."""
    make_adapters(workdir, adapters, duplicates=duplicates)
    paths = [p for p in (os.environ.get("PYTHONPATH", ""), str(REPO)) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    cmd = [sys.executable, str(Path(__file__).resolve())]
    gc_proc = subprocess.Popen([*cmd, "gc", str(cache), str(workdir)], stdout=subprocess.PIPE, text=True, env=env)
    procs = [subprocess.Popen([*cmd, "puller", str(cache), str(workdir), str(pulls), str(seed)],
                              stdout=subprocess.PIPE, text=True, env=env) for seed in range(pullers)]
    start = time.monotonic()
    reports = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=max(1.0, timeout - (time.monotonic() - start)))
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        (workdir / "stop").touch()
        out, _ = gc_proc.communicate(timeout=60)
        for p in procs:
            if p.poll() is None:
                p.kill()
    reports.append(json.loads(out.strip().splitlines()[-1]))
    return {"seconds": time.monotonic() - start, "reports": reports,
            "failures": [f for r in reports for f in r["failures"]],
            "pulls": sum(r.get("pulls", 0) for r in reports), "gc_runs": sum(r.get("runs", 0) for r in reports)}


if __name__ == "__main__":
    role, cache_arg, work_arg = sys.argv[1:4]
    if role == "puller":
        result = puller(Path(cache_arg), Path(work_arg), int(sys.argv[4]), int(sys.argv[5]))
    else:
        result = collector(Path(cache_arg), Path(work_arg))
    print(json.dumps(result))
