"""``adapterhub publish DIR --to PATH``: a directory registry that pulls with no network."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support.paths import REPO
from support.publish_support import assert_same_logits, init_and_package, load_logits, ok, run, save_adapter

from adapterhub.errors import ConflictError, IntegrityError, PublishError
from adapterhub.fileio import sha256_file
from adapterhub.registry import check_index, open_index


@pytest.fixture(autouse=True)
def no_network(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unroutable endpoint and a proxy that refuses: any network use would fail the test."""
    monkeypatch.setenv("ADAPTERHUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    for var in ("ADAPTERHUB_OFFLINE", "HF_HUB_OFFLINE", "ADAPTERHUB_INDEX"):
        monkeypatch.delenv(var, raising=False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")


def test_publish_to_a_directory_then_pull_and_load(tmp_path: Path) -> None:
    saved = save_adapter(tmp_path)
    d = init_and_package(saved)
    registry = tmp_path / "registry"
    out = ok("publish", d, "--to", registry).output
    assert "3 new blob(s)" in out
    (entry,) = open_index(registry).entries("tiny-sst")
    assert [s.type for s in entry.manifest.sources] == ["bundled"]
    for f in entry.manifest.files:
        blob = registry / "mirror" / f.sha256
        assert blob.is_file() and sha256_file(blob) == f.sha256 and blob.stat().st_mode & 0o222 == 0
    assert check_index(registry, mirror=registry / "mirror").ok
    data = json.loads(ok("pull", "tiny-sst", "--index", registry, "--json").output)
    assert data["downloaded_bytes"] == sum(f.size for f in entry.manifest.files)
    assert_same_logits(load_logits(saved.base_dir, Path(data["path"])), saved.expected)
    # search and info see it like any other index
    assert "tiny-sst" in ok("search", "sst2", "--index", registry).output


def test_the_registry_directory_can_move(tmp_path: Path) -> None:
    d = init_and_package(save_adapter(tmp_path))
    ok("publish", d, "--to", tmp_path / "registry")
    os.rename(tmp_path / "registry", tmp_path / "moved")
    ok("pull", "tiny-sst==1.0.0", "--index", tmp_path / "moved", "-q")


def test_same_release_again_is_a_no_op_and_different_content_is_refused(tmp_path: Path) -> None:
    d = init_and_package(save_adapter(tmp_path / "a"))
    registry = tmp_path / "registry"
    ok("publish", d, "--to", registry)
    assert "already in" in ok("publish", d, "--to", registry).output
    other = init_and_package(save_adapter(tmp_path / "b", seed=5))
    before = sorted(p.name for p in (registry / "mirror").iterdir())
    result = run("publish", other, "--to", registry)
    assert isinstance(result.exception, ConflictError)
    assert sorted(p.name for p in (registry / "mirror").iterdir()) == before  # nothing copied
    assert len(open_index(registry).entries("tiny-sst")) == 1


def test_a_corrupted_mirror_blob_fails_the_pull(tmp_path: Path) -> None:
    d = init_and_package(save_adapter(tmp_path))
    registry = tmp_path / "registry"
    ok("publish", d, "--to", registry)
    (entry,) = open_index(registry).entries("tiny-sst")
    blob = registry / "mirror" / entry.manifest.file("adapter.safetensors").sha256
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    result = run("pull", "tiny-sst", "--index", registry)
    assert isinstance(result.exception, IntegrityError)
    assert not (tmp_path / "cache" / "adapters" / "tiny-sst" / "1.0.0").exists()
    # Publishing again repairs the blob (an intact copy replaces a corrupted one).
    ok("publish", d, "--to", registry)
    ok("pull", "tiny-sst", "--index", registry, "-q")


def test_a_non_registry_directory_and_an_invalid_adapter_are_refused(tmp_path: Path) -> None:
    d = init_and_package(save_adapter(tmp_path))
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "x.txt").write_text("x")
    result = run("publish", d, "--to", junk)
    assert isinstance(result.exception, PublishError) and not (junk / "mirror").exists()
    (d / "adapter.safetensors").write_bytes(b"")
    result = run("publish", d, "--to", tmp_path / "registry")
    assert isinstance(result.exception, PublishError) and not (tmp_path / "registry").exists()


def test_dry_run_and_usage_errors(tmp_path: Path) -> None:
    d = init_and_package(save_adapter(tmp_path))
    assert "dry run" in ok("publish", d, "--to", tmp_path / "registry", "--dry-run").output
    assert not (tmp_path / "registry").exists()
    assert run("publish", d).exit_code == 2
    assert run("publish", d, "--to", tmp_path / "r", "--repo", "org/x").exit_code == 2


def test_package_and_publish_to_a_directory_do_not_import_torch(tmp_path: Path) -> None:
    import subprocess
    import sys

    d = init_and_package(save_adapter(tmp_path))
    code = (
        "import sys\nfrom adapterhub.cli import main\n"
        f"assert main(['package', {str(d)!r}]) == 0\n"
        f"assert main(['publish', {str(d)!r}, '--to', {str(tmp_path / 'reg')!r}]) == 0\n"
        "bad = [m for m in ('torch', 'transformers', 'huggingface_hub') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr


def test_the_registry_directory_served_by_a_static_http_server(tmp_path: Path, monkeypatch) -> None:
    """Any static file server makes a `publish --to` directory a remote registry: index and mirror."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    saved = save_adapter(tmp_path)
    d = init_and_package(saved)
    registry = tmp_path / "registry"
    ok("publish", d, "--to", registry)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(registry)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        data = json.loads(ok("pull", "tiny-sst", "--index", url, "--json").output)
    finally:
        server.shutdown()
        server.server_close()
    assert data["downloaded_bytes"] > 0
    assert_same_logits(load_logits(saved.base_dir, Path(data["path"])), saved.expected)
