"""The HTTP index under transport faults: retried when it may pass, a typed error when it will not."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.http_faults import Reply, ScriptedServer, endless, redirect
from support.manifest_samples import manifest_with

from adapterhub.errors import DownloadError, IndexFormatError
from adapterhub.manifest import parse_manifest
from adapterhub.registry import add_release, init_index, open_index, resolve
from adapterhub.registry.layout import entry_path
from adapterhub.store import FetchOptions

pytestmark = pytest.mark.network_local

QUICK = FetchOptions(connect_timeout=1, read_timeout=1, retries=2, backoff=0.01)


@pytest.fixture
def index_files(tmp_path: Path) -> dict[str, bytes]:
    """Every file of a small index, by URL path."""
    root = init_index(tmp_path / "index", "served")
    add_release(root, parse_manifest(manifest_with("adapter-05", "1.0.0")))
    return {"/" + p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def server(index_files):
    with ScriptedServer() as s:
        for path, body in index_files.items():
            s.route(path, Reply(body=body))
        yield s


ENTRY = "/" + entry_path("adapter-05")


def test_one_503_does_not_fail_the_lookup(server, index_files, tmp_path):
    server.route("/config.json", Reply(503), Reply(body=index_files["/config.json"]))
    server.route(ENTRY, Reply(502), Reply(429, [("Retry-After", "0")]), Reply(body=index_files[ENTRY]))
    idx = open_index(server.origin + "/", cache_dir=tmp_path / "c", options=QUICK)
    assert str(resolve(idx, "adapter-05").manifest.version) == "1.0.0"
    assert len(server.seen(ENTRY)) == 3


def test_the_retry_setting_comes_from_the_environment_too(server, index_files, tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTERHUB_BACKOFF", "0.01")
    server.route(ENTRY, Reply(503), Reply(body=index_files[ENTRY]))
    assert str(resolve(open_index(server.origin + "/", cache_dir=tmp_path / "c"), "adapter-05").manifest.version) == "1.0.0"


def test_an_endless_entry_is_cut_at_the_cap_quickly(server, tmp_path):
    server.route(ENTRY, Reply(body=endless(), length=None))
    idx = open_index(server.origin + "/", cache_dir=tmp_path / "c", options=QUICK)
    start = time.monotonic()
    with pytest.raises(IndexFormatError, match="larger than"):
        resolve(idx, "adapter-05")
    assert time.monotonic() - start < 10  # 64 MiB read linearly; the old `body += chunk` took 30-60 s


@pytest.mark.parametrize(("reply", "text"), [
    (Reply(body=b'{"v": 1}\n' * 1000, chunked=True, cut_chunked=True), "giving up after 3 attempt"),
    (redirect("file:///etc/passwd"), "only http"),
    (redirect("adapter-05"), "redirects"),
    (Reply(body=b"{}", length="2, 3"), "malformed"),
    (Reply(403), "HTTP 403"),
])
def test_transfer_faults_are_typed(server, tmp_path, reply, text):
    server.route(ENTRY, reply)
    idx = open_index(server.origin + "/", cache_dir=tmp_path / "c", options=QUICK)
    with pytest.raises(DownloadError, match=text):
        resolve(idx, "adapter-05")
