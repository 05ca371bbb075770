"""Store benchmarks: warm ``adapterhub pull``, cold pull throughput, verification throughput.

Run:  python benchmarks/bench_store.py [--rounds 15] [--size-mb 50]

Every comparison is measured in the same run, in interleaved rounds (A, B, B, A, ...), and reported
as medians; ratios are computed from those medians. The Hub server (adapterhub.server) runs in its
own process on 127.0.0.1 so it does not share a GIL with the client being measured.

1. Warm pull: ``adapterhub pull NAME --index DIR -q`` as a subprocess, adapter already cached
   (target < 0.3 s). Also checks, with ``python -X importtime``, that torch, requests and
   huggingface_hub are not imported. Bare ``python -c pass`` is measured alongside for context.
   The warm pull re-checks cached bytes (adapterhub/store/reuse.py); it runs three ways: the default
   (files up to ``ADAPTERHUB_REHASH_LIMIT`` = 16 MiB re-hashed, the 50 MB file trusted by its stat
   stamp), every file re-hashed (limit above the file size), and stat stamps only (limit 0).
2. Cold pull of a ~50 MB adapter (``pull()`` of a manifest with an hf source, fresh cache each round:
   HEAD through huggingface_hub, GET, sha256 while streaming, header check, fsync, rename, view)
   versus a plain ``requests`` streaming download of the same URL into a file (target >= 0.8x).
3. ``verify`` of that adapter (page cache warm) versus ``hashlib.sha256`` over the same bytes held in
   memory (target >= 0.9x).

Results go to benchmarks/results/store.json and store.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.store_support import big_safetensors, manifest_for, put_repo  # noqa: E402

from adapterhub.registry import add_release, init_index  # noqa: E402
from adapterhub.server import HubServer  # noqa: E402

CLI_SHIM = ("import sys, adapterhub.cli.store_cmds  # registers pull if __init__ does not yet\n"
            "from adapterhub.cli import main\nsys.exit(main())")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "adapterhub.server", "--root", str(root), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, endpoint
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start")


def pull_command(index: Path) -> list[str]:
    from adapterhub.cli import cli

    if "pull" in cli.commands:  # registered by adapterhub/cli/__init__.py
        return [sys.executable, "-m", "adapterhub", "pull", "bench-adapter", "--index", str(index), "-q"]
    return [sys.executable, "-c", CLI_SHIM, "pull", "bench-adapter", "--index", str(index), "-q"]


def timed(fn, setup=None) -> float:
    if setup is not None:
        setup()  # not timed: e.g. emptying the cache before a cold pull
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleave_many(rounds: int, fns: list, setups: list) -> list[list[float]]:
    """Time each function once per round, alternating the order every round (drift hits all alike)."""
    times: list[list[float]] = [[] for _ in fns]
    for i in range(rounds):
        order = list(range(len(fns))) if i % 2 == 0 else list(range(len(fns)))[::-1]
        for k in order:
            times[k].append(timed(fns[k], setups[k]))
    return times


def interleave(rounds: int, a, b, setup_a=None, setup_b=None) -> tuple[list[float], list[float]]:
    ta, tb = interleave_many(rounds, [a, b], [setup_a, setup_b])
    return ta, tb


def measure_cold(rounds: int, manifest, url: str, cache: Path, target: Path,
                 payload: bytes) -> tuple[list[float], list[float], list[float]]:
    """Interleaved cold ``pull`` (empty cache), plain ``requests`` download of the same file, and the
    least a verified download can do: the plain download with sha256 on a helper thread (no fsync,
    no checks, no metadata request)."""
    import requests

    from adapterhub.store import FetchOptions, pull

    session = requests.Session()
    opts = FetchOptions()
    digest = hashlib.sha256(payload).hexdigest()

    def empty_cache() -> None:
        shutil.rmtree(cache, ignore_errors=True)

    def remove_plain() -> None:
        target.unlink(missing_ok=True)

    def cold() -> None:
        pull(manifest, options=opts)

    def plain() -> None:
        with session.get(url, stream=True, timeout=30) as resp, open(target, "wb") as fh:
            resp.raise_for_status()
            for chunk in resp.iter_content(1 << 20):
                fh.write(chunk)

    def plain_hashed() -> None:
        h = hashlib.sha256()
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending: deque = deque()
            with session.get(url, stream=True, timeout=30) as resp, open(target, "wb") as fh:
                resp.raise_for_status()
                for chunk in resp.iter_content(1 << 20):
                    fh.write(chunk)
                    pending.append(pool.submit(h.update, chunk))
                    while len(pending) > 16:
                        pending.popleft().result()
            for f in pending:
                f.result()
        assert h.hexdigest() == digest

    empty_cache()
    cold()
    plain()  # warm-up every path (connections, imports)
    plain_hashed()
    # Emptying the cache (and deleting the plain download's file) happens before each timed call,
    # outside the timing: freeing 50 MB of pages is not part of either download.
    t_cold, t_plain, t_hashed = interleave_many(rounds, [cold, plain, plain_hashed],
                                                [empty_cache, remove_plain, remove_plain])
    assert target.read_bytes() == payload
    session.close()
    return t_cold, t_plain, t_hashed


def measure_disk(rounds: int, payload: bytes, path: Path) -> tuple[list[float], list[float]]:
    """Writing the payload to a new file without and with fsync: what durability costs on this disk."""

    def write(sync: bool) -> None:
        with open(path, "wb") as fh:
            fh.write(payload)
            if sync:
                fh.flush()
                os.fsync(fh.fileno())

    return interleave(rounds, lambda: write(False), lambda: write(True),
                      lambda: path.unlink(missing_ok=True), lambda: path.unlink(missing_ok=True))


def start_proxy(endpoint: str, rate_mb: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    target = endpoint.removeprefix("http://")
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "throttle_proxy.py"), "--port", str(port),
                             "--target", target, "--rate-mb", str(rate_mb)])
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("proxy did not start")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--rate-mb", type=float, default=100.0,
                        help="bandwidth of the throttled comparison (MB/s; 100 is about a 1 Gbit/s link)")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-store-"))
    cache = work / "cache"
    os.environ["ADAPTERHUB_CACHE"] = str(cache)
    os.environ.pop("ADAPTERHUB_OFFLINE", None)
    os.environ.pop("HF_HUB_OFFLINE", None)
    payload = big_safetensors(args.size_mb * 1024 * 1024)
    files = {"adapter.safetensors": payload, "adapter_config.json": b'{"r": 8}'}
    staging = HubServer(work / "hub")  # only to fill storage; served by a separate process below
    commit = put_repo(staging, "org/bench", files)
    staging.httpd.server_close()
    server, endpoint = start_server(work / "hub")
    try:
        from adapterhub.store import pull, verify

        manifest = manifest_for(files, [{"type": "hf", "repo_id": "org/bench", "revision": commit,
                                         "endpoint": endpoint}], name="bench-adapter")
        index = init_index(work / "index", "bench")
        add_release(index, manifest)
        url = f"{endpoint}/org/bench/resolve/{commit}/adapter.safetensors"

        # -- 2. cold pull vs plain requests, on loopback and through a bandwidth-limited proxy -------
        t_cold, t_plain, t_hashed = measure_cold(args.rounds, manifest, url, cache, work / "plain.bin", payload)
        proxy, proxy_endpoint = start_proxy(endpoint, args.rate_mb)
        try:
            slow_manifest = manifest_for(files, [{"type": "hf", "repo_id": "org/bench", "revision": commit,
                                                  "endpoint": proxy_endpoint}], name="bench-adapter")
            slow_url = f"{proxy_endpoint}/org/bench/resolve/{commit}/adapter.safetensors"
            t_cold_net, t_plain_net, _ = measure_cold(max(5, args.rounds // 3), slow_manifest, slow_url, cache,
                                                   work / "plain.bin", payload)
        finally:
            proxy.terminate()
            proxy.wait(timeout=10)
        t_write, t_write_sync = measure_disk(args.rounds, payload, work / "disk.bin")

        # -- 3. verify vs hashlib in memory ---------------------------------------------------------
        pull(manifest)
        total = len(payload) + len(files["adapter_config.json"])

        def ver() -> None:
            assert verify("bench-adapter").ok

        def mem() -> None:
            hashlib.sha256(payload).hexdigest()
            hashlib.sha256(files["adapter_config.json"]).hexdigest()

        ver()
        t_verify, t_mem = interleave(args.rounds, ver, mem)

        # -- 1. warm CLI pull ---------------------------------------------------------------------
        cmd = pull_command(index)
        first = subprocess.run(cmd, capture_output=True, text=True)
        assert first.returncode == 0, first.stderr
        def warm_with(limit: str | None):
            env = {**os.environ}
            if limit is not None:
                env["ADAPTERHUB_REHASH_LIMIT"] = limit
            return lambda: subprocess.run(cmd, capture_output=True, check=True, env=env)

        t_warm, t_warm_all, t_warm_stat, t_bare = interleave_many(
            args.rounds, [warm_with(None), warm_with(str(1 << 40)), warm_with("0"),
                          lambda: subprocess.run([sys.executable, "-c", "pass"], check=True)], [None] * 4)
        imports = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], capture_output=True, text=True).stderr
        imported = {line.split("|")[-1].strip().split(".")[0] for line in imports.splitlines() if "|" in line}
        heavy = sorted(m for m in ("torch", "transformers", "requests", "huggingface_hub", "httpx") if m in imported)
    finally:
        server.terminate()
        server.wait(timeout=10)

    med = statistics.median
    mb = len(payload) / 1e6
    results = {
        "command": f"python benchmarks/bench_store.py --rounds {args.rounds} --size-mb {args.size_mb} "
                   f"--rate-mb {args.rate_mb:g}",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_1min": [load_before, os.getloadavg()[0]]},
        "rounds": args.rounds,
        "warm_pull": {"median_s": med(t_warm), "bare_python_median_s": med(t_bare), "target_s": 0.3,
                      "pass": med(t_warm) < 0.3 and not heavy, "heavy_imports": heavy, "command": " ".join(["python", *cmd[1:]]).replace(str(index), "<tmp>/index"),
                      "rehash_all_median_s": med(t_warm_all), "stat_only_median_s": med(t_warm_stat)},
        "cold_pull": {"size_mb": mb, "pull_median_s": med(t_cold), "plain_requests_median_s": med(t_plain),
                      "pull_mb_s": mb / med(t_cold), "plain_mb_s": mb / med(t_plain),
                      "ratio": med(t_plain) / med(t_cold), "target_ratio": 0.8,
                      "pass": med(t_plain) / med(t_cold) >= 0.8},
        "cold_pull_network": {"rate_mb_s": args.rate_mb, "pull_median_s": med(t_cold_net),
                              "plain_requests_median_s": med(t_plain_net), "pull_mb_s": mb / med(t_cold_net),
                              "plain_mb_s": mb / med(t_plain_net), "ratio": med(t_plain_net) / med(t_cold_net)},
        "minimal_verified_download": {"median_s": med(t_hashed), "ratio": med(t_plain) / med(t_hashed),
                                      "what": "plain requests download + sha256 on a helper thread; no fsync, "
                                              "no metadata request, no checks"},
        "components": {"ratio_upper_bound_from_sha256": med(t_plain) / med(t_mem),
                       "sha256_in_memory_s": med(t_mem), "write_no_fsync_s": med(t_write),
                       "write_fsync_s": med(t_write_sync),
                       "fsync_cost_s": med(t_write_sync) - med(t_write)},
        "verify": {"bytes": total, "verify_median_s": med(t_verify), "hashlib_median_s": med(t_mem),
                   "verify_mb_s": total / 1e6 / med(t_verify), "hashlib_mb_s": total / 1e6 / med(t_mem),
                   "ratio": med(t_mem) / med(t_verify), "target_ratio": 0.9, "pass": med(t_mem) / med(t_verify) >= 0.9},
        "samples": {"warm": t_warm, "warm_rehash_all": t_warm_all, "warm_stat_only": t_warm_stat, "bare": t_bare, "cold": t_cold, "plain": t_plain, "verify": t_verify,
                    "hashlib": t_mem, "plain_hashed": t_hashed, "cold_network": t_cold_net, "plain_network": t_plain_net,
                    "write": t_write, "write_fsync": t_write_sync},
    }
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "store.json").write_text(json.dumps(results, indent=2) + "\n")
    w, c, v = results["warm_pull"], results["cold_pull"], results["verify"]
    n, k = results["cold_pull_network"], results["components"]
    mv = results["minimal_verified_download"]
    md = f"""# Store benchmarks

Command: `{results['command']}` (Python {platform.python_version()}, {os.cpu_count()} CPUs, 1-minute load
average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after; medians of {args.rounds} interleaved rounds;
server in its own process on 127.0.0.1).

| benchmark | adapterhub | reference | ratio | target | pass |
| --- | --- | --- | --- | --- | --- |
| warm `adapterhub pull` (subprocess; config re-hashed, 50 MB file checked by stat stamp) | {w['median_s']*1000:.0f} ms | bare `python -c pass` {w['bare_python_median_s']*1000:.0f} ms | - | < 300 ms, no torch/requests/hf imports (found: {', '.join(heavy) or 'none'}) | {w['pass']} |
| warm pull, every file re-hashed (`ADAPTERHUB_REHASH_LIMIT` above 50 MB) | {w['rehash_all_median_s']*1000:.0f} ms | stat stamps only (`ADAPTERHUB_REHASH_LIMIT=0`) {w['stat_only_median_s']*1000:.0f} ms | - | (cost of re-hashing) | - |
| cold pull, {c['size_mb']:.0f} MB | {c['pull_mb_s']:.0f} MB/s | plain requests stream to file {c['plain_mb_s']:.0f} MB/s | {c['ratio']:.2f}x | >= 0.8x | {c['pass']} |
| minimal verified download (requests + sha256 on a thread, nothing else), {c['size_mb']:.0f} MB | {mb / mv['median_s']:.0f} MB/s | plain requests stream to file {c['plain_mb_s']:.0f} MB/s | {mv['ratio']:.2f}x | (reference) | - |
| cold pull vs minimal verified download | {c['pull_mb_s']:.0f} MB/s | {mb / mv['median_s']:.0f} MB/s | {mv['median_s'] / c['pull_median_s']:.2f}x | >= 0.9x (issue 12) | {mv['median_s'] / c['pull_median_s'] >= 0.9} |
| cold pull, {c['size_mb']:.0f} MB, through a {n['rate_mb_s']:g} MB/s link (throttle_proxy.py) | {n['pull_mb_s']:.0f} MB/s | plain requests {n['plain_mb_s']:.0f} MB/s | {n['ratio']:.2f}x | (context) | - |
| verify (re-hash from disk cache) | {v['verify_mb_s']:.0f} MB/s | hashlib.sha256 in memory {v['hashlib_mb_s']:.0f} MB/s | {v['ratio']:.2f}x | >= 0.9x | {v['pass']} |

The cold pull includes what a plain download does not: the Hub metadata request through
huggingface_hub, sha256 while streaming, our safetensors header check, fsync, the atomic rename and
building the view. Raw samples are in `store.json`.

Where the loopback time goes (same run, medians): the plain download takes
{c['plain_requests_median_s']*1000:.0f} ms; sha256 of the payload in memory {k['sha256_in_memory_s']*1000:.0f} ms;
writing it to a new file {k['write_no_fsync_s']*1000:.0f} ms without and {k['write_fsync_s']*1000:.0f} ms with fsync
(durability costs {k['fsync_cost_s']*1000:.0f} ms on this disk). The pull hashes on a helper thread and
pushes data to disk on another while it streams, so these costs overlap with the transfer when a core is
free. Hashing every byte is not optional, so even with perfect overlap and nothing else to do a pull
cannot finish before sha256 has run: on this machine the ratio is bounded by plain download time /
sha256 time = {c['plain_requests_median_s'] / k['sha256_in_memory_s']:.2f}x on loopback, and the least
any verified download can do (the plain download plus sha256 on a helper thread, without fsync or
checks) reaches {mv['ratio']:.2f}x: on 2 cores the hash competes with receiving and with the server. Through a
link slower than sha256 (every real network here) the bound disappears, as the throttled row shows.
"""
    (out / "store.md").write_text(md)
    print(md)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(r["pass"] for r in (w, c, v)) else 1


if __name__ == "__main__":
    sys.exit(main())
