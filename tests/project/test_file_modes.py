"""Every file and directory adapterhub creates follows the umask, so a team can share a registry,
a cache or a server root (``tempfile.mkstemp``/``mkdtemp`` made them 0600/0700 whatever the umask).

Blobs are read-only on purpose: their mode is the umask's read bits and no write bit.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from support.publish_support import sample_adapter
from support.server_fixtures import isolate_from_machine

from adapterhub.cli import main
from adapterhub.fileio import atomic_write_bytes, create_temp_dir, create_temp_file, make_read_only

UMASKS = (0o022, 0o002, 0o077)


@contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def _modes(root: Path, mask: int, read_only: Callable[[Path], bool]) -> list[str]:
    """Every path under ``root`` (and root) whose mode is not what ``mask`` gives; empty = all good."""
    wrong = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for p in [Path(dirpath)] + [Path(dirpath) / f for f in filenames]:
            mode = stat.S_IMODE(p.lstat().st_mode)
            want = 0o777 & ~mask if p.is_dir() else (0o444 if read_only(p) else 0o666) & ~mask
            if mode != want:
                wrong.append(f"{p.relative_to(root.parent)}: {oct(mode)}, want {oct(want)}")
    return wrong


@pytest.mark.parametrize("mask", UMASKS, ids=oct)
def test_the_file_primitives_follow_the_umask(tmp_path: Path, mask: int) -> None:
    with umask(mask):
        root = tmp_path / "root"
        atomic_write_bytes(root / "a" / "file.json", b"{}")
        fd, temp = create_temp_file(root, prefix=".t-")
        os.close(fd)
        blob = root / "blob"
        blob.write_bytes(b"x")
        make_read_only(blob)
        scratch = create_temp_dir(root)
    assert temp.name.startswith(".t-") and scratch.is_dir()
    assert _modes(root, mask, read_only=lambda p: p.name == "blob") == []


@pytest.mark.parametrize("mask", UMASKS, ids=oct)
def test_a_directory_registry_and_the_cache_follow_the_umask(tmp_path: Path, monkeypatch, capsys, mask: int) -> None:
    adapter = sample_adapter(tmp_path / "adapter")
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "team" / "cache"))
    monkeypatch.delenv("ADAPTERHUB_OFFLINE", raising=False)
    with umask(mask):
        (tmp_path / "team").mkdir()
        registry = tmp_path / "team" / "registry"
        for args in (["publish", str(adapter), "--to", str(registry)],
                     ["index", "yank", "sst2-houlsby", "1.0.0", "--index", str(registry), "--reason", "test"],
                     ["index", "yank", "sst2-houlsby", "1.0.0", "--index", str(registry), "--undo"],
                     ["index", "reindex", str(registry)],
                     ["pull", "sst2-houlsby", "--index", str(registry), "-q"]):
            assert main(args) == 0, capsys.readouterr().err
    payload = {f["path"] for f in json.loads((adapter / "adapterhub.json").read_text())["files"]}
    assert _modes(registry, mask, read_only=lambda p: p.parent.name == "mirror") == []
    cache = tmp_path / "team" / "cache"
    assert (cache / "blobs").is_dir() and (cache / "adapters").is_dir()
    assert _modes(cache, mask, read_only=lambda p: p.parent.name == "sha256" or p.name in payload) == []


@pytest.mark.parametrize("mask", (0o022, 0o002), ids=oct)
def test_the_server_root_follows_the_umask(tmp_path: Path, monkeypatch, mask: int) -> None:
    from adapterhub.publish import publish_to_hub
    from adapterhub.server import HubServer, TokenGrant

    isolate_from_machine(monkeypatch, tmp_path)
    adapter = sample_adapter(tmp_path / "adapter")
    with umask(mask):
        server = HubServer(tmp_path / "hub", tokens=[TokenGrant.admin_token("admin-token")], socket_timeout=10)
        server.start()
        try:
            publish_to_hub(adapter, "org/sst2-houlsby", endpoint=server.endpoint, token="admin-token")
        finally:
            server.stop()
    assert (tmp_path / "hub" / "repos").is_dir()
    assert _modes(tmp_path / "hub", mask, read_only=lambda p: False) == []
