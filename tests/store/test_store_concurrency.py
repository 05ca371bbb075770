"""Several processes, one cache: concurrent pulls, a pull killed mid-download, gc during a pull."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.store_support import HubRepo, big_safetensors, blobs, dir_with, leftovers, put_repo, sha, views

from adapterhub.manifest import write_manifest
from adapterhub.server import FaultKind
from adapterhub.store import LocalDirSource, gc, list_cached, pull, remove_cached, verify

CHILD = """
import json, sys
from adapterhub.manifest import load_manifest
from adapterhub.store import FetchOptions, pull
result = pull(load_manifest(sys.argv[1]), options=FetchOptions(read_timeout=30, retries=3, backoff=0.05))
print(json.dumps(result.to_json()))
"""
SIZE = 8 * 1024 * 1024


@pytest.fixture
def large(hub_server) -> HubRepo:
    files = {"adapter.safetensors": big_safetensors(SIZE), "adapter_config.json": b'{"r": 8}'}
    return HubRepo(hub_server, "org/large", put_repo(hub_server, "org/large", files), files)


def spawn(manifest_path: Path, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "ADAPTERHUB_CACHE": str(cache)}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(manifest_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def part_files(cache: Path) -> list[Path]:
    d = cache / "blobs" / "partial"
    return [p for p in d.iterdir() if p.name.endswith(".part")] if d.is_dir() else []


def test_eight_processes_pull_the_same_adapter(cache, large, tmp_path):
    large.plan.stall(0.4, at="mid", times=None)  # every download pauses halfway: they all overlap
    manifest_path = write_manifest(large.manifest(), tmp_path / "m.json")
    procs = [spawn(manifest_path, cache) for _ in range(8)]
    outputs = [p.communicate(timeout=60) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    results = [json.loads(out) for out, _ in outputs]
    assert len({r["path"] for r in results}) == 1
    for r in results:
        for rel, path in r["files"].items():
            assert Path(path).read_bytes() == large.files[rel]
    assert blobs(cache) == sorted(sha(b) for b in large.files.values())
    assert views(cache) == ["toy-adapter/1.0.0"]
    assert leftovers(cache) == []
    assert verify().ok
    gets = [a for a in large.plan.applied if a.path == "adapter.safetensors"]
    assert len(gets) >= 2  # really concurrent: several processes were downloading


def test_small_files_arrive_while_the_large_one_is_still_streaming(cache, large):
    """Files of one adapter download side by side: the config is cached during the weights' stall."""
    import threading

    large.plan.stall(6, at="mid", times=1, path="adapter.safetensors")
    config_blob = cache / "blobs" / "sha256" / sha(large.files["adapter_config.json"])
    result: list = []
    worker = threading.Thread(target=lambda: result.append(pull(large.manifest())))
    worker.start()
    try:
        wait_for(config_blob.is_file, timeout=5)  # sequential (largest first) would wait out the stall
        assert not views(cache) and worker.is_alive()
    finally:
        worker.join(timeout=60)
    assert result and result[0].downloaded == sum(len(b) for b in large.files.values())
    assert verify().ok


def test_pull_killed_mid_download_resumes_and_leaves_no_garbage(cache, large, tmp_path):
    large.plan.stall(60, at="mid", times=1, path="adapter.safetensors")
    manifest = large.manifest()
    proc = spawn(write_manifest(manifest, tmp_path / "m.json"), cache)
    wait_for(lambda: any(p.stat().st_size >= SIZE // 2 - (1 << 16) for p in part_files(cache)))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert part_files(cache) and views(cache) == []
    result = pull(manifest)  # adopts the dead process's partial file and resumes it
    assert result.files["adapter.safetensors"].read_bytes() == large.files["adapter.safetensors"]
    assert result.downloaded < SIZE * 3 // 4  # resumed: only the missing part (and the config) came again
    assert verify().ok
    gc()
    assert leftovers(cache) == []


def test_killed_pull_garbage_is_collected(cache, large, tmp_path):
    large.plan.stall(60, at="mid", times=1, path="adapter.safetensors")
    proc = spawn(write_manifest(large.manifest(), tmp_path / "m.json"), cache)
    # The server stalls for 60 s halfway through the body: any bytes on disk mean the pull is mid-file.
    wait_for(lambda: any(p.stat().st_size > 0 for p in part_files(cache)))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert leftovers(cache) != []
    report = gc()
    assert report.removed_temp and leftovers(cache) == []
    assert blobs(cache) == []  # the small config blob finished but no view uses it


def test_gc_while_another_process_pulls(cache, large, tmp_path):
    garbage = large.manifest({"other.json": b'{"old": true}'}, name="old-adapter")
    put_repo(large.server, large.repo_id, {"other.json": b'{"old": true}'})
    pull(garbage, sources=[LocalDirSource(dir_with(tmp_path / "old", {"other.json": b'{"old": true}'}))])
    remove_cached("old-adapter")
    large.plan.stall(1.0, at="mid", times=1, path="adapter.safetensors")
    proc = spawn(write_manifest(large.manifest(), tmp_path / "m.json"), cache)
    wait_for(lambda: bool(part_files(cache)))
    report = gc()
    assert report.removed_blobs == [sha(b'{"old": true}')]  # real garbage goes...
    assert part_files(cache), "...but a live download is never touched"
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert [c.name for c in list_cached()] == ["toy-adapter"]
    assert verify().ok
    assert gc().removed_blobs == [] and leftovers(cache) == []


def test_gc_keeps_garbage_blobs_a_live_pull_has_leased(cache, large, tmp_path):
    from adapterhub.store.layout import CacheLayout, new_owner
    from adapterhub.store.views import write_lease

    pull(large.manifest())
    remove_cached("toy-adapter")
    lease = write_lease(CacheLayout(cache), new_owner(), {sha(b) for b in large.files.values()})
    assert gc().removed_blobs == []  # this process is alive and holds the lease
    lease.unlink()
    assert sorted(gc().removed_blobs) == sorted(sha(b) for b in large.files.values())


def test_applied_fault_kinds_are_visible(large):
    large.plan.stall(0.01, at="mid", times=1)
    assert large.plan.pending()[0].kind is FaultKind.STALL_MID


def test_a_published_blob_is_never_replaced(tmp_path):
    """The second writer of a blob keeps the first inode: a concurrent link() of it must not fail."""
    from adapterhub.store.layout import CacheLayout
    from adapterhub.store.writer import BlobWriter

    layout = CacheLayout(tmp_path / "c")
    data = b"same bytes" * 1000
    digest = sha(data)
    first = BlobWriter(layout, digest, len(data))
    second = BlobWriter(layout, digest, len(data))
    assert first.temp != second.temp  # two writers of one blob in one process: two temp files
    first.write(data)
    second.write(data)
    inode = first.commit().stat().st_ino
    held = tmp_path / "held"
    os.link(layout.blob(digest), held)  # what a view does with the blob
    assert second.commit().stat().st_ino == inode
    assert first.published is not None and first.published.st_ino == inode
    assert second.published is None  # the loser says so: its caller checks the winner's bytes
    assert os.stat(held).st_ino == inode
    assert [p.name for p in layout.blobs.iterdir()] == [digest]  # the loser's temp file is gone
