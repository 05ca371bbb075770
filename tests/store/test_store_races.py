"""Cache races of issue 13 §5: identical bytes under two paths, and gc beside pulls and removals."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from support import cache_stress
from support.store_support import dir_with, leftovers, manifest_for, safetensors_bytes

from adapterhub.store import LocalDirSource, gc, pull, verify

WEIGHTS = safetensors_bytes(1024)
CONFIG = b'{"r": 4}\n'


def test_two_paths_with_identical_bytes_pull_the_first_time(cache, tmp_path):
    files = {"adapter.safetensors": WEIGHTS, "adapter_config.json": CONFIG, "config_copy.json": CONFIG,
             "nested/again.json": CONFIG}
    result = pull(manifest_for(files), sources=[LocalDirSource(dir_with(tmp_path / "src", files))])
    for path, body in files.items():
        assert result.files[path].read_bytes() == body
    assert result.downloaded == len(WEIGHTS) + len(CONFIG)  # one download per distinct sha256
    assert leftovers(cache) == []


def test_gc_leaves_a_fresh_empty_name_directory_alone(cache, tmp_path):
    """A pull makes ``adapters/<name>/`` and then its temp view inside; gc between the two must not
    remove the directory. An old empty one still goes."""
    (cache / "blobs" / "sha256").mkdir(parents=True)
    fresh = cache / "adapters" / "fresh-one"
    old = cache / "adapters" / "old-one"
    fresh.mkdir(parents=True)
    old.mkdir()
    long_ago = time.time() - 3600
    os.utime(old, (long_ago, long_ago))
    gc()
    assert fresh.is_dir() and not old.exists()


def test_a_view_is_published_even_if_gc_removes_its_new_name_directory(cache, tmp_path, monkeypatch):
    """The interleaving behind "a few of 600 pulls fail at temp.mkdir()", made certain: the moment the
    pull creates ``adapters/<name>/``, a concurrent gc (or ``cache rm``) removes it, empty as it is."""
    files = {"adapter.safetensors": WEIGHTS}
    src = dir_with(tmp_path / "src", files)
    real_mkdir = os.mkdir
    removed = []

    def mkdir_then_gc(path, mode=0o777, *, dir_fd=None):
        real_mkdir(path, mode, dir_fd=dir_fd)
        if Path(path).parent == cache / "adapters" and not removed:
            os.rmdir(path)
            removed.append(path)

    monkeypatch.setattr(os, "mkdir", mkdir_then_gc)
    result = pull(manifest_for(files), sources=[LocalDirSource(src)])
    assert removed and result.files["adapter.safetensors"].read_bytes() == WEIGHTS


@pytest.mark.timeout(120)
def test_pulls_removals_and_gc_side_by_side(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """3 processes x 35 pulls (half followed by `cache rm`) next to a gc loop: no pull fails, every
    byte served is right, and the cache verifies afterwards. benchmarks/bench_cache_stress.py runs
    the long version."""
    cache = tmp_path / "cache"
    report = cache_stress.run(cache, tmp_path / "work", pullers=3, pulls=35, adapters=12, timeout=100)
    assert report["failures"] == []
    assert report["pulls"] == 105 and report["gc_runs"] > 0
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(cache))
    assert verify().ok
