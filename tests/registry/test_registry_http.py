"""The HTTP index backend against a real static server on 127.0.0.1: per-name fetches, ETag revalidation."""

from __future__ import annotations

import hashlib
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support.manifest_samples import manifest_with

from adapterhub.errors import OfflineError
from adapterhub.manifest import parse_manifest
from adapterhub.registry import SearchQuery, add_release, init_index, open_index, resolve, search


class _ETagHandler(SimpleHTTPRequestHandler):
    log: list[tuple[str, int]] = []

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server naming
        path = self.translate_path(self.path)
        try:
            with open(path, "rb") as fh:
                body = fh.read()
        except OSError:
            self.log.append((self.path, 404))
            self.send_error(404)
            return
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if self.headers.get("If-None-Match") == etag:
            self.log.append((self.path, 304))
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        self.log.append((self.path, 200))
        self.send_response(200)
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def served_index(tmp_path):
    root = tmp_path / "index"
    init_index(root, "served")
    for i in range(20):
        add_release(root, parse_manifest(manifest_with(f"adapter-{i:02d}", "1.0.0")))
    add_release(root, parse_manifest(manifest_with("adapter-05", "1.1.0")))
    handler = type("H", (_ETagHandler,), {"log": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", root, handler
    server.shutdown()
    server.server_close()


def test_resolve_fetches_only_config_and_one_name(served_index, tmp_path):
    url, _root, handler = served_index
    idx = open_index(url, cache_dir=tmp_path / "cache", offline=False)
    assert resolve(idx, "adapter-05").version == "1.1.0"
    assert [p for p, _ in handler.log] == ["/config.json", "/ad/ap/adapter-05"]


def test_etag_revalidation_and_offline_reuse(served_index, tmp_path):
    url, root, handler = served_index
    cache = tmp_path / "cache"
    resolve(open_index(url, cache_dir=cache, offline=False), "adapter-05")
    handler.log.clear()
    assert resolve(open_index(url, cache_dir=cache, offline=False), "adapter-05").version == "1.1.0"
    assert handler.log == [("/config.json", 304), ("/ad/ap/adapter-05", 304)]
    # a new release changes the file: a 200 brings it in
    add_release(root, parse_manifest(manifest_with("adapter-05", "1.2.0")))
    handler.log.clear()
    assert resolve(open_index(url, cache_dir=cache, offline=False), "adapter-05").version == "1.2.0"
    assert ("/ad/ap/adapter-05", 200) in handler.log
    # offline: served from the cache without a request; unknown files are a clear error
    handler.log.clear()
    assert resolve(open_index(url, cache_dir=cache, offline=True), "adapter-05").version == "1.2.0"
    assert handler.log == []
    with pytest.raises(OfflineError, match="not cached"):
        open_index(url, cache_dir=cache, offline=True).entries("adapter-07")


def test_unknown_name_is_404_and_search_over_http(served_index, tmp_path):
    url, _root, _handler = served_index
    idx = open_index(url, cache_dir=tmp_path / "cache", offline=False)
    assert idx.entries("no-such-adapter") == []
    rows = search(idx, SearchQuery("adapter-1"))
    assert rows[0]["name"].startswith("adapter-1")
