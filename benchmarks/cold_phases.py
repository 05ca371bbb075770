"""Where a cold pull's milliseconds go, next to the minimal verified download, in the same rounds.

Run:  python benchmarks/cold_phases.py [--rounds 21] [--size-mb 50] [--cache-dir /dev/shm]

The same setup as ``bench_store.py``'s cold comparison (a local ``adapterhub.server`` in its own process,
a 50 MB safetensors file plus an 8-byte config, cache and references under ``--cache-dir``). Each call
is timed with marks on a shared clock (0 = the call starts), taken through public entry points:
``Transport.open`` (a GET sent / its headers in), ``huggingface_hub.get_hf_file_metadata`` (the metadata
call, where one is made), ``BlobWriter.write`` (first and last body byte into the cache), ``BlobWriter.commit`` (sha256
tail, header check, fsync, rename) and the pull's ``publish_view``. For the minimal verified download
(``requests`` stream + sha256 on a helper thread) the marks are its GET, first and last byte and the
end of hashing. Printed: the median of each mark over the rounds, per variant (interleaved rounds).
Marks of the adapter's small file are its own (the first time each mark is reached in a call).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import bench_store as bench  # puts tests/ on sys.path for support.*
from support.store_support import manifest_for  # noqa: E402

marks: dict[str, float] = {}
clock = [0.0]


def mark(name: str, *, last: bool = False) -> None:
    now = time.perf_counter() - clock[0]
    if last or name not in marks:
        marks[name] = now


def instrument() -> None:
    """Wrap the public entry points named in the module docstring with marks."""
    import huggingface_hub

    import adapterhub.store.pull  # noqa: F401 - the module, not the function re-exported by adapterhub.store
    from adapterhub.store.writer import BlobWriter
    from adapterhub.transport.client import Transport

    pull_module = sys.modules["adapterhub.store.pull"]

    def around(owner, name: str, label: str) -> None:
        inner = getattr(owner, name)

        def wrapped(*args, **kwargs):
            mark(f"{label} start")
            try:
                return inner(*args, **kwargs)
            finally:
                mark(f"{label} end")

        setattr(owner, name, wrapped)

    around(Transport, "open", "GET (headers)")
    around(huggingface_hub, "get_hf_file_metadata", "metadata request")
    around(BlobWriter, "commit", "commit")
    around(pull_module, "publish_view", "view")
    write = BlobWriter.write

    def marked_write(self, data):
        mark("first byte")
        write(self, data)
        mark("last byte", last=True)

    BlobWriter.write = marked_write


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cold-phases-", dir=args.cache_dir))
    server, endpoint, commit, files = bench.served_bench_repo(work, args.size_mb)
    payload = files["adapter.safetensors"]
    digest = hashlib.sha256(payload).hexdigest()
    load_before = os.getloadavg()[0]
    try:
        import requests

        from adapterhub.store import FetchOptions, pull

        cache, target = work / "cache", work / "plain.bin"
        os.environ["ADAPTERHUB_CACHE"] = str(cache)
        source = [{"type": "hf", "repo_id": "org/bench", "revision": commit, "endpoint": endpoint}]
        adapter = manifest_for(files, source, name="bench-adapter")
        alone = manifest_for({"adapter.safetensors": payload}, source, name="bench-weights-only")
        url = f"{endpoint}/org/bench/resolve/{commit}/adapter.safetensors"
        session = requests.Session()
        opts = FetchOptions()

        def minimal() -> None:
            h = hashlib.sha256()
            with ThreadPoolExecutor(max_workers=1) as pool:
                pending: deque = deque()
                mark("GET (headers) start")
                with session.get(url, stream=True, timeout=30) as resp, open(target, "wb") as fh:
                    mark("GET (headers) end")
                    for chunk in resp.iter_content(1 << 20):
                        mark("first byte")
                        fh.write(chunk)
                        pending.append(pool.submit(h.update, chunk))
                        while len(pending) > 16:
                            pending.popleft().result()
                    mark("last byte", last=True)
                for f in pending:
                    f.result()
                mark("hashed")
            assert h.hexdigest() == digest

        runs = {"minimal verified download": minimal,
                "cold pull, weights file alone": lambda: pull(alone, options=opts),
                "cold pull, adapter (weights + config)": lambda: pull(adapter, options=opts)}

        def clean() -> None:
            shutil.rmtree(cache, ignore_errors=True)
            target.unlink(missing_ok=True)

        for fn in runs.values():  # warm-up: imports, connections, the metadata thread
            clean()
            fn()
        instrument()
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
        names = list(runs)
        for i in range(args.rounds):
            for name in names if i % 2 == 0 else names[::-1]:
                clean()
                marks.clear()
                clock[0] = time.perf_counter()
                runs[name]()
                mark("end")
                samples[name].append(dict(marks))
        clean()
    finally:
        bench.stop_server(server, work)
    med = statistics.median
    print(f"load {load_before:.1f}/{os.getloadavg()[0]:.1f}; medians of {args.rounds} interleaved rounds; "
          f"ms since the call started; cache under {args.cache_dir}")
    for name, rounds in samples.items():
        keys = sorted({k for r in rounds for k in r}, key=lambda k: med(r.get(k, 0.0) for r in rounds))
        print(f"{name}:")
        print("    " + ", ".join(f"{k} {med(r[k] for r in rounds if k in r) * 1000:.1f}" for k in keys))
    return 0


if __name__ == "__main__":
    sys.exit(main())
