"""A pull that cannot fit is refused before its first byte; a disk that fills during the download gives a
typed error and leaves nothing half-written (adapterhub/store/room.py)."""

from __future__ import annotations

import errno
import hashlib
import shutil
from collections import namedtuple

import pytest
from support.store_support import FAST, HubRepo, blobs, leftovers, put_repo, safetensors_bytes, views

from adapterhub.errors import DiskSpaceError
from adapterhub.store import pull

WEIGHTS = safetensors_bytes(256 * 1024)  # 1 MiB
FILES = {"adapter.safetensors": WEIGHTS, "adapter_config.json": b'{"r": 8}'}
Usage = namedtuple("Usage", "total used free")


@pytest.fixture
def repo(hub_server) -> HubRepo:
    return HubRepo(hub_server, "org/room", put_repo(hub_server, "org/room", FILES), FILES)


def test_a_pull_larger_than_the_free_space_is_refused_before_any_request(cache, repo, monkeypatch):
    free = len(WEIGHTS) + len(FILES["adapter_config.json"]) - 1
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(1 << 40, 0, free))
    repo.plan.stall(0, methods=("HEAD", "GET"), times=None)  # records every request it sees
    with pytest.raises(DiskSpaceError, match=f"needs {len(WEIGHTS) + 8:,} bytes") as raised:
        pull(repo.manifest(), options=FAST)
    assert f"{free:,} bytes free" in str(raised.value) and "cache gc" in str(raised.value)
    assert repo.plan.applied == []
    assert blobs(cache) == [] and views(cache) == [] and leftovers(cache) == []


def test_a_pull_that_fits_exactly_goes_ahead(cache, repo, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(1 << 40, 0, len(WEIGHTS) + 8))
    pulled = pull(repo.manifest(), options=FAST)
    assert pulled.files["adapter.safetensors"].read_bytes() == WEIGHTS


class FillingFile:
    """A file object whose writes fail with ``error`` once ``room`` bytes were written."""

    def __init__(self, inner, room: int, error: int) -> None:
        self.inner, self.room, self.error = inner, room, error

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(self.error, "injected")
        self.room -= len(data)
        return self.inner.write(data)

    def __getattr__(self, name):
        return getattr(self.inner, name)


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EDQUOT])
def test_a_disk_that_fills_during_the_download_gives_a_typed_error_and_no_leftovers(cache, repo, monkeypatch,
                                                                                      error):
    import adapterhub.store.writer as writer_module

    real_open = open

    def filling_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        return FillingFile(handle, len(WEIGHTS) // 2, error) if "w" in mode else handle

    monkeypatch.setattr(writer_module, "open", filling_open, raising=False)
    repo.plan.stall(0, methods=("HEAD",), times=None)  # records any metadata request
    with pytest.raises(DiskSpaceError, match="no space left"):
        pull(repo.manifest(), options=FAST)
    assert views(cache) == [] and leftovers(cache) == []
    assert repo.plan.applied == [], "a full disk is not the transfer's fault: no metadata call to explain it"
    assert hashlib.sha256(WEIGHTS).hexdigest() not in blobs(cache)


def test_other_write_errors_are_not_called_a_full_disk(cache, repo, monkeypatch):
    import adapterhub.store.writer as writer_module

    real_open = open
    monkeypatch.setattr(writer_module, "open", lambda path, mode="r", *a, **k: FillingFile(
        real_open(path, mode, *a, **k), 0, errno.EIO) if "w" in mode else real_open(path, mode, *a, **k),
        raising=False)
    with pytest.raises(OSError) as raised:
        pull(repo.manifest(), options=FAST)
    assert not isinstance(raised.value, DiskSpaceError) and raised.value.errno == errno.EIO
    assert leftovers(cache) == []
